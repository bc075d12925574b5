"""cumulative_dynamic_auc against scikit-survival, on real and heavily tied data."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from hypothesis import event as note_branch
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.metrics import cumulative_dynamic_auc as sksurv_auc
from sksurv.util import Surv

from fracrisk.metrics import NoComparablePairsError, cumulative_dynamic_auc
from tests.metrics.conftest import PEER_DATASETS, peer_split

QUANTILES = np.linspace(0.1, 0.8, 8)


def _min_gap(risk: np.ndarray) -> float:
    """Smallest nonzero difference between two scores of one column."""
    columns = risk.reshape(len(risk), -1).T
    return min(np.diff(np.unique(column)).min() for column in columns)


@pytest.mark.parametrize("name", PEER_DATASETS)
@pytest.mark.parametrize("kind", ["1d-log-hazard", "2d-one-minus-survival"])
def test_matches_scikit_survival_on_sksurv_datasets(name, kind):
    split = peer_split(name)
    times = split.event_time_quantiles(QUANTILES)
    if kind == "1d-log-hazard":
        risk = split.risk
    else:
        risk = 1.0 - split.model.predict_survival(split.test, times).to_numpy()
    # sksurv merges scores within 1e-8 (fracrisk: exact equality, a documented difference).
    # On flchain, 1 - S(t) at early t has distinct scores closer than that; compare with
    # tied_tol=0 there, which is exact equality too.
    tied_tol = 1e-8 if _min_gap(risk) > 1e-8 else 0.0
    assert name == "flchain" or tied_tol == 1e-8
    auc, mean_auc = cumulative_dynamic_auc(
        split.test["time"],
        split.test["event"],
        risk,
        times,
        train_time=split.train["time"],
        train_event=split.train["event"],
    )
    # scikit-survival 0.28: cumulative_dynamic_auc(survival_train, survival_test, estimate,
    # times, tied_tol) -> (auc, mean_auc)
    expected, expected_mean = sksurv_auc(
        split.y_train, split.y_test, risk, times, tied_tol=tied_tol
    )
    assert auc.shape == times.shape
    np.testing.assert_allclose(auc, expected, rtol=0, atol=1e-9)
    assert mean_auc == pytest.approx(expected_mean, abs=1e-9)


def _draw_case(data):
    n = data.draw(st.integers(2, 150), label="n")
    ints = functools.partial(st.lists, min_size=n, max_size=n)
    time = np.array(data.draw(ints(st.integers(1, 6)), label="time"), float)
    # code 2 (competing death) is neither a case nor, after it, a control: sksurv's censoring
    event = np.array(data.draw(ints(st.integers(0, 2)), label="event"))
    candidates = [t for t in np.arange(1.0, 6.0, 0.5) if time.min() <= t < time.max()]
    if not candidates:
        return None
    times = np.array(
        sorted(
            data.draw(
                st.sets(st.sampled_from(candidates), min_size=1, max_size=len(candidates)),
                label="times",
            )
        )
    )
    if data.draw(st.booleans(), label="time-varying risk"):
        shape = (n, len(times))
        risk = np.array(
            data.draw(
                ints(st.lists(st.integers(0, 4), min_size=shape[1], max_size=shape[1])),
                label="risk",
            ),
            float,
        )
    else:
        risk = np.array(data.draw(ints(st.integers(0, 4)), label="risk"), float)
    return time, event, risk, times


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_scikit_survival_with_heavy_ties(data):
    case = _draw_case(data)
    if case is None:  # every patient has the same time: no time inside follow-up
        note_branch("no valid times")
        return
    time, event, risk, times = case
    y = Surv.from_arrays(event == 1, time)
    # sksurv computes 1 / G(T_i) for every test event and raises if G(T_i) = 0, also for
    # events after the last requested time, which never enter the AUC (they are controls
    # only, unweighted) nor the mean (Kaplan-Meier at times <= the last one). Censoring them
    # for sksurv's test set changes neither and avoids that spurious error.
    y_test = Surv.from_arrays((event == 1) & (time <= times[-1]), time)
    with warnings.catch_warnings():  # sksurv divides 0/0 when a time has no case
        warnings.simplefilter("ignore", RuntimeWarning)
        # scikit-survival 0.28: cumulative_dynamic_auc(survival_train, survival_test, estimate,
        # times) with train = the data evaluated
        try:
            expected, expected_mean = sksurv_auc(y, y_test, risk, times)
        except ValueError as err:  # no event at all up to the last time
            assert "all samples are censored" in str(err)
            expected = np.array([np.nan])
    if np.isnan(expected).any():
        note_branch("sksurv nan or raised: a time without cases")
        with pytest.raises(NoComparablePairsError, match="no event at or before"):
            cumulative_dynamic_auc(time, event, risk, times)
        return
    note_branch("compared")
    auc, mean_auc = cumulative_dynamic_auc(time, event, risk, times)
    np.testing.assert_allclose(auc, expected, rtol=0, atol=1e-12)
    assert mean_auc == pytest.approx(expected_mean, abs=1e-12)
    # invariants: in [0, 1]; the mean is a weighted average; reversing the score reflects
    # every pair (ties count one half either way); a fixed score equals its 2-D broadcast
    assert np.all((auc >= 0) & (auc <= 1))
    assert auc.min() - 1e-12 <= mean_auc <= auc.max() + 1e-12
    reversed_auc, _ = cumulative_dynamic_auc(time, event, -risk, times)
    np.testing.assert_allclose(auc + reversed_auc, 1.0, rtol=0, atol=1e-12)
    if risk.ndim == 1:
        tiled, tiled_mean = cumulative_dynamic_auc(
            time, event, np.tile(risk[:, None], (1, len(times))), times
        )
        np.testing.assert_allclose(tiled, auc, rtol=0, atol=1e-12)
        assert tiled_mean == pytest.approx(mean_auc, abs=1e-12)


def test_auc_stays_in_unit_interval_with_inexact_weights():
    # at t = 1: G(1) = 1 - 2/3 = 1/3, cases 1 and 4 (weight 1/G = 3, inexact), one control (3)
    # with a lower score: AUC(1) = 1 exactly (scikit-survival 0.28 returns 1.0)
    time, event = [1.0, 1.0, 1.0, 3.0, 1.0], [0, 1, 0, 1, 1]
    auc, _ = cumulative_dynamic_auc(time, event, [0.0, 0.0, 0.0, -1.0, 0.0], [1.0])
    assert 0.0 <= auc[0] <= 1.0  # fails: 1.0000000000000002


def test_near_tie_in_risk_is_not_a_tie():
    # at t = 1.5: case 0, controls 1, 2, 3; patient 1's score is 5e-10 below patient 0's
    time, event = [1.0, 2.0, 3.0, 4.0], [1, 0, 0, 0]
    risk = np.array([3.0, 3.0 - 5e-10, 1.0, 0.0])
    auc, _ = cumulative_dynamic_auc(time, event, risk, [1.5])
    y = Surv.from_arrays(np.array(event) == 1, time)
    # scikit-survival 0.28: cumulative_dynamic_auc(y, y, estimate, times), tied_tol=1e-8
    sksurv, _ = sksurv_auc(y, y, risk, [1.5])
    assert auc[0] == 1.0
    assert sksurv[0] == pytest.approx(2.5 / 3, abs=1e-15)  # the near tie gets half credit
    assert auc[0] - sksurv[0] == pytest.approx(0.5 / 3, abs=1e-15)
    exact, _ = sksurv_auc(y, y, risk, [1.5], tied_tol=0.0)
    assert auc[0] == pytest.approx(exact[0], abs=1e-15)


def test_hand_computed_with_weights_and_competing_event():
    # times 1 (event), 2 (censored), 3 (event), 4 (competing), 5 (censored), 6 (event):
    # reverse Kaplan-Meier G(1) = 1, G(2) = G(3) = 1 - 1/5 = 0.8
    time = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    event = [1, 0, 1, 2, 0, 1]
    risk = [5.0, 1.0, 2.0, 3.0, 4.0, 0.0]
    auc, mean_auc = cumulative_dynamic_auc(time, event, risk, [3.5])
    # cases 0 (w=1) and 2 (w=1/0.8); controls 3, 4, 5 (scores 3, 4, 0)
    # case 0 (score 5) beats all 3; case 2 (score 2) beats only patient 5
    expected = (1.0 * 3 + 1.25 * 1) / ((1.0 + 1.25) * 3)
    assert auc[0] == pytest.approx(expected, abs=1e-15)
    assert mean_auc == auc[0]


BAD_AUC = [
    pytest.param(
        dict(times=[4.0]),
        ValueError,
        r"within the follow-up.*\[1, 4\)",
        id="time-at-last-follow-up",
    ),
    pytest.param(dict(times=[0.5]), ValueError, "within the follow-up", id="time-before-first"),
    pytest.param(dict(times=[3.0, 2.0]), ValueError, "strictly increasing", id="unsorted-times"),
    pytest.param(dict(times=[2.0, 2.0]), ValueError, "strictly increasing", id="repeated-times"),
    pytest.param(dict(times=[]), ValueError, "non-empty", id="no-times"),
    pytest.param(
        dict(risk=np.ones((4, 3))),
        ValueError,
        "'risk' has 3 columns but 'times' has 2",
        id="risk-columns",
    ),
    pytest.param(dict(risk=np.ones((3, 2))), ValueError, "same length", id="risk-rows"),
    pytest.param(
        dict(risk=[1.0, np.nan, 2.0, 3.0]), ValueError, "'risk' contains NaN", id="nan-risk"
    ),
    pytest.param(
        dict(risk=[[1.0, 1.0], [np.nan, 1.0], [2.0, 1.0], [3.0, 1.0]]),
        ValueError,
        "'risk' contains NaN",
        id="nan-risk-2d",
    ),
    pytest.param(dict(risk=[1.0, 2.0, 3.0]), ValueError, "same length", id="length"),
    pytest.param(dict(event=[1, 0, 1]), ValueError, "same length", id="event-length"),
    pytest.param(
        dict(event=[0, 0, 2, 0]),
        NoComparablePairsError,
        "no event at or before t = 1.5",
        id="all-censored",
    ),
    pytest.param(
        dict(event=[0, 0, 1, 0], times=[2.5, 3.5]),
        NoComparablePairsError,
        "no event at or before t = 2.5",
        id="no-case-at-first-time",
    ),
    # train censored at 1.8 last: G = 0 from 1.8 on, and the case at 2 needs 1 / G(2)
    pytest.param(
        dict(train_time=[1.0, 1.8], train_event=[1, 0]),
        ValueError,
        "censoring survival G is 0 at event time 2 years",
        id="G-zero",
    ),
    pytest.param(
        dict(train_time=[1.0, 1.8], train_event=[0, 1]),
        ValueError,
        "beyond the censoring data's last follow-up",
        id="beyond-train",
    ),
]


@pytest.mark.parametrize("override, error, match", BAD_AUC)
def test_bad_input(override, error, match):
    kwargs = dict(
        time=[1.0, 2.0, 3.0, 4.0], event=[1, 1, 0, 0], risk=[4.0, 3.0, 2.0, 1.0], times=[1.5, 2.5]
    )
    kwargs.update(override)
    with pytest.raises(error, match=match):
        cumulative_dynamic_auc(**kwargs)


# ---------------------------------------------------------------- competing risks (Blanche)
def test_competing_auc_by_hand_without_censoring():
    from fracrisk.metrics import competing_risks_auc

    # at t = 2: cases {0 (r=.9), 1 (r=.3)}; competing death {2 (r=.8)}; event-free {3 (.5), 4 (.1)}
    time = np.array([1.0, 2.0, 1.5, 5.0, 6.0])
    event = np.array([1, 1, 2, 0, 0])
    risk = np.array([0.9, 0.3, 0.8, 0.5, 0.1])
    auc1 = competing_risks_auc(time, event, risk, [2.0], definition=1)
    auc2 = competing_risks_auc(time, event, risk, [2.0], definition=2)
    # definition 1: pairs (0,3) (0,4) (1,3) (1,4): 1 + 1 + 0 + 1 of 4
    assert auc1[0] == pytest.approx(3 / 4)
    # definition 2 adds control 2: (0,2) concordant, (1,2) not: 4 of 6
    assert auc2[0] == pytest.approx(4 / 6)


def test_competing_auc_without_competing_events_is_the_cumulative_dynamic_auc():
    from fracrisk.metrics import competing_risks_auc

    rng = np.random.default_rng(3)
    n = 400
    risk = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-risk))
    t_cens = rng.exponential(1.5, size=n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(int)
    times = np.quantile(time, [0.2, 0.5, 0.7])
    expected, _ = cumulative_dynamic_auc(time, event, risk, times)
    for definition in (1, 2):
        got = competing_risks_auc(time, event, risk, times, definition=definition)
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_competing_auc_weights_censoring_by_ipcw():
    """With independent censoring the IPCW estimate stays near the uncensored truth."""
    from fracrisk.metrics import competing_risks_auc

    rng = np.random.default_rng(5)
    n = 20000
    risk = rng.normal(size=n)
    t1 = rng.exponential(np.exp(-risk))
    t2 = rng.exponential(1.0, size=n)
    t = np.minimum(t1, t2)
    cause = np.where(t1 <= t2, 1, 2)
    full = competing_risks_auc(t, cause, risk, [0.5])[0]
    c = rng.exponential(2.0, size=n)
    censored = competing_risks_auc(np.minimum(t, c), np.where(t <= c, cause, 0), risk, [0.5])[0]
    assert abs(censored - full) < 0.015
    with pytest.raises(ValueError, match="definition"):
        competing_risks_auc(t, cause, risk, [0.5], definition=3)
