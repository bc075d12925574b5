"""Kaplan-Meier and Aalen-Johansen against lifelines, by hand, and observed_risk."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from fracrisk.nonparametric import (
    aalen_johansen,
    aalen_johansen_interval,
    kaplan_meier,
    observed_risk,
)


def _competing_data(n: int, seed: int, *, p_competing: float = 1.0):
    """Continuous (tie-free) times with events 1, competing deaths 2 and censoring 0."""
    rng = np.random.default_rng(seed)
    fracture = rng.exponential(6.0, n)
    death = rng.exponential(8.0, n) / p_competing if p_competing > 0 else np.full(n, np.inf)
    censor = rng.uniform(0.5, 12.0, n)
    time = np.minimum.reduce([fracture, death, censor])
    event = np.select([fracture == time, death == time], [1, 2], 0)
    return time, event


def test_matches_lifelines_with_ties_and_competing_events():
    rng = np.random.default_rng(1)
    time = rng.integers(1, 30, 500).astype(float)
    event = rng.integers(0, 3, 500)
    # lifelines 0.30: KaplanMeierFitter().fit(durations, event_observed)
    km = KaplanMeierFitter().fit(time, event == 1)
    query = np.array([0.5, 1.0, 3.0, 7.5, 29.0, 40.0])
    _, ours = kaplan_meier(time, event, times=query)
    np.testing.assert_allclose(ours, km.survival_function_at_times(query).to_numpy(), rtol=1e-12)
    times, surv = kaplan_meier(time, event)
    np.testing.assert_array_equal(times, np.unique(time[event == 1]))
    assert np.all(np.diff(surv) <= 0)


# --------------------------------------------------------------------- Aalen-Johansen
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aalen_johansen_matches_lifelines(seed):
    time, event = _competing_data(400, seed)
    assert len(np.unique(time)) == len(time)  # unique times: lifelines does not jitter
    assert {0, 1, 2} <= set(event.tolist())
    # lifelines 0.30: AalenJohansenFitter(calculate_variance=False)
    #                 .fit(durations, event_observed, event_of_interest=1).cumulative_density_
    fitter = AalenJohansenFitter(calculate_variance=False).fit(time, event, event_of_interest=1)
    index = fitter.cumulative_density_.index.to_numpy()
    values = fitter.cumulative_density_.iloc[:, 0].to_numpy()
    rng = np.random.default_rng(100 + seed)
    query = np.concatenate(
        [
            [0.0, 1e-9],
            np.sort(rng.uniform(0, time.max(), 60)),
            time[:40],
            [time.max(), time.max() + 1.0],
        ]
    )
    # lifelines' table read as a right-continuous step function
    expected = values[np.searchsorted(index, query, side="right") - 1]
    ours = aalen_johansen(time, event, times=query)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert ours[-1] > 0.1  # the comparison is not between two curves of zeros


def test_aalen_johansen_without_competing_events_is_one_minus_km():
    time, event = _competing_data(300, 5, p_competing=0.0)
    assert not np.any(event == 2) and np.any(event == 0)
    query = np.linspace(0, time.max() + 1, 57)
    _, km = kaplan_meier(time, event, times=query)
    np.testing.assert_allclose(aalen_johansen(time, event, times=query), 1 - km, rtol=0, atol=1e-13)


def test_aalen_johansen_below_one_minus_cause_specific_km():
    time, event = _competing_data(300, 6)
    query = np.linspace(1, 10, 10)
    _, km = kaplan_meier(time, event, times=query)  # competing death censored
    aj = aalen_johansen(time, event, times=query)
    assert np.all(aj <= 1 - km + 1e-15)
    assert aj[-1] < 1 - km[-1] - 0.01


@pytest.mark.parametrize(
    "time, event, query, expected",
    [
        # n=5. t=1: F += 1 * 1/5 = 0.2, S = 4/5; t=2 (death): S = 4/5 * 3/4 = 0.6;
        # t=3 censored; t=4: F += 0.6 * 1/2 = 0.5, S = 0.3; t=5: F += 0.3 * 1/1 = 0.8
        pytest.param(
            [1.0, 2.0, 3.0, 4.0, 5.0],
            [1, 2, 0, 1, 1],
            [0.5, 1.0, 2.5, 3.9, 4.0, 5.0, 9.0],
            [0.0, 0.2, 0.2, 0.2, 0.5, 0.8, 0.8],
            id="distinct-times",
        ),
        # tied times. t=1: 5 at risk, one fracture and one death: F = 1/5, S = 3/5;
        # t=2: 3 at risk, one fracture (one censored): F += 3/5 * 1/3 = 0.4, S = 2/5;
        # t=3: 1 at risk, fracture: F += 2/5 -> 0.8
        pytest.param(
            [1.0, 1.0, 2.0, 2.0, 3.0],
            [1, 2, 1, 0, 1],
            [0.0, 1.0, 2.0, 3.0],
            [0.0, 0.2, 0.4, 0.8],
            id="tied-times",
        ),
        # docstring example: 1/4 after the first fracture, then 1/2 * 1 more
        pytest.param([1.0, 2.0, 3.0, 4.0], [2, 1, 0, 1], [2.5, 4.0], [0.25, 0.75], id="docstring"),
    ],
)
def test_aalen_johansen_hand_computed(time, event, query, expected):
    np.testing.assert_allclose(
        aalen_johansen(time, event, times=query), expected, rtol=0, atol=1e-15
    )


# --------------------------------------------------------------------- observed_risk
def test_observed_risk_uses_aalen_johansen_with_competing_events():
    time, event = _competing_data(300, 7)
    assert np.any(event == 2)
    horizon = 5.0
    aj = aalen_johansen(time, event, times=[horizon])[0]
    _, km = kaplan_meier(time, event, times=[horizon])
    assert observed_risk(time, event, horizon) == pytest.approx(aj, abs=1e-15)
    assert abs(aj - (1 - km[0])) > 0.01  # the two estimators differ on these data


def test_observed_risk_uses_kaplan_meier_without_competing_events():
    time, event = _competing_data(300, 8, p_competing=0.0)
    horizon = 5.0
    _, km = kaplan_meier(time, event, times=[horizon])
    assert observed_risk(time, event, horizon) == pytest.approx(1 - km[0], abs=1e-15)


def test_observed_risk_hand_computed():
    # KM: t=1 4/5, t=2 censored, t=3 4/5 * 2/3 -> risk 1 - 8/15 = 7/15
    time, event = [1.0, 2.0, 3.0, 4.0, 5.0], [1, 0, 1, 0, 1]
    assert observed_risk(time, event, 3.5) == pytest.approx(7 / 15, abs=1e-15)
    # AJ with a death at 2: t=1 F=1/5, S=4/5; t=2 S=3/5; t=3 F += 3/5 * 1/3 -> 2/5
    assert observed_risk(time, [1, 2, 1, 0, 1], 3.5) == pytest.approx(2 / 5, abs=1e-15)


def test_observed_risk_horizon_at_last_follow_up_is_allowed():
    assert observed_risk([1.0, 2.0, 3.0], [1, 0, 1], 3.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "event", [pytest.param([1, 0, 1, 0], id="km"), pytest.param([1, 2, 1, 0], id="aj")]
)
def test_observed_risk_beyond_follow_up(event):
    time = [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match=r"horizon 6 is beyond the last follow-up \(4 years\)"):
        observed_risk(time, event, 6.0)
    carried = observed_risk(time, event, 6.0, carry_forward=True)
    assert carried == pytest.approx(observed_risk(time, event, 4.0), abs=1e-15)


@pytest.mark.parametrize(
    "horizon",
    [
        pytest.param(0.0, id="zero"),
        pytest.param(-1.0, id="negative"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
    ],
)
def test_observed_risk_rejects_bad_horizon(horizon):
    with pytest.raises(ValueError, match="horizon must be a positive number of years"):
        observed_risk([1.0, 2.0], [1, 0], horizon, carry_forward=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aalen_johansen_interval_matches_lifelines(seed):
    """Estimate and 95% interval equal lifelines' delta-method log(-log) interval (no ties)."""
    rng = np.random.default_rng(seed)
    n = 300
    time = rng.exponential(5.0, n).round(6) + rng.uniform(0, 1e-4, n)
    event = rng.choice([0, 1, 2], size=n, p=[0.4, 0.35, 0.25])
    horizon = float(np.quantile(time, 0.6))
    estimate, lower, upper = aalen_johansen_interval(time, event, horizon)
    ajf = AalenJohansenFitter(calculate_variance=True).fit(time, event, event_of_interest=1)
    at = ajf.cumulative_density_.index[ajf.cumulative_density_.index <= horizon][-1]
    # lifelines 0.30 labels its two columns "upper" then "lower" but fills the first with
    # the smaller bound, so compare the sorted pair.
    ci = sorted(ajf.confidence_interval_.loc[at].to_numpy(float))
    assert estimate == pytest.approx(float(ajf.cumulative_density_.loc[at].iloc[0]), abs=1e-10)
    assert (lower, upper) == pytest.approx(tuple(ci), abs=1e-8)
    assert 0 < lower < estimate < upper < 1


def test_aalen_johansen_interval_narrows_with_sample_size():
    rng = np.random.default_rng(3)
    widths = []
    for n in (200, 3200):
        time = rng.exponential(5.0, n)
        event = rng.choice([0, 1, 2], size=n, p=[0.4, 0.35, 0.25])
        _, lower, upper = aalen_johansen_interval(time, event, 3.0)
        widths.append(upper - lower)
    assert widths[1] < widths[0] / 3  # about 1/sqrt(16) = 1/4 of the width


def test_aalen_johansen_interval_without_events_is_open_above():
    estimate, lower, upper = aalen_johansen_interval([1.0, 2.0, 3.0], [0, 2, 0], 2.5)
    assert (estimate, lower) == (0.0, 0.0)
    assert np.isnan(upper)
