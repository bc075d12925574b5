"""The command line and the demo, end to end on a small simulated cohort."""

from __future__ import annotations

import json

import numpy as np
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
    assert models == [
        "FRAX-style calculator",
        "FRAX-style refit",
        "CoxPH",
        "DeepSurv",
        "truth (oracle)",
    ]
    for row in run["metrics"]:
        harrell = float(row["Harrell C (95% CI)"].split()[0])
        assert 0.6 < harrell < 0.9, row
    assert 0.8 < run["calibration"]["CoxPH"]["O/E"] < 1.25
    assert [c.split(",")[0] for c in run["comparisons"]] == [
        "DeepSurv vs FRAX-style refit",
        "DeepSurv vs CoxPH",
    ]
    assert "DeepSurv vs CoxPH" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
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


FRAX_HEADER = (
    "age,sex,bmi,prior_fracture,parental_hip_fracture,current_smoking,glucocorticoids,"
    "rheumatoid_arthritis,secondary_osteoporosis,alcohol_3_or_more_units,femoral_neck_t_score\n"
)


def test_frax_command_adds_probabilities_and_warns_on_clamped_age(tmp_path, capsys):
    import pandas as pd

    source = tmp_path / "patients.csv"
    source.write_text(FRAX_HEADER + "65,F,25,1,0,0,0,0,0,0,-2.5\n95,M,27,0,0,1,0,0,0,0,\n")
    out = tmp_path / "out.csv"
    assert main(["frax", "--input", str(source), "--output", str(out)]) == 0
    result = pd.read_csv(out)
    assert list(result.columns[-2:]) == ["mof_10y", "hip_10y"]
    assert result[["mof_10y", "hip_10y"]].stack().between(0, 1).all()
    assert result.loc[0, "mof_10y"] > result.loc[0, "hip_10y"]
    err = capsys.readouterr().err
    assert "age outside 40-90 in rows [3]" in err  # line 3 of the CSV
    assert main(["frax", "--input", str(source), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "row, column, reason",
    [
        pytest.param("65,X,25,0,0,0,0,0,0,0,-1", "sex", "unknown sex code", id="sex"),
        pytest.param(
            "65,F,25,0,0,0,0,0,0,0,-6", "femoral_neck_t_score", "T-score must lie", id="t-score"
        ),
        pytest.param("65,F,25,2,0,0,0,0,0,0,-1", "prior_fracture", "must be 0 or 1", id="flag"),
    ],
)
def test_frax_command_names_row_and_column(tmp_path, capsys, row, column, reason):
    source = tmp_path / "patients.csv"
    source.write_text(FRAX_HEADER + "70,F,25,0,0,0,0,0,0,0,-1\n" + row + "\n")
    out = tmp_path / "out.csv"
    assert main(["frax", "--input", str(source), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"column '{column}', row [3]" in err
    assert reason in err
    assert not out.exists()


def test_simulate_writes_a_cohort_that_reads_back(tmp_path, capsys):
    from fracrisk.data import Cohort

    out = tmp_path / "sim"
    assert (
        main(["simulate", "--preset", "kong2022", "--n", "300", "--out", str(out), "--no-progress"])
        == 0
    )
    cohort = Cohort.read(out / "cohort.parquet")
    assert len(cohort) == 300
    assert cohort.truth is not None and "genant_L1" in cohort.truth.columns
    assert "wrote 300 patients" in capsys.readouterr().out
    assert main(["simulate", "--n", "10", "--out", str(out), "--no-progress"]) == 2
    assert "pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err


def test_simulate_with_images_writes_readable_files(tmp_path):
    import json

    import nibabel as nib
    import numpy as np
    from PIL import Image

    from fracrisk.data import Cohort

    out = tmp_path / "sim"
    args = [
        "simulate",
        "--preset",
        "kim2024",
        "--n",
        "3",
        "--images",
        "hip_ct",
        "spine",
        "--workers",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    cohort = Cohort.read(out / "cohort.parquet")
    assert set(cohort.image_cols) == {"hip_ct_path", "spine_xray_path"}
    volume = nib.load(cohort.df["hip_ct_path"].iloc[0])
    assert volume.shape == (96, 128, 128) and volume.get_fdata().max() > 700  # cortical bone
    xray = np.asarray(Image.open(cohort.df["spine_xray_path"].iloc[0]))
    keypoints = np.array(json.loads(cohort.df["spine_keypoints"].iloc[0]))
    assert keypoints.shape == (5, 4, 2)
    assert (keypoints[..., 0] < xray.shape[1]).all() and (keypoints[..., 1] < xray.shape[0]).all()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_train_keypoints_writes_a_loadable_detector(tmp_path, capsys):
    from fracrisk.imaging import detect_keypoints, load_keypoint_detector

    out = tmp_path / "kp"
    args = [
        "train-keypoints",
        "--out",
        str(out),
        "--n",
        "8",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(args) == 0
    assert (tmp_path / "kp.safetensors").exists() and (tmp_path / "kp.json").exists()
    model = load_keypoint_detector(out)
    assert detect_keypoints(model, np.zeros((176, 96), dtype=np.float32)).shape == (5, 4, 2)
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
