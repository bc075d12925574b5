"""benchmarks/image_signal.py: a small run writes results.json in its stable form."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "image_signal", ROOT / "benchmarks/image_signal.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    bench = _module()
    out = tmp_path_factory.mktemp("image_signal")
    args = bench._parse_args(
        [
            "--preset",
            "kong2022",
            "--n-train",
            "240",
            "--n-test",
            "160",
            "--seed",
            "3",
            "--out",
            str(out),
            "--skip-end-to-end",
            "--manifest-keypoints",
            "--n-boot",
            "20",
            "--no-progress",
        ]
    )
    return out, bench.run(args, log=lambda *a: None)


def test_results_have_the_stable_form(run):
    out, results = run
    assert json.loads((out / "results.json").read_text()) == results
    for key in ("preset", "seed", "n_train", "n_test", "seconds", "ceiling", "oracle"):
        assert key in results
    names = {
        "frax_refit",
        "frax_refit_bmd",
        "cox_frax",
        "cox_frax_bmd",
        "texture_frax",
        "opportunistic_frax",
        "ablation_images_only",
        "ablation_no_morphometry",
        "ablation_masked",
    }
    assert names <= set(results["models"])
    for name, model in results["models"].items():
        assert model["c_low"] <= model["c"] <= model["c_high"], name
        assert model["risk_type"] in ("cause_specific", "absolute")
    assert results["models"]["opportunistic_frax"]["risk_type"] == "absolute"
    assert math.isfinite(results["models"]["opportunistic_frax"]["t_score_r2"])
    for name, model in results["models"].items():  # absolute risks: a competing-risks C
        absolute = model["risk_type"] == "absolute"
        assert ("c_wolbers" in model) == absolute, name
        if absolute:
            assert model["c_wolbers_low"] <= model["c_wolbers"] <= model["c_wolbers_high"]
    pairs = {(c["model"], c["reference"]) for c in results["comparisons"]}
    assert ("texture_frax", "cox_frax_bmd") in pairs and ("cox_frax", "frax_refit") in pairs
    for c in results["comparisons"]:
        assert c["low"] <= c["delta"] <= c["high"]
    assert 0.5 < results["ceiling"] <= results["oracle"] + 0.02


def test_reports_and_the_stamp_that_lets_a_rerun_reuse_the_cohorts(run):
    out, results = run
    assert "<table>" in (out / "report.html").read_text()
    assert "| texture_frax |" in (out / "report.md").read_text()
    stamp = json.loads((out / "data" / "cohorts.json").read_text())
    assert stamp == {"preset": "kong2022", "n_train": 240, "n_test": 160, "seed": 3}


def test_the_trained_image_model_reuses_the_cohorts_and_reports_its_t_score(run):
    """``--models image_frax image_frax_graded``: the two-stage CNN, one epoch, on the same
    cohorts, with the Genant grades as numbers and as classes."""
    out, _ = run
    bench = _module()
    args = bench._parse_args(
        [
            *("--preset", "kong2022", "--n-train", "240", "--n-test", "160", "--seed", "3"),
            *("--out", str(out), "--manifest-keypoints", "--n-boot", "20", "--no-progress"),
            *("--epochs", "1", "--models", "image_frax", "image_frax_graded", "image_only"),
        ]
    )
    results = bench.run(args, log=lambda *a: None)
    assert set(results["models"]) == {
        "frax_refit",
        "frax_refit_bmd",
        "frax_calculator",
        "frax_calculator_bmd",
        "cox_frax_bmd",
        "image_frax",
        "image_frax_graded",
        "image_only",
    }
    for name in ("image_frax", "image_frax_graded", "image_only"):
        image = results["models"][name]
        assert image["risk_type"] == "cause_specific" and math.isfinite(image["t_score_r2"])
    # image_only fits its Cox stage on image_frax's stage 1: the same T-score estimate.
    models = results["models"]
    assert models["image_only"]["stage_one_of"] == "image_frax"
    assert models["image_frax"]["stage_one_of"] is None
    assert models["image_only"]["t_score_r2"] == models["image_frax"]["t_score_r2"]
    assert models["image_only"]["c"] != models["image_frax"]["c"]  # its own Cox stage
    with pytest.raises(SystemExit):  # refused before anything is simulated
        bench._parse_args(["--preset", "kong2022", "--out", str(out), "--models", "nope"])


@pytest.mark.filterwarnings("ignore:age outside 40-90")  # kim2024 has patients over 90
def test_kims_single_view_ablations_their_ensemble_and_the_3d_cnn(tmp_path):
    bench = _module()
    args = bench._parse_args(
        [
            *("--preset", "kim2024", "--n-train", "120", "--n-test", "80", "--seed", "2"),
            *("--out", str(tmp_path), "--n-boot", "20", "--no-progress", "--skip-end-to-end"),
            *("--models", "ablation_view_ensemble"),
        ]
    )
    results = bench.run(args, log=lambda *a: None)
    views = ("ablation_frontal", "ablation_lateral", "ablation_axial", "ablation_view_ensemble")
    assert set(views) <= set(results["models"])
    for name in views:
        assert 0.0 < results["models"][name]["c"] < 1.0
    # Kim's 3-D arm on the same cohorts: the CT itself through a 3-D ResNet, one epoch.
    args = bench._parse_args(
        [
            *("--preset", "kim2024", "--n-train", "120", "--n-test", "80", "--seed", "2"),
            *("--out", str(tmp_path), "--n-boot", "20", "--no-progress", "--epochs", "1"),
            *("--models", "ablation_volume_3d"),
        ]
    )
    volume = bench.run(args, log=lambda *a: None)["models"]["ablation_volume_3d"]
    assert 0.0 < volume["c"] < 1.0 and math.isfinite(volume["t_score_r2"])
    with pytest.raises(SystemExit, match="not fitted for kim2024"):
        bench.run(
            bench._parse_args(
                [
                    *("--preset", "kim2024", "--n-train", "120", "--n-test", "80"),
                    *("--seed", "2", "--out", str(tmp_path), "--models", "ablation_masked"),
                ]
            ),
            log=lambda *a: None,
        )
