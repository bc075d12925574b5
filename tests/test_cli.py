"""The command line and the demo, end to end on a small simulated cohort."""

from __future__ import annotations

import json

import pytest

from fracrisk.cli import main


def test_demo_writes_a_complete_run_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--n", "2500", "--bootstrap", "50", "--no-progress"]
    assert main(args) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "run.json",
        "predictions.csv",
        "survival_curves.png",
        "calibration.png",
        "decision_curve.png",
        "metrics.csv",
        "cohort.parquet",
        "models",
    } <= names
    run = json.loads((out / "run.json").read_text())
    models = [row["model"] for row in run["metrics"]]
    assert models == ["CoxPH", "DeepSurv", "truth (oracle)"]
    harrell = float(run["metrics"][0]["Harrell C (95% CI)"].split()[0])
    assert 0.6 < harrell < 0.9
    assert 0.8 < run["calibration"]["CoxPH"]["O/E"] < 1.25
    assert "DeepSurv vs CoxPH" in capsys.readouterr().out
    assert main(args) == 2
    assert "overwrite" in capsys.readouterr().err


def test_overwrite_refuses_directories_that_are_not_runs(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--overwrite", "--no-progress"]) == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert "does not look like a fracrisk output" in capsys.readouterr().err


def test_unknown_command_exits():
    with pytest.raises(SystemExit):
        main(["nope"])
