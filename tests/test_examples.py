"""The examples run as documented."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs(capsys):
    namespace = runpy.run_path(str(EXAMPLES / "quickstart.py"))
    namespace["main"](n=1500)
    out = capsys.readouterr().out
    assert "CoxPH: held-out Harrell C" in out
    assert "DeepSurv: held-out Harrell C" in out
