"""The documentation site builds with no warning, and its API reference holds the public API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Page of the built site -> anchors (mkdocstrings ids) it must hold.
EXPECTED = {
    "api/models/index.html": [
        "fracrisk.models.CoxPH",
        "fracrisk.models.DeepSurv",
        "fracrisk.models.ImageSurvivalModel",
        "fracrisk.models.load_model",
    ],
    "api/metrics/index.html": [
        "fracrisk.metrics.harrell_c",
        "fracrisk.metrics.wolbers_c",
        "fracrisk.metrics.net_benefit",
        "fracrisk.metrics.calibration.calibration",  # the function, not its module
    ],
    "api/data/index.html": ["fracrisk.data.cohort.Cohort", "fracrisk.data.cohort.Cohort.read"],
    "api/survival-core/index.html": [
        "fracrisk.losses.cox_partial_likelihood",
        "fracrisk.baseline_hazard.BreslowBaselineHazard",
        "fracrisk.nonparametric.aalen_johansen",
    ],
    "api/baselines/index.html": ["fracrisk.baselines.FraxStyleRefit"],
    "api/simulate/index.html": ["fracrisk.simulate.clinical_cohort"],
    "api/training/index.html": ["fracrisk.training.config.TrainingConfig"],
    "api/evaluation/index.html": [
        "fracrisk.evaluation.evaluate.evaluate",
        "fracrisk.evaluation.evaluate.Evaluation",
        "fracrisk.evaluation.report.write_report",
    ],
}


def test_site_builds_strictly_with_the_api_reference(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]

    for page in ("quickstart", "own-cohort", "gpu-and-cluster", "interpreting"):
        assert (site / page / "index.html").is_file(), page
    for page, anchors in EXPECTED.items():
        html = (site / page).read_text(encoding="utf-8")
        for anchor in anchors:
            assert f'id="{anchor}"' in html, f"{anchor} is not in {page}"
    # The docstrings' Sphinx roles are rewritten (docs/_griffe_rst.py), not printed.
    models = (site / "api/models/index.html").read_text(encoding="utf-8")
    assert ":class:" not in models and ":math:" not in models
    assert not (site / "_griffe_rst.py").exists()  # a build helper, not a page
