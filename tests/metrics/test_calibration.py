"""Calibration at a horizon and D-calibration of survival curves.

Exponential survival with known hazards gives the true risk, so a calibrated model, a
model with its risks doubled and an over-fitted model can be told apart with known answers.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from fracrisk.exceptions import DataWarning  # noqa: E402
from fracrisk.metrics import calibration, d_calibration  # noqa: E402
from fracrisk.nonparametric import (
    aalen_johansen,
    aalen_johansen_interval,
    kaplan_meier,
    observed_risk,
)  # noqa: E402

HORIZON = 5.0


def _simulate(n=20000, seed=0, death_rate=0.0):
    """Exponential fracture times with log hazard ~ N(-3, 0.8), uniform censoring 2..12
    years and, optionally, competing death at a constant rate."""
    rng = np.random.default_rng(seed)
    hazard = np.exp(rng.normal(-3.0, 0.8, n))
    fracture = rng.exponential(1 / hazard)
    censor = rng.uniform(2.0, 12.0, n)
    death = rng.exponential(1 / death_rate, n) if death_rate > 0 else np.full(n, np.inf)
    time = np.minimum.reduce([fracture, censor, death])
    event = np.select([fracture == time, death == time], [1, 2], 0)
    return time, event, hazard


@pytest.fixture(scope="module")
def cohort():
    return _simulate()


@pytest.fixture(scope="module")
def true_result(cohort):
    time, event, hazard = cohort
    return calibration(time, event, 1 - np.exp(-hazard * HORIZON), HORIZON)


# --------------------------------------------------------------------- known truth
def test_true_risk_is_calibrated(true_result):
    res = true_result
    assert res.observed_expected == pytest.approx(1.0, abs=0.05)
    assert res.slope == pytest.approx(1.0, abs=0.1)
    assert res.intercept == pytest.approx(0.0, abs=0.1)
    assert res.ici < 0.02
    assert res.e50 <= res.e90 <= res.emax
    assert res.ici <= res.emax
    assert res.competing is False


def test_doubled_risk_is_flagged(cohort):
    time, event, hazard = cohort
    doubled = np.clip(2 * (1 - np.exp(-hazard * HORIZON)), 0, 1)
    res = calibration(time, event, doubled, HORIZON)
    assert 0.4 < res.observed_expected < 0.6
    assert res.ici > 0.1
    assert res.intercept < -np.log(2) + 0.1  # near -log 2, lower where clipping bites
    # every group over-predicts
    assert np.all(res.table["predicted"] > res.table["observed"])


def test_overfitted_risk_has_small_slope(cohort):
    time, event, hazard = cohort
    x = np.log(hazard * HORIZON)  # cloglog of the true risk
    stretched = x.mean() + 2 * (x - x.mean())
    res = calibration(time, event, 1 - np.exp(-np.exp(stretched)), HORIZON)
    assert res.slope < 0.7
    assert res.slope == pytest.approx(0.5, abs=0.1)


def test_overall_observed_and_expected(cohort, true_result):
    time, event, hazard = cohort
    risk = 1 - np.exp(-hazard * HORIZON)
    assert true_result.observed == pytest.approx(observed_risk(time, event, HORIZON), abs=1e-15)
    assert true_result.expected == pytest.approx(risk.mean(), rel=1e-12)
    assert true_result.observed_expected == pytest.approx(
        true_result.observed / true_result.expected, rel=1e-12
    )
    assert true_result.horizon == HORIZON


def _groups_from_sizes(risk, table):
    """Members of each table row: consecutive blocks of the patients sorted by risk."""
    order = np.argsort(risk, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(table["n"].to_numpy())])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_table_structure(cohort, true_result):
    time, event, hazard = cohort
    risk = 1 - np.exp(-hazard * HORIZON)
    table = true_result.table
    assert len(table) == 10
    assert table["n"].sum() == len(time)
    assert table["n"].between(len(time) // 10 - 1, len(time) // 10 + 1).all()
    assert table["group"].tolist() == list(range(1, 11))
    assert np.all(np.diff(table["predicted"]) > 0)
    for row, members in zip(table.itertuples(), _groups_from_sizes(risk, table), strict=True):
        p = risk[members]
        assert p.min() <= row.predicted <= p.max()
        assert row.predicted == pytest.approx(p.mean(), rel=1e-12)
        _, km = kaplan_meier(time[members], event[members], times=[HORIZON])
        assert row.observed == pytest.approx(1 - km[0], abs=1e-12)
        assert row.events == int(np.sum((event[members] == 1) & (time[members] <= HORIZON)))
        assert row.observed_lower <= row.observed <= row.observed_upper


@pytest.mark.parametrize("groups", [pytest.param(4, id="4"), pytest.param(7, id="7")])
def test_table_has_requested_groups(cohort, groups):
    time, event, hazard = cohort
    res = calibration(
        time[:3000], event[:3000], 1 - np.exp(-hazard[:3000] * HORIZON), HORIZON, groups=groups
    )
    assert len(res.table) == groups
    assert res.table["n"].sum() == 3000


def test_greenwood_interval_hand_computed():
    # groups=1: KM at 5 over all six. t=1: 5/6; t=3: 5/6 * 3/4; t=5: 5/6 * 3/4 * 1/2 = 0.3125.
    # Greenwood: var = S^2 (1/(6*5) + 1/(4*3) + 1/(2*1)).
    time = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    event = [1, 0, 1, 0, 1, 0]
    risk = [0.5, 0.2, 0.3, 0.6, 0.4, 0.1]
    res = calibration(time, event, risk, 5.0, groups=1)
    surv = 5 / 6 * 3 / 4 * 1 / 2
    se = surv * np.sqrt(1 / 30 + 1 / 12 + 1 / 2)
    row = res.table.iloc[0]
    assert row["n"] == 6 and row["events"] == 3
    assert row["observed"] == pytest.approx(1 - surv, abs=1e-15)
    assert row["observed_lower"] == pytest.approx(1 - surv - 1.96 * se, abs=1e-12)
    assert row["observed_upper"] == 1.0  # clipped
    assert row["predicted"] == pytest.approx(np.mean(risk), abs=1e-15)


def test_small_sample_smoothing_is_finite_or_warned():
    # risks order the three events (1, 3, 5) so that the spline term separates them: the
    # Cox coefficients diverge and the smoothed curve becomes NaN
    time = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    event = [1, 0, 1, 0, 1, 0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = calibration(time, event, [0.2, 0.5, 0.3, 0.6, 0.4, 0.1], 5.0, groups=1)
    warned = any(issubclass(w.category, DataWarning) for w in caught)
    assert warned or (np.isfinite(res.ici) and np.isfinite(res.curve["observed"]).all())


def test_curve_sorted_by_predicted(cohort, true_result):
    _, _, hazard = cohort
    curve = true_result.curve
    assert list(curve.columns) == ["predicted", "observed"]
    assert len(curve) == len(hazard)
    assert np.all(np.diff(curve["predicted"]) >= 0)
    np.testing.assert_array_equal(curve["predicted"], np.sort(1 - np.exp(-hazard * HORIZON)))
    assert curve["observed"].between(0, 1).all()


def test_plot_returns_axes(true_result):
    ax = true_result.plot(label="true")
    try:
        assert isinstance(ax, matplotlib.axes.Axes)
        assert ax.get_legend().get_texts()[0].get_text().startswith("true (ICI")
        fig, given = plt.subplots()
        assert true_result.plot(given) is given
        plt.close(fig)
    finally:
        plt.close(ax.figure)


# --------------------------------------------------------------------- competing risks
@pytest.fixture(scope="module")
def competing_cohort():
    return _simulate(n=6000, seed=3, death_rate=0.05)


def test_competing_table_uses_aalen_johansen(competing_cohort):
    time, event, hazard = competing_cohort
    assert np.any(event == 2)
    risk = 1 - np.exp(-hazard * HORIZON)
    res = calibration(time, event, risk, HORIZON, groups=5)
    assert res.competing is True
    aj = aalen_johansen(time, event, times=[HORIZON])[0]
    assert res.observed == pytest.approx(aj, abs=1e-15)
    assert res.observed == pytest.approx(observed_risk(time, event, HORIZON), abs=1e-15)
    _, km = kaplan_meier(time, event, times=[HORIZON])
    assert res.observed < 1 - km[0] - 0.005  # AJ, not the cause-specific 1 - KM
    assert len(res.table) == 5 and res.table["n"].sum() == len(time)
    for row, members in zip(
        res.table.itertuples(), _groups_from_sizes(risk, res.table), strict=True
    ):
        expected = aalen_johansen(time[members], event[members], times=[HORIZON])[0]
        assert row.observed == pytest.approx(expected, abs=1e-12)
        interval = aalen_johansen_interval(time[members], event[members], HORIZON)
        assert (row.observed_lower, row.observed_upper) == pytest.approx(interval[1:])
        assert row.observed_lower < row.observed < row.observed_upper
    ax = res.plot()
    plt.close(ax.figure)


# --------------------------------------------------------------------- D-calibration
GRID = np.linspace(0.05, 12.0, 120)


def test_d_calibration_true_curves(cohort):
    time, event, hazard = cohort
    res = d_calibration(time, event, np.exp(-hazard[:, None] * GRID), GRID)
    assert res.p_value > 0.05
    assert res.bins == 10
    assert res.counts.sum() == pytest.approx(len(time), rel=1e-12)
    assert res.p_value == pytest.approx(stats.chi2.sf(res.statistic, 9), rel=1e-12)


def test_d_calibration_doubled_hazard(cohort):
    time, event, hazard = cohort
    res = d_calibration(time, event, np.exp(-2 * hazard[:, None] * GRID), GRID)
    assert res.p_value < 1e-6
    assert res.counts.sum() == pytest.approx(len(time), rel=1e-12)


@pytest.mark.parametrize(
    "time, event, surv, counts",
    [
        # bins [0,.25) [.25,.5) [.5,.75) [.75,1]; grid 1, 2, 3
        # A event at 1.5: S = 0.9 -> bin 3.  B event at 2.5: S = 0.45 -> bin 1.
        # C censored at 2.0: s = 0.8 -> bins 0-2 get .25/.8 = .3125, bin 3 (.8-.75)/.8 = .0625
        # D censored at 0.5, before the grid: s = 1 -> .25 in each bin
        pytest.param(
            [1.5, 2.5, 2.0, 0.5],
            [1, 1, 0, 0],
            [[0.9, 0.6, 0.3], [0.8, 0.45, 0.2], [0.9, 0.8, 0.7], [0.9, 0.8, 0.7]],
            [0.5625, 1.5625, 0.5625, 1.3125],
            id="events-and-censored",
        ),
        # A competing death at 3.0 (on the grid: S = 0.5, an edge) is censoring: bins 0-1 get
        # .25/.5 = .5 each. B event at 3.5: S(3) = 0.1 -> bin 0. C event before the grid -> S = 1,
        # top bin. D censored at 1.0 with s = 0.3: bin 0 .25/.3, bin 1 (.3-.25)/.3
        pytest.param(
            [3.0, 3.5, 0.2, 1.0],
            [2, 1, 1, 0],
            [[0.9, 0.7, 0.5], [0.6, 0.3, 0.1], [0.9, 0.8, 0.7], [0.3, 0.2, 0.1]],
            [0.5 + 1 + 0.25 / 0.3, 0.5 + 0.05 / 0.3, 0.0, 1.0],
            id="competing-edge-and-before-grid",
        ),
        # censored with s = 0: all mass in the lowest bin; event with S = 0 -> bin 0
        pytest.param(
            [2.0, 3.0, 1.0],
            [0, 1, 1],
            [[0.5, 0.0, 0.0], [0.2, 0.1, 0.0], [0.6, 0.4, 0.2]],
            [2.0, 0.0, 1.0, 0.0],
            id="zero-survival",
        ),
    ],
)
def test_d_calibration_hand_computed(time, event, surv, counts):
    res = d_calibration(time, event, surv, [1.0, 2.0, 3.0], bins=4)
    np.testing.assert_allclose(res.counts, counts, rtol=0, atol=1e-14)
    expected = len(time) / 4
    statistic = sum((c - expected) ** 2 / expected for c in counts)
    assert res.statistic == pytest.approx(statistic, rel=1e-12)
    assert res.p_value == pytest.approx(stats.chi2.sf(statistic, 3), rel=1e-12)


# --------------------------------------------------------------------- bad input
TIME = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
EVENT = np.array([1, 0, 1, 0, 1, 0])
RISK = np.array([0.2, 0.5, 0.3, 0.6, 0.4, 0.1])


@pytest.mark.parametrize(
    "time, event, risk, horizon, kwargs, match",
    [
        pytest.param(
            TIME, EVENT, RISK + 0.5, 5.0, {}, r"probabilities in \[0, 1\]", id="risk-above-1"
        ),
        pytest.param(
            TIME, EVENT, RISK - 0.15, 5.0, {}, r"probabilities in \[0, 1\]", id="risk-below-0"
        ),
        pytest.param(TIME, EVENT, RISK, 7.0, {}, "beyond the last follow-up", id="beyond"),
        pytest.param(TIME, EVENT, RISK, 0.0, {}, "positive number of years", id="horizon-0"),
        pytest.param(
            TIME, EVENT, RISK, -2.0, {}, "positive number of years", id="horizon-negative"
        ),
        pytest.param(
            TIME, EVENT, RISK, float("nan"), {}, "positive number of years", id="horizon-nan"
        ),
        pytest.param(TIME, EVENT, RISK, 0.5, {}, "no event by the horizon", id="no-event"),
        pytest.param(
            TIME, [0, 0, 0, 0, 0, 0], RISK, 5.0, {}, "no event by the horizon", id="all-censored"
        ),
        pytest.param(TIME, EVENT, RISK[:5], 5.0, {}, "must have the same length", id="lengths"),
        pytest.param(
            TIME,
            EVENT,
            np.where(RISK == 0.5, np.nan, RISK),
            5.0,
            {},
            "'risk' contains NaN",
            id="nan-risk",
        ),
        pytest.param(TIME, EVENT, RISK, 5.0, {"groups": 0}, "groups must be >= 1", id="groups-0"),
    ],
)
def test_calibration_bad_input(time, event, risk, horizon, kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibration(time, event, risk, horizon, **kwargs)


SURV = np.array([[0.9, 0.6, 0.3], [0.8, 0.45, 0.2], [0.9, 0.8, 0.7], [0.9, 0.8, 0.7]])


@pytest.mark.parametrize(
    "surv, times, kwargs, match",
    [
        pytest.param(SURV, [1.0, 2.0, 3.0], {"bins": 1}, "bins must be >= 2", id="bins-1"),
        pytest.param(
            SURV[:3],
            [1.0, 2.0, 3.0],
            {},
            r"must have shape \(4, 3\), got \(3, 3\)",
            id="too-few-rows",
        ),
        pytest.param(SURV.T, [1.0, 2.0, 3.0], {}, r"must have shape \(4, 3\)", id="transposed"),
        pytest.param(SURV[:, 0], [1.0, 2.0, 3.0], {}, r"must have shape", id="1d"),
        pytest.param(SURV, [1.0, 2.0], {}, r"must have shape \(4, 2\)", id="grid-mismatch"),
        pytest.param(
            SURV + 0.2, [1.0, 2.0, 3.0], {}, r"survival probabilities in \[0, 1\]", id="above-1"
        ),
        pytest.param(
            np.where(SURV == 0.2, np.nan, SURV),
            [1.0, 2.0, 3.0],
            {},
            r"finite survival probabilities",
            id="nan",
        ),
        pytest.param(SURV, [1.0, 3.0, 2.0], {}, "strictly increasing", id="grid-unsorted"),
    ],
)
def test_d_calibration_bad_input(surv, times, kwargs, match):
    with pytest.raises(ValueError, match=match):
        d_calibration([1.5, 2.5, 2.0, 0.5], [1, 1, 0, 0], surv, times, **kwargs)


def test_d_calibration_mismatched_lengths():
    with pytest.raises(ValueError, match=r"'time' \(4\) and 'event' \(3\)"):
        d_calibration([1.5, 2.5, 2.0, 0.5], [1, 1, 0], SURV, [1.0, 2.0, 3.0])


def test_table_is_dataframe(true_result):
    assert isinstance(true_result.table, pd.DataFrame)
    assert {"n", "events", "predicted", "observed", "observed_lower", "observed_upper"} <= set(
        true_result.table.columns
    )


def test_calibration_of_one_patient_is_an_error_not_a_nan_slope():
    with pytest.raises(ValueError, match="at least 2 patients"):
        calibration([1.0], [1], [0.2], 2.0)
