"""benchmarks/reproduce.py end to end in its --quick form: files written, every C finite."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
MODELS = {
    "images + clinical",
    "images only",
    "images + clinical (two-stage CNN)",
    "texture + clinical (two-stage)",
    "CoxPH clinical",
    "DeepSurv clinical",
    "FRAX-style calculator (no BMD)",
    "FRAX-style calculator (BMD)",
    "FRAX-style refit (no BMD)",
    "FRAX-style refit (BMD)",
    "truth (oracle)",
}
FILES = (
    "report.md",
    "results.json",
    "report.html",
    "evaluation.json",
    "evaluation.md",
    "predictions_split.csv",
    "predictions_independent.csv",
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--no-progress", "--threads", "1", "--workers", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "study, sizes",
    [
        pytest.param(
            "kong2022", ("--n", "400", "--extra-n", "300", "--image-size", "32"), id="kong2022"
        ),
        pytest.param(
            "kim2024", ("--n", "240", "--extra-n", "160", "--image-size", "32"), id="kim2024"
        ),
    ],
)
def test_quick_reproduction_writes_report_with_finite_c(tmp_path, study, sizes):
    out = tmp_path / "out"
    done = _run(tmp_path, "--study", study, "--quick", *sizes, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == study and results["quick"] is True
    for label in ("split", "independent"):
        rows = results["test_sets"][label]["metrics"]
        assert {row["model"] for row in rows} == MODELS
        for row in rows:
            for metric in ("harrell", "uno"):
                c = row[metric]
                assert math.isfinite(c["estimate"]) and 0.0 <= c["estimate"] <= 1.0, (label, row)
                assert c["lower"] <= c["estimate"] <= c["upper"], (label, row)
        comparisons = results["test_sets"][label]["comparisons"]
        assert comparisons and all(math.isfinite(c["difference"]) for c in comparisons)
        risks = {row["model"]: row["risk"] for row in rows}
        assert risks["images + clinical"] == risks["CoxPH clinical"]  # cause-specific both
        assert risks["images + clinical"] != risks["truth (oracle)"]
        assert risks["FRAX-style calculator (no BMD)"] == risks["FRAX-style calculator (BMD)"]
    report = (out / "report.md").read_text()
    assert "published test C" in report and "independent" in report
    predictions = pd.read_csv(out / "predictions_independent.csv", index_col=0)
    assert len(predictions) == results["cohorts"]["independent"]["n"]
    assert np.isfinite(predictions.filter(like="| score").to_numpy()).all()
    # Simulated images are removed with the work directory; only the output remains.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = _run(tmp_path, "--study", "kong2022", "--quick", "--out", str(out))
    assert done.returncode != 0
    assert "already exists" in done.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_frax_refit_leaves_out_a_risk_factor_every_patient_has():
    # kim2024: every patient enters after a hip fracture, so prior_fracture is constant.
    from fracrisk.baselines import FraxStyleRefit
    from fracrisk.simulate import cohort

    sim = cohort(600, preset="kim2024", seed=3)
    model = FraxStyleRefit().fit(sim)
    assert model.constant_dropped_ == ["prior_fracture"]
    assert "prior_fracture" not in model.covariates_
    risk = model.predict_risk(sim, 2.0).to_numpy()
    assert np.isfinite(risk).all() and ((risk > 0) & (risk < 1)).all()
