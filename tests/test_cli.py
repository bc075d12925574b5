"""The command line and the demo, end to end on a small simulated cohort."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fracrisk.cli import main


def test_demo_writes_a_complete_run_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--studies", "population", "--n", "2500"]
    args += ["--bootstrap", "50", "--no-progress"]
    assert main(args) == 0
    assert {"report.html", "report.md", "evaluation.json", "run.json", "population"} <= {
        p.name for p in out.iterdir()
    }
    assert {"cohort.parquet", "predictions.csv", "models"} <= {
        p.name for p in (out / "population").iterdir()
    }
    run = json.loads((out / "run.json").read_text())
    assert run["versions"]["torch"] and run["studies"]["population"]["n"] == 2500
    evaluation = json.loads((out / "evaluation.json").read_text())
    (study,) = evaluation["studies"].values()
    models = [row["model"] for row in study["discrimination"]]
    assert models == [
        "FRAX-style calculator",
        "FRAX-style refit",
        "CoxPH",
        "DeepSurv",
        "DeepSurv (death competing)",
        "truth (oracle)",
    ]
    for row in study["discrimination"]:
        assert 0.6 < row["harrell"] < 0.9, row
        assert row["harrell_lower"] < row["harrell"] < row["harrell_upper"]
    assert study["info"]["horizons"] == [5.0, 10.0]  # the test patients reach 10 years
    oe = {(r["model"], r["horizon"]): r["oe"] for r in study["calibration"]}
    assert 0.8 < oe[("CoxPH", 5.0)] < 1.25
    # the absolute-risk head predicts less than the death-censored one (death competes)
    assert oe[("DeepSurv (death competing)", 10.0)] > oe[("DeepSurv", 10.0)]
    groups = [g for g in study["calibration_groups"] if g["events"] > 0]
    assert all(g["observed_lower"] < g["observed"] < g["observed_upper"] for g in groups)
    predictions = pd.read_csv(out / "population" / "predictions.csv", index_col=0)
    assert {"CoxPH | risk 10 y", "CoxPH | S(3 y)", "truth | risk 10 y"} <= set(predictions)
    printed = capsys.readouterr().out
    assert "Harrell C (95% CI)" in printed and "report:" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert main(args) == 2
    assert "overwrite" in capsys.readouterr().err


def test_demo_on_your_own_cohort_runs_the_clinical_models(tmp_path):
    from fracrisk.simulate import clinical_cohort

    own = clinical_cohort(1500, seed=7).df.drop(columns=["entry_date"])
    own.to_parquet(tmp_path / "mine.parquet")
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--cohort", str(tmp_path / "mine.parquet")]
    assert main([*args, "--bootstrap", "20", "--no-progress"]) == 0
    ((heading, study),) = json.loads((out / "evaluation.json").read_text())["studies"].items()
    assert heading == "Your cohort: mine.parquet"
    assert "truth (oracle)" not in {r["model"] for r in study["discrimination"]}  # no truth
    assert study["info"]["context"]["split"].startswith("stratified")  # no entry_date


@pytest.mark.slow
def test_demo_with_images_has_cnn_rows_and_grad_cam(tmp_path):
    out = tmp_path / "run"
    args = ["demo", "--out", str(out), "--studies", "kong2022", "--n", "500", "--epochs", "1"]
    assert main([*args, "--bootstrap", "20", "--no-progress"]) == 0
    (study,) = json.loads((out / "evaluation.json").read_text())["studies"].values()
    kinds = {row["model"]: row["class"] for row in study["models"]}
    assert kinds["images only (CNN)"] == kinds["images + clinical (CNN)"] == "ImageSurvivalModel"
    html = (out / "report.html").read_text()
    assert "Image explanations" in html and "Grad-CAM of the image part of its Cox stage" in html
    saved = {p.name for p in (out / "kong2022" / "models").iterdir()}
    assert {"images_only_cnn", "images_clinical_cnn", "coxph"} <= saved


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
        "--accelerator",
        "cpu",
        "--no-progress",
    ]
    assert main(args) == 0
    assert (tmp_path / "kp.safetensors").exists() and (tmp_path / "kp.json").exists()
    model = load_keypoint_detector(out)
    assert detect_keypoints(model, np.zeros((176, 96), dtype=np.float32)).shape == (5, 4, 2)
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_train_keypoints_on_an_absent_gpu_is_a_one_line_error(tmp_path, capsys):
    args = ["train-keypoints", "--out", str(tmp_path / "kp"), "--n", "1", "--epochs", "1"]
    assert main([*args, "--accelerator", "gpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "train-keypoints: error: accelerator='gpu' asks for a GPU" in err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------- prepare-images


@pytest.fixture(scope="module")
def image_manifest(tmp_path_factory):
    """A 6-patient simulated cohort as a plain CSV whose image paths are relative."""
    import os

    from fracrisk.simulate import cohort

    base = tmp_path_factory.mktemp("prepare")
    root = base / "images_root"
    sim = cohort(6, seed=11, images=("hip_ct", "spine"), out_dir=root)
    df = sim.df.copy()
    for column in ("hip_ct_path", "spine_xray_path"):
        df[column] = [os.path.relpath(p, root) for p in df[column]]
    assert not any(os.path.isabs(p) for p in df["hip_ct_path"])
    manifest = base / "cohort.csv"
    df.to_csv(manifest, index=False)
    return manifest, root, df


def _prepare(manifest, root, cache, *extra):
    return main(
        [
            "prepare-images",
            "--manifest",
            str(manifest),
            "--cache",
            str(cache),
            "--image-root",
            str(root),
            "--no-progress",
            *extra,
        ]
    )


def _cached_dataset(df, root, cache, kind, **options):
    """The dataset a training run would build on the same cache (covariates aside)."""
    from fracrisk.data import ImageCohortDataset

    return ImageCohortDataset(
        df, kind, covariates=[], cache_dir=cache, image_root=root, progress=False, **options
    )


def test_prepare_images_renders_once_then_reads_the_cache(
    image_manifest, tmp_path, capsys, monkeypatch
):
    manifest, root, df = image_manifest
    monkeypatch.chdir(tmp_path)  # relative paths resolve from --image-root, not from here
    cache = tmp_path / "cache"
    options = ["--kind", "drr", "--size", "64", "64", "--views", "frontal", "lateral"]
    assert _prepare(manifest, root, cache, *options, "--workers", "2") == 0
    out = capsys.readouterr().out
    assert "drr (2 x 64 x 64): 6 of 6 rows prepared" in out
    assert "(0 from cache, 6 images read, 6 rendered), 0 failed" in out
    assert _prepare(manifest, root, cache, *options, "--workers", "0") == 0
    assert "(6 from cache, 0 images read, 0 rendered), 0 failed" in capsys.readouterr().out
    # a training run with the same options finds every image without reading a CT
    data = _cached_dataset(df, root, cache, "drr", size=(64, 64), views=("frontal", "lateral"))
    assert data.cache_info["loaded"] == 0 and data.cache_info["rendered"] == 0
    assert tuple(data[0][0].shape) == (2, 64, 64)


def test_prepare_images_reports_a_corrupt_file_or_stops_on_it(image_manifest, tmp_path, capsys):
    import pandas as pd

    manifest, root, df = image_manifest
    bad_file = root / "corrupt_P000002_hip_ct.nii.gz"  # inside --image-root
    bad_file.write_bytes(b"this is not a CT" * 64)
    df = df.copy()
    df.loc[2, "hip_ct_path"] = str(bad_file)  # row 2 = line 4 of the CSV
    bad_manifest = tmp_path / "bad.csv"
    df.to_csv(bad_manifest, index=False)
    report = tmp_path / "failures.csv"
    common = ["--kind", "drr", "--size", "64", "64"]

    skip = [*common, "--on-error", "skip", "--report", str(report), "--workers", "2"]
    assert _prepare(bad_manifest, root, tmp_path / "cache", *skip) == 0
    captured = capsys.readouterr()
    assert "5 of 6 rows prepared" in captured.out and "1 failed" in captured.out
    assert f"listed in {report}" in captured.out
    assert "patient_id 'P000002' (row 4)" in captured.err
    failures = pd.read_csv(report)
    assert list(failures.columns) == ["row", "patient_id", "column", "path", "reason"]
    assert failures[["row", "patient_id", "column", "path"]].values.tolist() == [
        [4, "P000002", "hip_ct_path", str(bad_file)]
    ]
    assert "NIfTI" in failures.loc[0, "reason"]

    raise_ = [*common, "--on-error", "raise", "--workers", "0"]
    assert _prepare(bad_manifest, root, tmp_path / "cache_raise", *raise_) == 2
    captured = capsys.readouterr()
    assert f"error: cannot read {bad_file}" in captured.err
    assert "patient_id 'P000002'" in captured.err and "--on-error skip" in captured.err
    assert "Traceback" not in captured.err
    assert "prepared" not in captured.out


def test_prepare_images_writes_the_report_when_every_row_fails(image_manifest, tmp_path, capsys):
    import pandas as pd

    _, root, df = image_manifest
    df = df.copy()
    df["hip_ct_path"] = [str(tmp_path / f"missing_{i}.nii.gz") for i in range(len(df))]
    manifest = tmp_path / "all_missing.csv"
    df.to_csv(manifest, index=False)
    report = tmp_path / "failures.csv"
    args = ["--kind", "drr", "--on-error", "skip", "--report", str(report), "--workers", "0"]
    assert _prepare(manifest, root, tmp_path / "cache", *args) == 2
    captured = capsys.readouterr()
    assert "no usable row: all 6 rows" in captured.err and str(report) in captured.err
    failures = pd.read_csv(report)
    assert failures["patient_id"].tolist() == df["patient_id"].tolist()
    assert failures["path"].tolist() == df["hip_ct_path"].tolist()


def test_prepare_images_refuses_to_overwrite_a_report(image_manifest, tmp_path, capsys):
    manifest, root, _ = image_manifest
    report = tmp_path / "failures.csv"
    report.write_text("keep me")
    cache = tmp_path / "cache"
    args = ["--kind", "patches", "--report", str(report), "--workers", "0"]
    assert _prepare(manifest, root, cache, *args) == 2
    assert "pass --overwrite to replace it" in capsys.readouterr().err
    assert report.read_text() == "keep me"
    assert not cache.exists()  # refused before any work
    assert _prepare(manifest, root, cache, *args, "--overwrite") == 0
    assert report.read_text().strip() == "row,patient_id,column,path,reason"
    assert f"no row failed; wrote an empty report to {report}" in capsys.readouterr().out


def test_prepare_images_cone_beam_is_a_separate_cache_entry(image_manifest, tmp_path, capsys):
    import torch

    from fracrisk.imaging.geometry import ConeBeam

    manifest, root, df = image_manifest
    cache = tmp_path / "cache"
    common = ["--kind", "drr", "--size", "64", "64", "--workers", "0"]

    def drr_files():
        return sorted((cache / "drr").rglob("*.safetensors"))

    assert _prepare(manifest, root, cache, *common, "--geometry", "parallel") == 0
    parallel_files = drr_files()
    assert len(parallel_files) == 6
    cone = ["--geometry", "cone", "--sdd", "1100", "--sid", "700"]
    assert _prepare(manifest, root, cache, *common, *cone) == 0
    assert "(0 from cache, 6 images read, 6 rendered)" in capsys.readouterr().out
    assert len(drr_files()) == 12 and set(parallel_files) < set(drr_files())

    beam = ConeBeam(source_to_detector=1100, source_to_isocentre=700)
    cone_data = _cached_dataset(
        df, root, cache, "drr", size=(64, 64), render_options={"geometry": beam}
    )
    parallel_data = _cached_dataset(
        df, root, cache, "drr", size=(64, 64), render_options={"geometry": "parallel"}
    )
    for data in (cone_data, parallel_data):
        assert data.cache_info["loaded"] == 0 and data.cache_info["rendered"] == 0
    assert not torch.allclose(cone_data[0][0], parallel_data[0][0])


def test_prepare_images_patches_use_the_manifest_keypoints(image_manifest, tmp_path, capsys):
    manifest, root, df = image_manifest
    cache = tmp_path / "cache"
    args = ["--kind", "patches", "--workers", "0"]
    assert _prepare(manifest, root, cache, *args, "--keypoint-columns", "spine_keypoints") == 0
    out = capsys.readouterr().out
    assert "patches (5 x 64 x 64): 6 of 6 rows prepared" in out
    assert "(0 from cache, 6 images read, 0 keypoints detected, 6 cut)" in out
    # without the flag the simulator's keypoint column is found, giving the same entries
    assert _prepare(manifest, root, cache, *args) == 0
    assert "(6 from cache, 0 images read, 0 keypoints detected, 0 cut)" in capsys.readouterr().out
    data = _cached_dataset(df, root, cache, "patches")
    assert data.cache_info["from_cache"] == 6 and data.cache_info["loaded"] == 0


def test_prepare_images_volume_fills_the_cache_of_the_3d_cnn(image_manifest, tmp_path, capsys):
    manifest, root, df = image_manifest
    cache = tmp_path / "cache"
    options = ["--kind", "volume", "--size", "8", "12", "12", "--window", "-200", "1200"]
    assert _prepare(manifest, root, cache, *options, "--workers", "0") == 0
    out = capsys.readouterr().out
    assert "volume (1 x 8 x 12 x 12): 6 of 6 rows prepared" in out
    assert "(0 from cache, 6 images read, 6 resized), 0 failed" in out
    # the training run's dataset with the same options reads no CT
    data = _cached_dataset(df, root, cache, "volume", size=(8, 12, 12), window=(-200.0, 1200.0))
    assert data.cache_info["from_cache"] == 6 and data.cache_info["loaded"] == 0
    image = data[0][0]
    assert tuple(image.shape) == (1, 8, 12, 12)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0  # the HU window applied


def _drop_time(df):
    return df.drop(columns=["time"])


def _negative_time(df):
    df = df.copy()
    df.loc[1, "time"] = -1.0  # line 3 of the CSV
    return df


@pytest.mark.parametrize(
    "edit, args, message",
    [
        pytest.param(
            None,
            ["--kind", "patches", "--geometry", "cone"],
            "--geometry applies to --kind drr only",
            id="geometry-for-patches",
        ),
        pytest.param(
            None, ["--kind", "drr", "--sdd", "900"], "--sdd needs --geometry cone", id="sdd-alone"
        ),
        pytest.param(
            None,
            ["--kind", "volume", "--views", "frontal"],
            "--views applies to --kind drr only, not to volume",
            id="views-for-volume",
        ),
        pytest.param(
            None,
            ["--kind", "volume", "--size", "48", "48"],
            "--size of --kind volume must be three positive integers D H W, got [48, 48]",
            id="volume-size-2d",
        ),
        pytest.param(
            None,
            ["--kind", "drr", "--size", "8", "8", "8"],
            "--size of --kind drr must be two positive integers H W",
            id="drr-size-3d",
        ),
        pytest.param(
            None,
            ["--kind", "patches", "--window", "0", "1"],
            "--window applies to --kind drr and volume, not to patches",
            id="window-for-patches",
        ),
        pytest.param(
            None,
            ["--kind", "drr", "--geometry", "cone", "--sdd", "800"],
            "must be shorter than source_to_detector",
            id="impossible-cone",
        ),
        pytest.param(
            None,
            ["--kind", "drr", "--keypoint-columns", "spine_keypoints"],
            "--keypoint-columns applies to --kind patches only",
            id="keypoints-for-drr",
        ),
        pytest.param(
            None,
            ["--kind", "drr", "--image-column", "ct"],
            "image column 'ct' is not in",
            id="no-image-column",
        ),
        pytest.param(
            _drop_time,
            ["--kind", "drr"],
            "has no 'time' column",
            id="no-outcome",
        ),
        pytest.param(
            _negative_time,
            ["--kind", "drr"],
            "column 'time', row [3] (patient_id 'P000001'): follow-up time must be > 0 years",
            id="bad-outcome",
        ),
    ],
)
def test_prepare_images_user_errors_exit_with_a_message(
    image_manifest, tmp_path, capsys, edit, args, message
):
    manifest, root, df = image_manifest
    if edit is not None:
        manifest = tmp_path / "edited.csv"
        edit(df).to_csv(manifest, index=False)
    cache = tmp_path / "cache"
    assert _prepare(manifest, root, cache, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("fracrisk prepare-images: error: ") and message in err
    assert "Traceback" not in err
    assert not cache.exists()  # nothing was prepared


# ------------------------------------------------------------------ prepare-images --shard


def _cache_files(cache):
    """Every file under the cache, by relative path, with its bytes."""
    return {
        p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    "kind_options",
    [
        pytest.param(["--kind", "drr", "--size", "32", "32", "--views", "frontal"], id="drr"),
        pytest.param(["--kind", "patches", "--size", "16", "16"], id="patches"),
    ],
)
def test_prepare_images_shards_fill_the_same_cache_as_one_run(
    image_manifest, tmp_path, capsys, kind_options
):
    manifest, root, _ = image_manifest
    common = [*kind_options, "--workers", "0"]
    whole = tmp_path / "whole"
    assert _prepare(manifest, root, whole, *common) == 0
    capsys.readouterr()
    sharded = tmp_path / "sharded"
    for i in range(3):
        assert _prepare(manifest, root, sharded, *common, "--shard", f"{i}/3") == 0
        out = capsys.readouterr().out
        # rows at positions p with p % 3 == i: 2 of the 6
        assert f"shard {i}/3 (2 of the manifest's 6 rows: positions p with p % 3 == {i})" in out
        assert ": 2 of 2 rows prepared (0 from cache" in out
    expected = _cache_files(whole)
    assert expected and _cache_files(sharded) == expected  # same files, same bytes
    assert not [name for name in expected if name.split("/")[-1].startswith(".")]
    # a shard over the filled cache finds all of its rows there
    assert _prepare(manifest, root, sharded, *common, "--shard", "1/3") == 0
    assert "2 of 2 rows prepared (2 from cache, 0 images read" in capsys.readouterr().out


def test_prepare_images_report_says_which_shard_it_covered(image_manifest, tmp_path, capsys):
    import pandas as pd

    manifest, root, df = image_manifest
    bad_file = root / "corrupt_P000002_hip_ct.nii.gz"  # inside --image-root
    bad_file.write_bytes(b"this is not a CT" * 64)
    df = df.copy()
    df.loc[2, "hip_ct_path"] = str(bad_file)  # position 2 (line 4): shard 2/3 of 3
    bad_manifest = tmp_path / "bad.csv"
    df.to_csv(bad_manifest, index=False)
    common = ["--kind", "drr", "--size", "32", "32", "--views", "frontal", "--workers", "0"]
    skip = [*common, "--on-error", "skip"]

    report = tmp_path / "shard2.csv"
    assert (
        _prepare(
            bad_manifest, root, tmp_path / "c", *skip, "--shard", "2/3", "--report", str(report)
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 of 2 rows prepared" in out and "1 row(s) of shard 2/3 failed" in out
    failures = pd.read_csv(report)
    assert list(failures.columns) == ["shard", "row", "patient_id", "column", "path", "reason"]
    assert failures[["shard", "row", "patient_id"]].values.tolist() == [["2/3", 4, "P000002"]]

    empty = tmp_path / "shard0.csv"
    assert (
        _prepare(
            bad_manifest, root, tmp_path / "c", *skip, "--shard", "0/3", "--report", str(empty)
        )
        == 0
    )
    assert (
        f"no row of shard 0/3 failed; wrote an empty report to {empty}" in capsys.readouterr().out
    )
    assert empty.read_text().strip() == "shard,row,patient_id,column,path,reason"

    assert _prepare(bad_manifest, root, tmp_path / "c", *common, "--shard", "2/3") == 2
    err = capsys.readouterr().err
    assert f"cannot read {bad_file}" in err and "[shard 2/3]" in err


def test_prepare_images_a_shard_past_the_last_row_has_nothing_to_do(
    image_manifest, tmp_path, capsys
):
    manifest, root, _ = image_manifest
    report = tmp_path / "r.csv"
    args = ["--kind", "patches", "--shard", "7/8", "--report", str(report), "--workers", "0"]
    assert _prepare(manifest, root, tmp_path / "cache", *args) == 0
    out = capsys.readouterr().out
    assert "shard 7/8 (0 of the manifest's 6 rows" in out and "no row to prepare" in out
    assert report.read_text().strip() == "shard,row,patient_id,column,path,reason"


@pytest.mark.parametrize(
    "value, message",
    [
        pytest.param("3/2", "shard 3 does not exist in 2 shard(s): I runs from 0 to 1", id="3/2"),
        pytest.param("2/2", "shard 2 does not exist in 2 shard(s)", id="2/2"),
        pytest.param("x", "expected I/N, shard I of N counted from 0", id="x"),
        pytest.param("0/0", "the number of shards N must be at least 1", id="0/0"),
        pytest.param("1", "expected I/N", id="no-slash"),
        pytest.param("-1/3", "expected I/N", id="negative"),
        pytest.param("1/2/3", "expected I/N", id="three-parts"),
        pytest.param("1.0/2", "expected I/N", id="float"),
    ],
)
def test_prepare_images_rejects_a_bad_shard(image_manifest, tmp_path, capsys, value, message):
    manifest, root, _ = image_manifest
    with pytest.raises(SystemExit) as exit_info:
        _prepare(manifest, root, tmp_path / "cache", "--kind", "drr", f"--shard={value}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --shard: " in err and message in err
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------- manifests with relative paths


def test_a_moved_simulation_folder_still_loads(tmp_path, monkeypatch, capsys):
    import shutil

    import pyarrow.parquet as pq
    import torch

    from fracrisk.data import Cohort, ImageCohortDataset

    a = tmp_path / "A"
    args = ["simulate", "--preset", "kim2024", "--n", "2", "--images", "hip_ct", "spine"]
    assert main([*args, "--workers", "1", "--out", str(a), "--no-progress"]) == 0
    stored = pq.read_table(a / "cohort.parquet").to_pandas()
    for column in ("hip_ct_path", "spine_xray_path"):
        assert all(p.startswith("images/shard_0000/") for p in stored[column]), stored[column]
    reference = ImageCohortDataset(
        Cohort.read(a / "cohort.parquet"), "patches", covariates=[], progress=False
    )

    b = tmp_path / "elsewhere" / "B"
    b.parent.mkdir()
    shutil.move(str(a), str(b))
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cohort = Cohort.read(b / "cohort.parquet")
    for column in ("hip_ct_path", "spine_xray_path"):
        assert all(p.startswith(str(b / "images")) for p in cohort.df[column])
    patches = ImageCohortDataset(cohort, "patches", covariates=[], progress=False)
    assert torch.equal(patches[1][0], reference[1][0])
    drr = ImageCohortDataset(
        cohort, "drr", covariates=[], size=(32, 32), views=("frontal",), progress=False
    )
    assert tuple(drr[0][0].shape) == (1, 32, 32)
    # prepare-images finds the images from the manifest's directory, not the working one
    capsys.readouterr()
    prepare = ["prepare-images", "--manifest", str(b / "cohort.parquet"), "--kind", "patches"]
    assert main([*prepare, "--cache", "cache", "--workers", "0", "--no-progress"]) == 0
    assert "2 of 2 rows prepared" in capsys.readouterr().out


def test_prepare_images_relative_paths_start_from_the_manifest(
    image_manifest, tmp_path, monkeypatch, capsys
):
    import shutil

    _, root, df = image_manifest
    # a CSV beside the images, whose paths are relative to the CSV's directory
    manifest = tmp_path / "study" / "cohort.csv"
    shutil.copytree(root, manifest.parent)
    df.to_csv(manifest, index=False)
    monkeypatch.chdir(tmp_path)
    args = ["prepare-images", "--manifest", "study/cohort.csv", "--kind", "patches"]
    assert main([*args, "--cache", "cache", "--workers", "0", "--no-progress"]) == 0
    assert "6 of 6 rows prepared" in capsys.readouterr().out
    # --image-root still wins over the manifest's directory
    other = ["--image-root", str(tmp_path), "--on-error", "skip", "--cache", "cache2"]
    assert main([*args, *other, "--workers", "0", "--no-progress"]) == 2
    assert "no usable row" in capsys.readouterr().err
