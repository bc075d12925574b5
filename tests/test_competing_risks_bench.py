"""benchmarks/competing_risks.py: a small run scores every head in one table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "competing_risks", ROOT / "benchmarks/competing_risks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_run_scores_every_head(capsys):
    bench = _module()
    table = bench.main(["--n", "800", "--bootstrap", "10"])
    assert list(table.index) == [*bench.HEADS, "frax_refit", "truth (oracle)"]
    assert table.loc["deepsurv", "risk_type"] == "cause_specific"
    assert (table.drop(index="deepsurv")["risk_type"] == "absolute").all()
    numbers = table[["wolbers_c", "harrell_c", "auc_2", "o_e", "brier", "mae_truth"]]
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    assert (table["wolbers_lo"] <= table["wolbers_hi"]).all()
    # the death-censored Cox risk is the highest on average where a third of patients die
    assert table.loc["deepsurv", "mean_risk"] > table.loc["cause_specific", "mean_risk"]
    out = capsys.readouterr().out
    assert "| cause_specific | absolute |" in out and "machine:" in out
