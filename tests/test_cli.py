"""The command line and the demo, end to end on a small simulated cohort."""

from __future__ import annotations

import json

import pytest

from fracrisk.cli import main


def test_demo_writes_a_complete_run_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--out", str(out), "--n", "2500", "--no-progress"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "run.json",
        "predictions.csv",
        "survival_curves.png",
        "calibration.png",
        "cohort.parquet",
        "models",
    } <= names
    run = json.loads((out / "run.json").read_text())
    assert 0.6 < run["c_index"]["CoxPH"] < 0.9
    assert set(run["c_index"]) == {"truth (oracle)", "CoxPH", "DeepSurv"}
    assert "held-out Harrell C" in capsys.readouterr().out
    assert main(["demo", "--out", str(out), "--n", "2500", "--no-progress"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_overwrite_refuses_directories_that_are_not_runs(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--overwrite", "--no-progress"]) == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert "does not look like a fracrisk output" in capsys.readouterr().err


def test_unknown_command_exits():
    with pytest.raises(SystemExit):
        main(["nope"])
