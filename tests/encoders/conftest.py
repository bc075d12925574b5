"""One torch thread for the encoder tests.

The machine's cores are shared: with two threads, a convolution waits on a thread that another
process has descheduled, and a step of the tiny CNNs here takes ten times longer. One thread
keeps the runtime steady.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
