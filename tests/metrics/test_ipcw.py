"""CensoringSurvival (reverse Kaplan-Meier) against scikit-survival's estimator."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from fracrisk.metrics._ipcw import CensoringSurvival

# times 1 (event, censored), 2 (2 events, censored), 3 (censored), 4 (event), 5 (censored)
TIME = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 5.0])
CENSORED = np.array([False, True, False, False, True, True, False, True])


def _sksurv_g(time, censored, query):
    # scikit-survival 0.28: CensoringDistributionEstimator().fit(y).predict_proba(times)
    y = Surv.from_arrays(~censored, time)
    return CensoringDistributionEstimator().fit(y).predict_proba(np.asarray(query, float))


def test_hand_computed_with_ties_between_events_and_censorings():
    # at a tied time events leave first: the censoring at 1 has 8 - 1 = 7 at risk,
    # the one at 2 has 6 - 2 = 4, the one at 3 has 3, the one at 5 has 1
    g = CensoringSurvival(TIME, CENSORED)
    expected = np.cumprod([1 - 1 / 7, 1 - 1 / 4, 1 - 1 / 3, 1.0, 0.0])
    np.testing.assert_allclose(g([1.0, 2.0, 3.0, 4.0, 5.0]), expected, rtol=0, atol=1e-15)
    assert g(0.5) == 1.0  # before the first time
    assert g(1.5) == pytest.approx(expected[0], abs=1e-15)  # right-continuous steps
    assert g(6.0) == 0.0  # beyond the last follow-up, known only because G reached 0


@pytest.mark.parametrize(
    "time, censored",
    [
        pytest.param(TIME, CENSORED, id="ties-events-censorings"),
        pytest.param(TIME, CENSORED & (TIME < 5), id="last-is-event"),
        pytest.param(TIME, np.zeros(len(TIME), bool), id="no-censoring"),
        pytest.param(TIME / 365.25, CENSORED, id="years"),
    ],
)
def test_matches_scikit_survival(time, censored):
    query = np.unique(np.concatenate([[0.0], time, time[:-1] + 0.5 / 365.25, [time.max()]]))
    np.testing.assert_allclose(
        CensoringSurvival(time, censored)(query),
        _sksurv_g(time, censored, query),
        rtol=0,
        atol=1e-15,
    )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_scikit_survival_with_heavy_ties(data):
    n = data.draw(st.integers(1, 150), label="n")
    ints = functools.partial(st.lists, min_size=n, max_size=n)
    time = np.array(data.draw(ints(st.integers(1, 6)), label="time"), float)
    censored = np.array(data.draw(ints(st.booleans()), label="censored"))
    assume(not censored.all())  # sksurv cannot fit without an event (see the test below)
    query = np.arange(0.0, time.max() + 0.25, 0.25)  # every time, between times, before
    g = CensoringSurvival(time, censored)
    values = g(query)
    np.testing.assert_allclose(values, _sksurv_g(time, censored, query), rtol=0, atol=1e-14)
    assert np.all(np.diff(values) <= 0) and np.all((values >= 0) & (values <= 1))
    if values[-1] > 0:  # beyond the last follow-up G is unknown: both raise
        with pytest.raises(ValueError, match="smaller than largest observed time"):
            _sksurv_g(time, censored, [time.max() + 1])
        with pytest.raises(ValueError, match="beyond the censoring data's last follow-up"):
            g(time.max() + 1)
    else:
        assert g(time.max() + 1) == 0.0 == _sksurv_g(time, censored, [time.max() + 1])[0]


def test_all_censored_is_kaplan_meier_of_the_censorings():
    # scikit-survival 0.28 raises "all samples are censored"; here every time is a censoring
    g = CensoringSurvival(np.array([1.0, 2.0, 2.0, 4.0]), np.ones(4, bool))
    np.testing.assert_allclose(
        g([0.0, 1.0, 2.0, 3.0, 4.0]), [1.0, 0.75, 0.25, 0.25, 0.0], rtol=0, atol=1e-15
    )


def test_inverse_weights():
    g = CensoringSurvival(TIME, CENSORED)
    t = np.array([1.0, 2.0, 4.0, 3.0])
    where = np.array([True, True, True, False])
    weights = g.inverse_weights(t, where)
    np.testing.assert_allclose(weights, [1 / g(1.0), 1 / g(2.0), 1 / g(4.0), 0.0], rtol=1e-15)
    np.testing.assert_array_equal(g.inverse_weights(t, np.zeros(4, bool)), 0.0)


@pytest.mark.parametrize(
    "t, name, match",
    [
        pytest.param([2.0, 5.0], "time", "censoring survival G is 0 at time 5 years", id="at-5"),
        pytest.param(
            [7.5, 6.25], "event time", "G is 0 at event time 6.25 years", id="beyond-reports-first"
        ),
    ],
)
def test_inverse_weights_raise_where_g_is_zero(t, name, match):
    g = CensoringSurvival(TIME, CENSORED)  # G = 0 from 5 on
    with pytest.raises(ValueError, match=match):
        g.inverse_weights(np.array(t), np.ones(len(t), bool), name=name)
    # a zero G is harmless where no weight is needed
    assert g.inverse_weights(np.array(t), np.zeros(len(t), bool)).sum() == 0.0


def test_times_beyond_the_last_follow_up_raise():
    g = CensoringSurvival(TIME, CENSORED & (TIME < 5))  # last patient has the event: G > 0
    assert g(5.0) > 0
    with pytest.raises(ValueError, match=r"time 5.5 is beyond .* last follow-up \(5 years\)"):
        g([1.0, 5.5])
    with pytest.raises(ValueError, match="time 6 is beyond"):
        g.inverse_weights(np.array([6.0]), np.array([True]))
