"""Numerical robustness: finite results or clear errors at the edges, documented values.

Concordance of a constant score is 0.5; no comparable pair is a NoComparablePairsError;
NaN scores are refused before any compiled kernel runs; huge but finite scores rank as
they should; separated data warn; absurd covariates are errors, not silent zeros. The load
test predicts 1,000,000 patients and bootstraps Harrell's C at n = 1,000,000, printing both.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from fracrisk.exceptions import NoComparablePairsError
from fracrisk.losses import cox_partial_likelihood
from fracrisk.metrics import calibration, harrell_c, integrated_brier_score, uno_c
from fracrisk.models import CoxPH, DeepSurv
from fracrisk.models.coxph import ConvergenceWarning

rng = np.random.default_rng(0)
T = rng.exponential(5.0, 60)
E = rng.integers(0, 2, 60)


@pytest.mark.parametrize("metric", [harrell_c, uno_c])
def test_constant_scores_give_one_half(metric):
    assert metric(T, E, np.zeros(60)) == 0.5


@pytest.mark.parametrize("metric", [harrell_c, uno_c])
def test_huge_finite_scores_rank_like_their_signs(metric):
    signs = rng.choice([-1.0, 1.0], 60)
    assert metric(T, E, signs * 1e30) == pytest.approx(metric(T, E, signs))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_refused(bad):
    score = np.ones(60)
    score[5] = bad
    with pytest.raises(ValueError, match=r"positions \[5\]"):
        harrell_c(T, E, score)


def test_no_comparable_pairs_is_a_clear_error():
    with pytest.raises(NoComparablePairsError):
        harrell_c(T, np.zeros(60, int), np.arange(60.0))  # all censored
    with pytest.raises(NoComparablePairsError):
        harrell_c(T[:1], np.ones(1, int), np.zeros(1))  # n = 1
    assert harrell_c(T[:2], np.ones(2, int), np.array([1.0, 0.0])) in (0.0, 1.0)  # n = 2


def test_the_loss_stays_finite_or_refuses():
    eta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    time_ = torch.tensor([1.0, 1.0, 1.0, 1.0])
    all_tied = cox_partial_likelihood(eta, time_, torch.tensor([1, 0, 1, 0]))
    assert torch.isfinite(all_tied)
    none = cox_partial_likelihood(eta, time_, torch.zeros(4, dtype=torch.long))
    assert float(none.detach()) == 0.0
    none.backward()  # a batch without events still has a graph
    single = cox_partial_likelihood(
        torch.tensor([1e30, -1e30, 0.0], dtype=torch.float64),
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([1, 0, 0]),
    )
    assert torch.isfinite(single)
    with pytest.raises(ValueError, match="time"):
        cox_partial_likelihood(
            torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, np.nan, 3.0]), torch.ones(3)
        )


def test_calibration_of_two_patients_is_refused_not_nan():
    with pytest.raises(ValueError):
        calibration([1.0], [1], [0.2], 0.5)


def _cohort(scale: float, n: int = 400) -> pd.DataFrame:
    r = np.random.default_rng(3)
    x = r.normal(size=n)
    time_ = r.exponential(1.0 / np.exp(0.7 * x))
    return pd.DataFrame({"time": time_, "event": (time_ < 2).astype(int), "x": x * scale})


def test_covariates_a_million_times_their_scale_fit_the_same_ranking():
    small = DeepSurv(hidden=(8,), max_epochs=5, seed=0, progress=False)
    big = DeepSurv(hidden=(8,), max_epochs=5, seed=0, progress=False)
    a = small.fit(_cohort(1.0), covariates=["x"]).predict_score(_cohort(1.0))
    b = big.fit(_cohort(1e6), covariates=["x"]).predict_score(_cohort(1e6))
    assert np.isfinite(b).all()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # standardised on the way in


def test_a_covariate_of_1e300_is_an_error_not_a_silent_zero():
    df = _cohort(1.0)
    df.loc[7, "x"] = 1e300
    with pytest.raises(ValueError, match="x"):
        DeepSurv(hidden=(8,), max_epochs=2, progress=False).fit(df, covariates=["x"])


def test_separated_data_warn_with_a_category():
    r = np.random.default_rng(1)
    t = r.exponential(5.0, 200)
    e = r.integers(0, 2, 200)
    df = pd.DataFrame({"time": t, "event": e, "x": (e == 1).astype(float)})
    with pytest.warns(ConvergenceWarning, match=r"\['x'\] are diverging"):
        CoxPH().fit(df, covariates=["x"])


def test_integrated_brier_of_a_single_time_is_refused_or_finite():
    surv = np.full((60, 1), 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            value = integrated_brier_score(T, E, surv, [1.0])
        except ValueError:
            return
    assert np.isfinite(value)


_LOAD = r"""
import json, resource, time
import numpy as np, pandas as pd
from fracrisk.metrics import bootstrap, harrell_c
from fracrisk.models import CoxPH

n = 1_000_000
r = np.random.default_rng(5)
x = r.normal(size=n)
time_ = np.minimum(r.exponential(1.0 / np.exp(0.5 * x)) + 1e-6, 1.5)
event = (time_ < 1.5).astype(np.int64)
table = pd.DataFrame({"time": time_, "event": event, "x": x})
model = CoxPH().fit(table.iloc[:20_000], covariates=["x"])
start = time.perf_counter()
risk = model.predict_risk(table, 1.0).to_numpy()
predict_s = time.perf_counter() - start
start = time.perf_counter()
result = bootstrap(harrell_c, time_, event, x, n=20, seed=0)
boot_s = time.perf_counter() - start
print(json.dumps({
    "n": len(risk), "finite": bool(np.isfinite(risk).all()), "predict_s": predict_s,
    "c": result.estimate, "lower": result.lower, "upper": result.upper, "boot_s": boot_s,
    "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
}))
"""


@pytest.mark.slow
def test_a_million_patients_predict_and_bootstrap_within_memory():
    """In a fresh process: peak RSS (imports included) under 2 GiB."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _LOAD], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"1,000,000 patients: predict_risk {out['predict_s']:.2f} s; Harrell C {out['c']:.4f} "
        f"(95% CI {out['lower']:.4f}-{out['upper']:.4f}, 20 resamples) in {out['boot_s']:.1f} s;"
        f" peak RSS {out['peak_gib']:.2f} GiB"
    )
    assert out["n"] == 1_000_000 and out["finite"]
    assert out["lower"] <= out["c"] <= out["upper"]
    assert out["peak_gib"] < 2.0
