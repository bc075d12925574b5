"""Bootstrap intervals and paired comparisons: reproducibility, the fast frequency-weight
path against plain resampling, coverage, p-values, undefined resamples and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fracrisk.exceptions import DataWarning
from fracrisk.metrics import (
    BootstrapResult,
    ComparisonResult,
    bootstrap,
    compare,
    harrell_c,
    uno_c,
)
from fracrisk.metrics.bootstrap import _FREQUENCY_WEIGHTED


def _simulate(n, seed, *, ties=False, competing=0.0, noise=1.0):
    """Exponential times with log hazard lp ~ N(0, 1), uniform censoring on (0, 3) years;
    the score is lp plus Gaussian noise. ``ties`` rounds times and scores."""
    rng = np.random.default_rng(seed)
    lp = rng.normal(0, 1, n)
    fracture = rng.exponential(np.exp(-lp))
    censor = rng.uniform(0, 3, n)
    time = np.minimum(fracture, censor)
    event = (fracture <= censor).astype(int)
    if competing:
        event[(event == 0) & (rng.random(n) < competing)] = 2
    score = lp + rng.normal(0, noise, n)
    if ties:
        time = np.ceil(time * 4) / 4
        score = np.round(score)
    return time, event, score, lp


@pytest.fixture(scope="module")
def data():
    return _simulate(400, 0)


def test_registry():
    assert harrell_c in _FREQUENCY_WEIGHTED and uno_c in _FREQUENCY_WEIGHTED
    assert (lambda t, e, r: harrell_c(t, e, r)) not in _FREQUENCY_WEIGHTED


# --------------------------------------------------------------------- reproducibility
def test_same_seed_same_result(data):
    time, event, score, _ = data
    a = bootstrap(harrell_c, time, event, score, n=100, seed=7)
    b = bootstrap(harrell_c, time, event, score, n=100, seed=7)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert (a.lower, a.upper, a.estimate) == (b.lower, b.upper, b.estimate)


def test_different_seed_different_result(data):
    time, event, score, _ = data
    a = bootstrap(harrell_c, time, event, score, n=100, seed=7)
    b = bootstrap(harrell_c, time, event, score, n=100, seed=8)
    assert not np.array_equal(a.replicates, b.replicates)
    assert a.estimate == b.estimate  # the full-sample estimate does not depend on the seed


def test_result_fields(data):
    time, event, score, _ = data
    res = bootstrap(harrell_c, time, event, score, n=200, seed=1, ci=0.9)
    assert isinstance(res, BootstrapResult)
    assert res.estimate == pytest.approx(harrell_c(time, event, score), abs=1e-15)
    assert res.lower <= res.estimate <= res.upper
    assert res.replicates.shape == (200,) and res.n_failed == 0
    assert res.ci == 0.9
    assert res.lower == pytest.approx(np.quantile(res.replicates, 0.05), abs=1e-15)
    assert res.upper == pytest.approx(np.quantile(res.replicates, 0.95), abs=1e-15)
    assert "90% CI" in str(res) and "200 resamples" in str(res)


def test_wider_ci_is_wider(data):
    time, event, score, _ = data
    narrow = bootstrap(harrell_c, time, event, score, n=200, seed=3, ci=0.5)
    wide = bootstrap(harrell_c, time, event, score, n=200, seed=3, ci=0.99)
    np.testing.assert_array_equal(narrow.replicates, wide.replicates)
    assert wide.lower < narrow.lower and narrow.upper < wide.upper


def test_width_shrinks_with_patients():
    small = bootstrap(harrell_c, *_simulate(500, 1)[:3], n=200, seed=0)
    large = bootstrap(harrell_c, *_simulate(8000, 1)[:3], n=200, seed=0)
    # the width falls like 1 / sqrt(n): about 4 times narrower
    assert large.upper - large.lower < (small.upper - small.lower) / 2.5


def test_accepts_torch_tensors(data):
    torch = pytest.importorskip("torch")
    time, event, score, _ = data
    ours = bootstrap(
        harrell_c, torch.tensor(time), torch.tensor(event), torch.tensor(score), n=50, seed=2
    )
    ref = bootstrap(harrell_c, time, event, score, n=50, seed=2)
    np.testing.assert_array_equal(ours.replicates, ref.replicates)


# --------------------------------------------------------------------- fast path == generic
def _generic_harrell(t, e, r):
    return harrell_c(t, e, r)


def _generic_uno(t, e, r, **kwargs):
    return uno_c(t, e, r, **kwargs)


@pytest.mark.parametrize(
    "ties, competing",
    [
        pytest.param(False, 0.0, id="continuous"),
        pytest.param(True, 0.0, id="ties"),
        pytest.param(True, 0.3, id="ties-competing"),
    ],
)
def test_harrell_fast_path_matches_resampling(ties, competing):
    time, event, score, _ = _simulate(300, 4, ties=ties, competing=competing)
    fast = bootstrap(harrell_c, time, event, score, n=150, seed=5)
    # a lambda is not in _FREQUENCY_WEIGHTED: it recomputes on the resampled arrays
    generic = bootstrap(lambda t, e, r: harrell_c(t, e, r), time, event, score, n=150, seed=5)
    np.testing.assert_allclose(fast.replicates, generic.replicates, rtol=0, atol=1e-12)
    assert (fast.lower, fast.upper) == pytest.approx((generic.lower, generic.upper), abs=1e-12)


def _uno_kwargs(name, time, event):
    if name == "tau":
        return {"tau": 1.5}
    if name == "train":
        rng = np.random.default_rng(9)
        train_time, train_event, _, _ = _simulate(500, 9, ties=True, competing=0.2)
        # extend the training follow-up past the evaluated data's so G is defined there
        train_time = np.append(train_time * rng.uniform(1.0, 1.1, 500), time.max() + 1.0)
        return {"train_time": train_time, "train_event": np.append(train_event, 0)}
    if name == "tau-and-train":
        return {"tau": 2.0, **_uno_kwargs("train", time, event)}
    return {}


@pytest.mark.parametrize("kwargs_name", ["none", "tau", "train", "tau-and-train"])
@pytest.mark.parametrize(
    "ties, competing",
    [pytest.param(False, 0.0, id="continuous"), pytest.param(True, 0.3, id="ties-competing")],
)
def test_uno_fast_path_matches_resampling(kwargs_name, ties, competing):
    time, event, score, _ = _simulate(300, 6, ties=ties, competing=competing)
    if kwargs_name in ("none", "train"):
        # without tau the last time must not be an event tied with a censoring (G = 0)
        keep = time < np.quantile(time, 0.97)
        time, event, score = time[keep], event[keep], score[keep]
        time = np.append(time, 10.0)
        event, score = np.append(event, 0), np.append(score, 0.0)
    kwargs = _uno_kwargs(kwargs_name, time, event)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        fast = bootstrap(uno_c, time, event, score, n=100, seed=11, **kwargs)
        generic = bootstrap(_generic_uno, time, event, score, n=100, seed=11, **kwargs)
    assert _generic_uno not in _FREQUENCY_WEIGHTED
    assert fast.n_failed == generic.n_failed
    assert len(caught) == 2 * (fast.n_failed > 0)
    if not ties or kwargs_name != "none":
        assert fast.n_failed == 0
    else:
        # resamples that miss the patient followed to 10 years can end on an event tied
        # with a censoring: G = 0 there, undefined on both paths alike
        assert fast.n_failed > 0
    np.testing.assert_allclose(fast.replicates, generic.replicates, rtol=0, atol=1e-12)
    assert fast.estimate == generic.estimate


def test_fast_path_fails_on_the_same_resamples():
    # t=3 holds an event tied with censorings and only one patient is followed longer
    # (3.5). Resamples without that patient have G(3) = 0: Uno's C is undefined there,
    # on either path.
    time = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0, 0.7, 1.2, 3.5])
    event = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0])
    score = np.array([5.0, 1.0, 4.0, 3.0, 2.0, 0.5, 0.0, 1.5, 4.5, 2.2, 0.1])
    with pytest.raises(ValueError, match="censoring survival G is 0 at event time 3"):
        uno_c(time[:-1], event[:-1], score[:-1])
    with pytest.warns(DataWarning, match="resamples left the metric undefined"):
        fast = bootstrap(uno_c, time, event, score, n=200, seed=0)
    with pytest.warns(DataWarning, match="resamples left the metric undefined"):
        generic = bootstrap(_generic_uno, time, event, score, n=200, seed=0)
    assert 20 < fast.n_failed < 150
    assert fast.n_failed == generic.n_failed
    np.testing.assert_allclose(fast.replicates, generic.replicates, rtol=0, atol=1e-12)


def test_compare_fast_path_matches_resampling(data):
    time, event, score, lp = data
    fast = compare(harrell_c, time, event, score, lp, n=100, seed=3)
    generic = compare(_generic_harrell, time, event, score, lp, n=100, seed=3)
    np.testing.assert_allclose(fast.replicates, generic.replicates, rtol=0, atol=1e-12)
    assert fast.p_value == generic.p_value


def test_fast_path_rejects_unknown_keywords(data):
    time, event, score, _ = data
    with pytest.raises(TypeError, match="unexpected"):
        bootstrap(harrell_c, time, event, score, n=10, tau=1.0)


# --------------------------------------------------------------------- coverage
def test_coverage_of_large_sample_value():
    # Harrell's C depends on the censoring, so the target is its value under the same
    # design: the estimate on a sample 500 times larger.
    target = harrell_c(*_simulate(150_000, 999)[:3])
    covered = 0
    for rep in range(20):
        res = bootstrap(harrell_c, *_simulate(300, 1000 + rep)[:3], n=200, seed=rep)
        covered += res.lower <= target <= res.upper
    assert covered >= 16, f"95% intervals covered the target in only {covered} of 20"


# --------------------------------------------------------------------- compare
def test_compare_model_with_itself(data):
    time, event, score, _ = data
    res = compare(harrell_c, time, event, score, score.copy(), n=100, seed=0)
    assert isinstance(res, ComparisonResult)
    assert res.difference == 0.0
    assert res.p_value == 1.0
    assert res.lower == res.upper == 0.0
    assert np.all(res.replicates == 0)


def test_compare_better_model(data):
    time, event, _, lp = data
    noise = np.random.default_rng(5).normal(size=len(time))
    n = 300
    res = compare(harrell_c, time, event, noise, lp, n=n, seed=0)
    assert res.estimate_a == pytest.approx(harrell_c(time, event, noise), abs=1e-15)
    assert res.estimate_b == pytest.approx(harrell_c(time, event, lp), abs=1e-15)
    assert res.difference == pytest.approx(res.estimate_b - res.estimate_a, abs=1e-15)
    assert res.difference > 0.1
    assert res.lower > 0 and res.lower <= res.difference <= res.upper
    assert 0 < res.p_value < 0.01
    # every replicate is positive: p = 2 (1 + 0) / (1 + n), the smallest possible, not 0
    assert np.all(res.replicates > 0)
    assert res.p_value == pytest.approx(2 / (n + 1), rel=1e-12)
    swapped = compare(harrell_c, time, event, lp, noise, n=n, seed=0)
    np.testing.assert_allclose(swapped.replicates, -res.replicates, rtol=0, atol=1e-15)
    assert swapped.p_value == res.p_value


def test_compare_p_value_formula(data):
    time, event, score, _ = data
    other = score + np.random.default_rng(1).normal(0, 0.3, len(time))  # similar model
    res = compare(harrell_c, time, event, score, other, n=200, seed=4)
    d, k = res.replicates, len(res.replicates)
    expected = min(1.0, 2 * min((1 + np.sum(d <= 0)) / (1 + k), (1 + np.sum(d >= 0)) / (1 + k)))
    assert res.p_value == pytest.approx(expected, abs=1e-15)
    assert 0.01 < res.p_value <= 1  # models this close are not told apart
    assert res.lower < 0 < res.upper


def test_compare_with_uno_kwargs(data):
    time, event, score, lp = data
    res = compare(uno_c, time, event, score, lp, n=50, seed=0, tau=1.5)
    assert res.estimate_b == pytest.approx(uno_c(time, event, lp, tau=1.5), abs=1e-15)
    assert res.estimate_a == pytest.approx(uno_c(time, event, score, tau=1.5), abs=1e-15)


# --------------------------------------------------------------------- undefined resamples
TINY_TIME = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
TINY_EVENT = np.array([0, 1, 0, 0, 0, 0, 1, 0])
TINY_RISK = np.array([0.3, 0.9, 0.2, 0.5, 0.1, 0.4, 0.8, 0.6])


def test_undefined_resamples_warn_and_are_counted():
    # two events: resamples without either (or without anyone outliving them) have no
    # comparable pair
    with pytest.warns(DataWarning, match=r"\d+ of 300 resamples left the metric undefined"):
        res = bootstrap(harrell_c, TINY_TIME, TINY_EVENT, TINY_RISK, n=300, seed=0)
    assert res.n_failed > 0
    assert len(res.replicates) + res.n_failed == 300
    assert np.all((res.replicates >= 0) & (res.replicates <= 1))


def test_undefined_resamples_in_compare():
    with pytest.warns(DataWarning, match="resamples left the metric undefined"):
        res = compare(harrell_c, TINY_TIME, TINY_EVENT, TINY_RISK, -TINY_RISK, n=300, seed=0)
    assert res.n_failed > 0
    assert len(res.replicates) + res.n_failed == 300


def test_metric_undefined_almost_everywhere_raises():
    def unique_times_only(t, e, r):  # defined on the full sample, not on a resample
        if len(np.unique(t)) < len(t):
            raise ValueError("duplicated patient")
        return harrell_c(t, e, r)

    with (
        pytest.warns(DataWarning, match="resamples left the metric undefined"),
        pytest.raises(ValueError, match="undefined on almost every resample"),
    ):
        bootstrap(unique_times_only, TINY_TIME, TINY_EVENT, TINY_RISK, n=20, seed=0)


def test_other_errors_propagate():
    def broken(t, e, r):
        if len(np.unique(t)) < len(t):
            raise RuntimeError("bug in the metric")
        return 0.5

    with pytest.raises(RuntimeError, match="bug in the metric"):
        bootstrap(broken, TINY_TIME, TINY_EVENT, TINY_RISK, n=5, seed=0)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"n": 1}, "n must be >= 2 resamples", id="n=1"),
        pytest.param({"n": 0}, "n must be >= 2 resamples", id="n=0"),
        pytest.param({"ci": 0.0}, r"ci must be in \(0, 1\)", id="ci=0"),
        pytest.param({"ci": 1.0}, r"ci must be in \(0, 1\)", id="ci=1"),
        pytest.param({"ci": 95}, r"ci must be in \(0, 1\)", id="ci=95"),
    ],
)
@pytest.mark.parametrize("function", ["bootstrap", "compare"])
def test_bad_options_raise(kwargs, match, function):
    with pytest.raises(ValueError, match=match):
        if function == "bootstrap":
            bootstrap(harrell_c, TINY_TIME, TINY_EVENT, TINY_RISK, **kwargs)
        else:
            compare(harrell_c, TINY_TIME, TINY_EVENT, TINY_RISK, TINY_RISK, **kwargs)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match=r"same number of patients \(8\); got \[7\]"):
        bootstrap(harrell_c, TINY_TIME, TINY_EVENT, TINY_RISK[:7], n=10)
    with pytest.raises(ValueError, match=r"same number of patients \(8\); got \[6\]"):
        compare(harrell_c, TINY_TIME, TINY_EVENT, TINY_RISK, TINY_RISK[:6], n=10)


def test_no_arrays_raise():
    with pytest.raises(ValueError, match="pass the metric's per-patient arrays"):
        bootstrap(harrell_c, n=10)
