"""The Cox loss over the global batch: two gloo processes equal one process.

The processes are launched by the tests themselves (``torch.multiprocessing`` for the loss,
a script run through Lightning's DDP launcher for DeepSurv), on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from fracrisk.training import EventStratifiedBatchSampler, global_cox_loss

B = 37  # an odd global batch: the ranks get 19 and 18 patients


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(B, 6, generator=g, dtype=torch.float64)
    time = torch.rand(B, generator=g, dtype=torch.float64).mul(5).round(decimals=1) + 0.1  # ties
    event = (torch.rand(B, generator=g) < 0.4).long()
    return x, time, event


def _network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        x, time, event = _batch()
        part = np.array_split(np.arange(B), world)[rank]
        model = nn.parallel.DistributedDataParallel(_network())
        loss, n_events = global_cox_loss(model(x[part]), time[part], event[part])
        loss.backward()
        if rank == 0:
            grads = [p.grad.tolist() for p in model.module.parameters()]
            with open(out, "w") as f:
                json.dump({"loss": float(loss), "events": n_events, "grads": grads}, f)
    finally:
        dist.destroy_process_group()


def _spawn(worker, nprocs: int, *args) -> None:
    """Start the gloo ranks; a fresh port and one more try if rank 0 died on start-up.

    ``_free_port`` only proposes a port: another process can take it before rank 0 binds
    it, and gloo then aborts. The ranks' results are checked by the caller either way.
    """
    for attempt in range(3):
        try:
            mp.start_processes(
                worker, args=(nprocs, _free_port(), *args), nprocs=nprocs, start_method="spawn"
            )
            return
        except mp.ProcessExitedException:
            if attempt == 2:
                raise


def test_two_gloo_processes_give_the_loss_and_gradients_of_one(tmp_path):
    out = tmp_path / "rank0.json"
    _spawn(_worker, 2, str(out))
    got = json.loads(out.read_text())

    x, time, event = _batch()
    single = _network()
    loss, n_events = global_cox_loss(single(x), time, event)
    loss.backward()
    assert got["events"] == n_events == int(event.sum())
    assert abs(got["loss"] - loss.item()) < 1e-6
    for theirs, ours in zip(got["grads"], single.parameters(), strict=True):
        np.testing.assert_allclose(np.array(theirs), ours.grad.numpy(), rtol=0, atol=1e-6)
    # The check can fail: a per-rank loss (each rank its own risk sets) differs.
    part = np.array_split(np.arange(B), 2)[0]
    local, _ = global_cox_loss(_network()(x[part]), time[part], event[part])
    assert abs(local.item() - loss.item()) > 1e-3


def test_sampler_ranks_together_see_the_global_batches():
    rng = np.random.default_rng(0)
    event = rng.uniform(size=203) < 0.07
    single = EventStratifiedBatchSampler(event, 32, seed=4)
    ranks = [EventStratifiedBatchSampler(event, 32, seed=4, rank=r, world_size=3) for r in range(3)]
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        expected = list(single)
        parts = [list(s) for s in ranks]
        assert len({len(p) for p in parts}) == 1 == len({len(s) for s in ranks})  # no rank waits
        for k, batch in enumerate(expected):
            assert sum((p[k] for p in parts), []) == batch
    assert len(single) == len(expected) == 203 // 32 + 1  # a last batch of 11 is kept
    # Events are spread: every batch of 32 holds about 32 * 0.07 = 2.2 of them.
    counts = [int(event[b].sum()) for b in expected]
    assert min(counts) >= 1, counts
    single.set_epoch(0)
    first = list(single)
    single.set_epoch(1)
    assert list(single) != first  # a new order each epoch ...
    single.set_epoch(0)
    assert list(single) == first  # ... that depends on (seed, epoch) alone


def test_sampler_drops_a_last_batch_too_small_to_deal_out():
    event = np.zeros(65, bool)
    event[::5] = True
    assert len(list(EventStratifiedBatchSampler(event, 32))) == 2  # 32 + 32; a batch of 1 dropped
    two = EventStratifiedBatchSampler(event, 32, world_size=2, rank=1)
    assert [len(b) for b in two] == [16, 16]
    with pytest.raises(ValueError, match="smaller than the number of processes"):
        EventStratifiedBatchSampler(event, 2, world_size=3, rank=0)


_DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from fracrisk import DeepSurv
    from fracrisk.simulate import clinical_cohort

    out, devices, head = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(1)
    cohort = clinical_cohort(700, seed=2)
    model = DeepSurv(
        head=head, hidden=(16,), dropout=0.0, norm="none", batch_size=64, max_epochs=4,
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", seed=0,
    ).fit(cohort)
    model.save(out)  # only global rank 0 writes
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["deepsurv", "cause_specific"])
def test_deepsurv_on_two_ddp_processes_ends_with_the_single_process_weights(tmp_path, head):
    """Both Cox heads (the pair's two losses too) are computed over the global batch."""
    from fracrisk import load_model

    script = tmp_path / "fit_ddp.py"
    script.write_text(_DDP_SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("LOCAL_RANK", None)
    for devices in (1, 2):
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"model{devices}"), str(devices), head],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = load_model(tmp_path / "model1"), load_model(tmp_path / "model2")
    for (name, a), (_, b) in zip(
        one.network_.state_dict().items(), two.network_.state_dict().items(), strict=True
    ):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-5, err_msg=name)
    from fracrisk.simulate import clinical_cohort

    cohort = clinical_cohort(200, seed=9)
    np.testing.assert_allclose(
        two.predict_risk(cohort, 5.0), one.predict_risk(cohort, 5.0), rtol=0, atol=1e-5
    )
