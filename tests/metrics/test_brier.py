"""brier_score and integrated_brier_score against scikit-survival, on real and tied data."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from hypothesis import event as note_branch
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.metrics import brier_score as sksurv_brier
from sksurv.metrics import integrated_brier_score as sksurv_ibs
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from fracrisk.metrics import brier_score, integrated_brier_score
from tests.metrics.conftest import PEER_DATASETS, peer_split


@pytest.mark.parametrize("name", PEER_DATASETS)
def test_matches_scikit_survival_on_sksurv_datasets(name):
    split = peer_split(name)
    times = split.event_time_quantiles(np.linspace(0.1, 0.8, 8))
    surv = split.model.predict_survival(split.test, times).to_numpy()
    outcome = dict(
        time=split.test["time"],
        event=split.test["event"],
        surv=surv,
        times=times,
        train_time=split.train["time"],
        train_event=split.train["event"],
    )
    ours = brier_score(**outcome)
    ours_ibs = integrated_brier_score(**outcome)
    # scikit-survival 0.28: brier_score(survival_train, survival_test, estimate, times)
    # -> (times, scores); integrated_brier_score(...) -> float (trapezoid rule / range)
    sk_times, expected = sksurv_brier(split.y_train, split.y_test, surv, times)
    expected_ibs = sksurv_ibs(split.y_train, split.y_test, surv, times)
    np.testing.assert_array_equal(sk_times, times)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)
    assert ours_ibs == pytest.approx(expected_ibs, abs=1e-9)


def _draw_outcome(data, *, label: str, max_n: int = 150):
    n = data.draw(st.integers(2, max_n), label=f"{label} n")
    ints = functools.partial(st.lists, min_size=n, max_size=n)
    time = np.array(data.draw(ints(st.integers(1, 6)), label=f"{label} time"), float)
    # code 2 (competing death) counts as censoring: sksurv is given event == 1
    event = np.array(data.draw(ints(st.integers(0, 2)), label=f"{label} event"))
    return time, event


def _draw_times_and_surv(data, time):
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
    quarters = st.lists(st.integers(0, 4), min_size=len(times), max_size=len(times))
    surv = (
        np.array(
            data.draw(
                st.lists(quarters, min_size=len(time), max_size=len(time)), label="surv (quarters)"
            )
        )
        / 4
    )
    return times, surv


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_scikit_survival_with_heavy_ties(data):
    time, event = _draw_outcome(data, label="test")
    drawn = _draw_times_and_surv(data, time)
    if drawn is None:  # every patient has the same time: no time inside follow-up
        return
    times, surv = drawn
    y = Surv.from_arrays(event == 1, time)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            # scikit-survival 0.28: brier_score(survival_train, survival_test, estimate, times)
            # with train = the data evaluated
            _, expected = sksurv_brier(y, y, surv, times)
        except ValueError as err:  # sksurv needs an event to estimate G: fracrisk does not
            assert "all samples are censored" in str(err)
            note_branch("sksurv raised: all censored")
            return
    note_branch("compared")
    np.testing.assert_allclose(brier_score(time, event, surv, times), expected, rtol=0, atol=1e-12)
    if len(times) > 1:
        # scikit-survival 0.28: integrated_brier_score(train, test, estimate, times)
        expected_ibs = sksurv_ibs(y, y, surv, times)
        assert integrated_brier_score(time, event, surv, times) == pytest.approx(
            expected_ibs, abs=1e-12
        )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_censoring_from_separate_train_data(data):
    time, event = _draw_outcome(data, label="test")
    train_time, train_event = _draw_outcome(data, label="train")
    # a censoring at the last train time makes G_train reach 0 there, so G is known at every
    # later time (it is 0) and sksurv does not raise: sksurv then silently gives weight 0
    # where fracrisk raises (scikit-survival issue #73)
    train_time = np.append(train_time, train_time.max())
    train_event = np.append(train_event, 0)
    drawn = _draw_times_and_surv(data, time)
    if drawn is None:
        return
    times, surv = drawn
    y_train = Surv.from_arrays(train_event == 1, train_time)
    y_test = Surv.from_arrays(event == 1, time)
    kwargs = dict(train_time=train_time, train_event=train_event)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            # scikit-survival 0.28: CensoringDistributionEstimator().fit(y).predict_proba(t);
            # G(T_i) >= G(t) for every case i at t, so G = 0 where needed iff at some t
            g_zero = CensoringDistributionEstimator().fit(y_train).predict_proba(times) == 0
            # scikit-survival 0.28: brier_score(survival_train, survival_test, estimate, times)
            _, expected = sksurv_brier(y_train, y_test, surv, times)
        except ValueError as err:  # sksurv needs an event in each of train and test
            assert "all samples are censored" in str(err)
            note_branch("sksurv raised: all censored")
            return
    if g_zero.any():
        note_branch("G = 0 at a requested time: fracrisk raises")
        with pytest.raises(ValueError, match="censoring survival G is 0 at time"):
            brier_score(time, event, surv, times, **kwargs)
        return
    note_branch("compared")
    ours = brier_score(time, event, surv, times, **kwargs)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_zero_censoring_survival_raises_where_scikit_survival_drops_patients():
    # train: events at 1 and 2, the last patient censored at 3, so G = 1 before 3 and 0 from 3
    train = dict(train_time=[1.0, 2.0, 3.0], train_event=[1, 1, 0])
    time, event = np.array([1.0, 2.5, 3.5, 5.0]), np.array([0, 1, 1, 0])
    times = np.array([2.0, 4.0])
    surv = np.array([[0.9, 0.8], [0.7, 0.6], [0.8, 0.5], [0.95, 0.9]])
    y_train = Surv.from_arrays(np.array(train["train_event"]) == 1, train["train_time"])
    y_test = Surv.from_arrays(event == 1, time)
    # scikit-survival 0.28: brier_score(survival_train, survival_test, estimate, times)
    _, sksurv = sksurv_brier(y_train, y_test, surv, times)
    # at 2: no case; controls 2.5, 3.5, 5 with 1/G(2) = 1
    assert sksurv[0] == pytest.approx((0.3**2 + 0.2**2 + 0.05**2) / 4, abs=1e-15)
    # at 4: the case at 2.5 (G = 1) counts; the case at 3.5 and the control at 5 would need
    # 1/G = 1/0, and sksurv silently gives them weight 0 (its issue #73)
    assert sksurv[1] == pytest.approx(0.6**2 / 4, abs=1e-15)
    with pytest.raises(ValueError, match="censoring survival G is 0 at time 4 years"):
        brier_score(time, event, surv, times, **train)
    with pytest.raises(ValueError, match="censoring survival G is 0"):
        integrated_brier_score(time, event, surv, times, **train)
    # before G reaches 0 the two agree
    ours = brier_score(time, event, surv[:, :1], times[:1], **train)
    assert ours[0] == pytest.approx(sksurv[0], abs=1e-15)


def test_hand_computed_all_censored():
    # defined without any event (controls only); sksurv raises "all samples are censored"
    # G from the data: G(1.5) = 1 - 1/3; controls at 2 and 3
    score = brier_score([1.0, 2.0, 3.0], [0, 0, 2], [0.9, 0.8, 0.7], [1.5])
    assert score[0] == pytest.approx((0.2**2 + 0.3**2) / (2 / 3) / 3, abs=1e-15)


def test_hand_computed_with_case_and_censoring_at_the_time():
    # at t = 2: case at 1 (G(1) = 1), patient censored at 2 contributes nothing (sksurv's
    # convention), control at 3 with 1/G(2) = 1/(1 - 1/2)
    score = brier_score([1.0, 2.0, 3.0], [1, 0, 1], [[0.6], [0.1], [0.7]], [2.0])
    assert score[0] == pytest.approx((0.6**2 + 0.3**2 * 2) / 3, abs=1e-15)


_OK = dict(
    time=[1.0, 2.0, 3.0, 4.0],
    event=[1, 0, 1, 0],
    times=[1.5, 2.5],
    surv=[[0.9, 0.8], [0.8, 0.7], [0.7, 0.6], [0.6, 0.5]],
)

BAD_BRIER = [
    pytest.param(
        dict(surv=np.ones((4, 3))),
        r"'surv' must have shape \(4, 2\), got \(4, 3\)",
        id="surv-columns",
    ),
    pytest.param(
        dict(surv=np.ones((3, 2))), r"'surv' must have shape \(4, 2\), got \(3, 2\)", id="surv-rows"
    ),
    pytest.param(
        dict(surv=np.ones(4)),
        r"'surv' must have shape \(4, 2\), got \(4,\)",
        id="surv-1d-for-two-times",
    ),
    pytest.param(dict(surv=np.full((4, 2), np.nan)), "'surv' contains NaN", id="nan-surv"),
    pytest.param(
        dict(surv=np.full((4, 2), 1.5)), r"survival probabilities in \[0, 1\]", id="surv-above-1"
    ),
    pytest.param(
        dict(surv=np.full((4, 2), -0.1)), r"survival probabilities in \[0, 1\]", id="surv-negative"
    ),
    pytest.param(dict(times=[2.5, 1.5]), "strictly increasing", id="unsorted-times"),
    pytest.param(
        dict(times=[1.5, 4.0]), r"within the follow-up.*\[1, 4\)", id="time-at-last-follow-up"
    ),
    pytest.param(dict(times=[0.5, 1.5]), "within the follow-up", id="time-before-first"),
    pytest.param(dict(event=[1, 0, 1]), "same length", id="event-length"),
    pytest.param(dict(event=[1, 0, 1, 3]), "'event' must hold 0", id="event-code"),
    pytest.param(
        dict(train_time=[1.0, 2.0], train_event=[1, 0]),
        "censoring survival G is 0 at time 2.5 years",
        id="G-zero",
    ),
    pytest.param(
        dict(train_time=[1.0, 2.0], train_event=[0, 1]),
        "time 2.5 is beyond the censoring data's last follow-up",
        id="beyond-train",
    ),
    pytest.param(
        dict(train_time=[1.0, 2.0]),
        "pass both train_time and train_event",
        id="train-event-missing",
    ),
]


@pytest.mark.parametrize(
    "metric", [brier_score, integrated_brier_score], ids=["brier", "integrated"]
)
@pytest.mark.parametrize("override, match", BAD_BRIER)
def test_bad_input(metric, override, match):
    with pytest.raises(ValueError, match=match):
        metric(**{**_OK, **override})


def test_integrated_needs_two_times():
    with pytest.raises(ValueError, match="at least two times"):
        integrated_brier_score(_OK["time"], _OK["event"], np.array(_OK["surv"])[:, :1], [1.5])


# ---------------------------------------------------------------- competing risks
def test_incidence_brier_by_hand_without_censoring():
    from fracrisk.metrics import cumulative_incidence_brier_score

    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 2, 0, 1])
    f = np.array([[0.5], [0.2], [0.1], [0.4]])
    # at t = 2.5: outcomes 1, 0 (death), 0 (event-free: T = 3 > 2.5), 0; no weight below 1
    got = cumulative_incidence_brier_score(time, event, f, [2.5])
    assert got[0] == pytest.approx(np.mean([(1 - 0.5) ** 2, 0.2**2, 0.1**2, 0.4**2]))


def test_incidence_brier_without_competing_events_is_the_brier_score():
    from fracrisk.metrics import cumulative_incidence_brier_score

    rng = np.random.default_rng(2)
    n = 300
    time = rng.exponential(1.0, size=n)
    event = rng.integers(0, 2, size=n)
    times = np.quantile(time, [0.25, 0.5])
    surv = rng.uniform(0.2, 1.0, size=(n, 2))
    np.testing.assert_allclose(
        cumulative_incidence_brier_score(time, event, 1 - surv, times),
        brier_score(time, event, surv, times),
    )


def test_incidence_brier_prefers_the_true_incidence_to_the_cause_specific_risk():
    """Simulated: exponential fracture and death hazards; the truth beats 1 - exp(-H_F)."""
    from fracrisk.metrics import cumulative_incidence_brier_score

    rng = np.random.default_rng(0)
    n = 20000
    lam_f = np.exp(rng.normal(-1.0, 0.5, size=n))
    lam_d = 0.6
    t1, t2 = rng.exponential(1 / lam_f), rng.exponential(1 / lam_d, size=n)
    t = np.minimum(t1, t2)
    cause = np.where(t1 <= t2, 1, 2)
    c = rng.exponential(4.0, size=n)
    time, event = np.minimum(t, c), np.where(t <= c, cause, 0)
    h = 2.0
    true_cif = lam_f / (lam_f + lam_d) * (1 - np.exp(-(lam_f + lam_d) * h))
    cause_specific = 1 - np.exp(-lam_f * h)
    truth = cumulative_incidence_brier_score(time, event, true_cif[:, None], [h])[0]
    naive = cumulative_incidence_brier_score(time, event, cause_specific[:, None], [h])[0]
    assert truth < naive
