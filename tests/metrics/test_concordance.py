"""Concordance indices (Harrell, Uno, Antolini) against scikit-survival, lifelines and pycox.

On scikit-survival's bundled real datasets, on heavily tied random data (hypothesis), on
the documented differences from the peers, on bad input and on invariants.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import event as note_branch
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index
from pycox.evaluation import EvalSurv
from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
from sksurv.util import Surv

from fracrisk import CoxPH
from fracrisk.metrics import (
    NoComparablePairsError,
    antolini_c,
    concordance_counts,
    harrell_c,
    uno_c,
)
from tests.metrics.conftest import PEER_DATASETS, peer_split


@pytest.mark.parametrize(
    "time, event, risk, expected",
    [
        # pairs (i event, j outlives i): (0,1),(0,2),(0,3),(1,2),(1,3) -> concordant 4 of 5
        pytest.param([1, 2, 3, 4], [1, 1, 0, 1], [0.9, 0.5, 0.7, 0.1], 4 / 5, id="simple"),
        # event-event tie at t=2 is not comparable; event-censored tie at t=2 is
        pytest.param([2, 2, 2], [1, 1, 0], [3.0, 1.0, 2.0], 1.0 / 2, id="time-ties"),
        # risk tie counts one half
        pytest.param([1, 2], [1, 0], [1.0, 1.0], 0.5, id="risk-tie"),
        # competing death (2) is censoring
        pytest.param([1, 2, 3], [2, 1, 0], [5.0, 1.0, 0.0], 1.0, id="competing"),
    ],
)
def test_hand_computed(time, event, risk, expected):
    assert harrell_c(time, event, risk) == pytest.approx(expected, abs=1e-15)


def test_matches_peers_on_bundled_data(peer_dataset):
    _, df, covariates = peer_dataset
    risk = CoxPH().fit(df, covariates=covariates).predict_log_hazard(df).to_numpy()
    ours = harrell_c(df["time"], df["event"], risk)
    # scikit-survival 0.28 concordance_index_censored(event_indicator, event_time, estimate)
    sksurv = concordance_index_censored(df["event"].astype(bool), df["time"], risk)[0]
    # lifelines 0.30 concordance_index(times, predicted_scores, event) expects -risk
    lifelines = concordance_index(df["time"], -risk, df["event"])
    assert ours == pytest.approx(sksurv, abs=1e-12)
    assert ours == pytest.approx(lifelines, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_matches_scikit_survival_with_heavy_ties(data):
    n = data.draw(st.integers(2, 120))
    time = np.array(data.draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)), float)
    event = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    risk = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), float)
    with warnings.catch_warnings():  # scikit-survival divides 0/0 without comparable pairs
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            expected = concordance_index_censored(event.astype(bool), time, risk)[0]
        except ValueError:  # raised when there is no event at all
            expected = np.nan
    if np.isnan(expected):
        with pytest.raises(NoComparablePairsError):
            harrell_c(time, event, risk)
        return
    assert harrell_c(time, event, risk) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "time, event, risk, error, match",
    [
        pytest.param(
            [1, 2], [0, 0], [1, 2], NoComparablePairsError, "no comparable", id="censored"
        ),
        pytest.param([1, 2], [1, 0], [1, np.nan], ValueError, "'risk' contains NaN", id="nan"),
        pytest.param([1, 2], [1], [1, 2], ValueError, "same length", id="length"),
        pytest.param([1, 2], [1, 3], [1, 2], ValueError, "'event' must hold", id="code"),
        pytest.param([-1, 2], [1, 0], [1, 2], ValueError, "non-negative", id="negative-time"),
    ],
)
def test_bad_input(time, event, risk, error, match):
    with pytest.raises(error, match=match):
        harrell_c(time, event, risk)


@pytest.mark.parametrize("name", PEER_DATASETS)
def test_harrell_matches_peers_on_sksurv_datasets(name):
    split = peer_split(name)
    time, event, risk = split.test["time"], split.test["event"], split.risk
    ours = harrell_c(time, event, risk)
    # scikit-survival 0.28: concordance_index_censored(event_indicator, event_time, estimate)
    sksurv = concordance_index_censored(event == 1, time, risk)[0]
    # lifelines 0.30: concordance_index(event_times, predicted_scores, event_observed),
    # where a higher predicted score means longer survival, hence -risk
    lifelines = concordance_index(time, -risk, event)
    assert ours == pytest.approx(sksurv, abs=1e-9)
    assert ours == pytest.approx(lifelines, abs=1e-9)


@pytest.mark.parametrize("name", PEER_DATASETS)
@pytest.mark.parametrize("tau_quantile", [None, 0.8], ids=["no-tau", "tau-q80"])
def test_uno_matches_scikit_survival_on_sksurv_datasets(name, tau_quantile):
    split = peer_split(name)
    test = split.test
    tau = None if tau_quantile is None else float(np.quantile(test["time"], tau_quantile))
    ours = uno_c(
        test["time"],
        test["event"],
        split.risk,
        tau=tau,
        train_time=split.train["time"],
        train_event=split.train["event"],
    )
    # scikit-survival 0.28: concordance_index_ipcw(survival_train, survival_test, estimate, tau)
    sksurv = concordance_index_ipcw(split.y_train, split.y_test, split.risk, tau=tau)[0]
    assert ours == pytest.approx(sksurv, abs=1e-9)


@pytest.mark.parametrize("name", PEER_DATASETS)
def test_antolini_matches_pycox_on_sksurv_datasets(name):
    split = peer_split(name)
    test = split.test.iloc[:1500]  # pycox counts pairs one by one: O(n^2)
    time = test["time"].to_numpy()
    event = test["event"].to_numpy()
    # the grid holds every test event time (exact matches) plus points between them
    grid = np.unique(np.concatenate([time[event == 1], np.linspace(0, time.max(), 50)]))
    surv = split.model.predict_survival(test, grid).to_numpy()
    ours = antolini_c(time, event, surv, grid)
    # pycox 0.3.0: EvalSurv(surv (n_times, n_patients) DataFrame indexed by time, durations,
    # events, censor_surv).concordance_td("antolini"), steps="post" by default
    pycox = EvalSurv(
        pd.DataFrame(surv.T, index=grid), time, event, censor_surv="km"
    ).concordance_td("antolini")
    assert ours == pytest.approx(pycox, abs=1e-9)


# --------------------------------------------------------------------------------------
# Heavy ties: integer times in 1..6, integer risks in 0..4.


def _draw_tied(data, *, max_n: int = 150, codes: int = 2):
    n = data.draw(st.integers(2, max_n), label="n")
    ints = functools.partial(st.lists, min_size=n, max_size=n)
    time = np.array(data.draw(ints(st.integers(1, 6)), label="time"), float)
    event = np.array(data.draw(ints(st.integers(0, codes)), label="event"))
    risk = np.array(data.draw(ints(st.integers(0, 4)), label="risk"), float)
    return time, event, risk


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_uno_matches_scikit_survival_with_heavy_ties(data):
    # event code 2 (competing death) is censoring for fracrisk, so sksurv gets event == 1
    time, event, risk = _draw_tied(data)
    tau = data.draw(st.sampled_from([None, 1.5, 2.0, 3.0, 4.5, 6.0, 7.0]), label="tau")
    y = Surv.from_arrays(event == 1, time)
    with warnings.catch_warnings():  # scikit-survival divides 0/0 without comparable pairs
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            # scikit-survival 0.28: concordance_index_ipcw(train, test, estimate, tau), train=test
            expected = concordance_index_ipcw(y, y, risk, tau=tau)[0]
        except ValueError as err:
            expected = str(err)
    if isinstance(expected, str):  # sksurv raised: so must we, for the same reason
        match = "censoring survival G is 0" if "function is zero" in expected else "no comparable"
        note_branch(f"sksurv raised: {match}")
        with pytest.raises(ValueError, match=match):
            uno_c(time, event, risk, tau=tau)
        return
    if np.isnan(expected):
        note_branch("sksurv nan")
        with pytest.raises(NoComparablePairsError, match="no comparable pairs"):
            uno_c(time, event, risk, tau=tau)
        return
    note_branch("compared")
    assert uno_c(time, event, risk, tau=tau) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_harrell_with_competing_events_is_sksurv_with_them_censored(data):
    time, event, risk = _draw_tied(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            # scikit-survival 0.28: concordance_index_censored(event_indicator, time, estimate)
            expected = concordance_index_censored(event == 1, time, risk)[0]
        except ValueError:  # "All samples are censored" or NoComparablePairException
            expected = np.nan
    if np.isnan(expected):
        with pytest.raises(NoComparablePairsError, match="no comparable pairs"):
            harrell_c(time, event, risk)
        return
    assert harrell_c(time, event, risk) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_antolini_matches_pycox_with_heavy_ties(data):
    time, event, _ = _draw_tied(data, codes=1)
    grid = np.array(
        sorted(data.draw(st.sets(st.sampled_from(np.arange(0.5, 7.5, 0.5)), min_size=1)))
    )
    quarters = st.lists(st.integers(0, 4), min_size=len(grid), max_size=len(grid))
    surv = np.array(data.draw(st.lists(quarters, min_size=len(time), max_size=len(time)))) / 4
    try:
        # pycox 0.3.0: EvalSurv(surv DataFrame (n_times, n), durations, events)
        # .concordance_td("antolini"); ties in S count as discordant
        expected = EvalSurv(pd.DataFrame(surv.T, index=grid), time, event).concordance_td(
            "antolini"
        )
    except ZeroDivisionError:  # pycox: no comparable pair
        with pytest.raises(NoComparablePairsError, match="no comparable pairs"):
            antolini_c(time, event, surv, grid)
        return
    assert antolini_c(time, event, surv, grid) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_concordance_counts_frequency_weights_repeat_patients(data):
    # a bootstrap resample is a frequency weight per patient
    time, event, risk = _draw_tied(data, max_n=40)
    n = len(time)
    freq = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    weight = np.array(
        data.draw(st.lists(st.sampled_from([0.5, 1.0, 1.25, 3.0]), min_size=n, max_size=n))
    )
    ours = concordance_counts(time, event, risk, event_weight=weight, freq=freq)
    t, e, r, w = (np.repeat(a, freq) for a in (time, event, risk, weight))
    expected = concordance_counts(t, e, r, event_weight=w) if len(t) else (0.0, 0.0, 0.0)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------------------
# Documented difference: risk ties are exact equality here, |r_i - r_j| <= 1e-8 in sksurv.

# four patients, no censoring before the last: comparable pairs (0,1), (0,2), (0,3), (1,2),
# (1,3), (2,3), all concordant; patients 1 and 2 differ in risk by 5e-10 only
NEAR_TIE = dict(time=[1.0, 2.0, 3.0, 4.0], event=[1, 1, 1, 0], risk=[4.0, 3.0, 3.0 - 5e-10, 1.0])


@pytest.mark.parametrize(
    "metric, peer",
    [
        pytest.param(
            lambda d: harrell_c(**d),
            # scikit-survival 0.28: concordance_index_censored (tied_tol=1e-8 by default)
            lambda d, **kw: concordance_index_censored(
                np.array(d["event"]) == 1, np.array(d["time"]), np.array(d["risk"]), **kw
            )[0],
            id="harrell",
        ),
        pytest.param(
            lambda d: uno_c(**d),
            # scikit-survival 0.28: concordance_index_ipcw(y, y, estimate), tied_tol=1e-8
            lambda d, **kw: concordance_index_ipcw(
                Surv.from_arrays(np.array(d["event"]) == 1, d["time"]),
                Surv.from_arrays(np.array(d["event"]) == 1, d["time"]),
                np.array(d["risk"]),
                **kw,
            )[0],
            id="uno",
        ),
    ],
)
def test_near_tie_in_risk_is_not_a_tie(metric, peer):
    ours = metric(NEAR_TIE)
    sksurv = peer(NEAR_TIE)
    assert ours == 1.0  # 6 concordant of 6 (G = 1 at every event time, so Uno = Harrell)
    assert sksurv == pytest.approx(5.5 / 6, abs=1e-15)  # pair (1, 2) tied: half credit
    assert ours - sksurv == pytest.approx(0.5 / 6, abs=1e-15)
    assert ours == pytest.approx(peer(NEAR_TIE, tied_tol=0.0), abs=1e-15)  # exact ties agree
    # lifelines 0.30 concordance_index compares scores exactly, as fracrisk
    d = NEAR_TIE
    assert ours == concordance_index(d["time"], -np.array(d["risk"]), d["event"])


# --------------------------------------------------------------------------------------
# Bad input

BAD_UNO = [
    pytest.param(dict(time=[1, 2], event=[1, 0], risk=[1]), ValueError, "same length", id="length"),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], risk=[np.nan, 1]),
        ValueError,
        "'risk' contains NaN",
        id="nan-risk",
    ),
    pytest.param(
        dict(time=[1, 2], event=[0, 2], risk=[1, 2]),
        NoComparablePairsError,
        "no comparable pairs",
        id="all-censored",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], risk=[2, 1], tau=1.0),
        NoComparablePairsError,
        "no comparable pairs",
        id="tau-before-events",
    ),
    # train: G(1) = 1/2 and G stays 1/2 after the event at 2 -> unknown beyond 2
    pytest.param(
        dict(time=[3, 4], event=[1, 0], risk=[2, 1], train_time=[1, 2], train_event=[0, 1]),
        ValueError,
        "time 3 is beyond the censoring data",
        id="event-beyond-train-follow-up",
    ),
    # train: the last patient is censored at 2, so G = 0 from 2 on
    pytest.param(
        dict(time=[3, 4], event=[1, 0], risk=[2, 1], train_time=[1, 2], train_event=[1, 0]),
        ValueError,
        "censoring survival G is 0 at event time 3 years",
        id="G-zero",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], risk=[2, 1], train_time=[1, 2]),
        ValueError,
        "pass both train_time and train_event",
        id="train-event-missing",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], risk=[2, 1], train_time=[1, 2], train_event=[1]),
        ValueError,
        "'train_time' \\(2\\) and 'train_event'",
        id="train-length",
    ),
    pytest.param(
        dict(time=[1, np.inf], event=[1, 0], risk=[2, 1]),
        ValueError,
        "'time' contains NaN or infinite",
        id="infinite-time",
    ),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_UNO)
def test_uno_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        uno_c(**kwargs)


_SURV = np.array([[0.9, 0.5], [0.8, 0.7]])

BAD_ANTOLINI = [
    pytest.param(
        dict(time=[1, 2], event=[1, 0], surv=_SURV[:, :1], times=[1, 2]),
        ValueError,
        r"'surv' must have shape \(2, 2\), got \(2, 1\)",
        id="surv-columns",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], surv=_SURV.T[:, :, None], times=[1, 2]),
        ValueError,
        r"'surv' must have shape \(2, 2\)",
        id="surv-3d",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], surv=_SURV, times=[2, 1]),
        ValueError,
        "strictly increasing",
        id="unsorted-times",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], surv=_SURV, times=[1, 1]),
        ValueError,
        "strictly increasing",
        id="repeated-times",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], surv=[[np.nan, 0.5], [0.8, 0.7]], times=[1, 2]),
        ValueError,
        "'surv' contains NaN",
        id="nan-surv",
    ),
    pytest.param(
        dict(time=[1, 2], event=[0, 0], surv=_SURV, times=[1, 2]),
        NoComparablePairsError,
        "no comparable pairs",
        id="all-censored",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1], surv=_SURV, times=[1, 2]),
        ValueError,
        "same length",
        id="length",
    ),
    pytest.param(
        dict(time=[1, 2], event=[1, 0], surv=_SURV, times=[1, np.nan]),
        ValueError,
        "finite, non-negative",
        id="nan-times",
    ),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_ANTOLINI)
def test_antolini_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        antolini_c(**kwargs)


# --------------------------------------------------------------------------------------
# Invariants


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_invariants(data):
    n = data.draw(st.integers(2, 150), label="n")
    time = np.array(data.draw(st.lists(st.integers(1, 20), min_size=n, max_size=n)), float)
    event = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    risk = np.array(data.draw(st.permutations(range(n)), label="risk"), float)  # no ties
    try:
        c = harrell_c(time, event, risk)
    except NoComparablePairsError:
        with pytest.raises(NoComparablePairsError):
            harrell_c(time, event, -risk)
        return
    assert 0.0 <= c <= 1.0
    assert c + harrell_c(time, event, -risk) == pytest.approx(1.0, abs=1e-12)
    # Uno's C: in [0, 1], also reversed (when the weights exist: G > 0 at every event)
    try:
        u = uno_c(time, event, risk)
    except ValueError as err:
        assert "censoring survival G is 0" in str(err)
    else:
        assert 0.0 <= u <= 1.0
        assert u + uno_c(time, event, -risk) == pytest.approx(1.0, abs=1e-12)
    # Antolini's C on proportional-hazards curves; no ties in S after the first grid time
    grid = np.arange(1.0, 21.0)
    surv = np.exp(-np.exp(risk / n)[:, None] * grid[None, :] / 20)
    assert 0.0 <= antolini_c(time, event, surv, grid) <= 1.0


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_uno_without_censoring_is_harrell(data):
    # G = 1 at every time without censoring, so every weight is 1
    time, _, risk = _draw_tied(data)
    event = np.ones(len(time), dtype=int)
    try:
        expected = harrell_c(time, event, risk)
    except NoComparablePairsError:
        return
    assert uno_c(time, event, risk) == pytest.approx(expected, abs=1e-12)
    assert uno_c(time, event, risk, train_time=time, train_event=event) == pytest.approx(
        expected, abs=1e-12
    )


def _wolbers_by_pairs(time, event, risk, cause=1):
    """Wolbers' C by looping over every pair (the definition, written out)."""
    num = den = 0.0
    for i in range(len(time)):
        if event[i] != cause:
            continue
        for j in range(len(time)):
            if i == j:
                continue
            later = time[j] > time[i] or (time[j] == time[i] and event[j] == 0)
            competed = event[j] not in (0, cause) and time[j] <= time[i]
            if later or competed:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


@pytest.mark.parametrize("seed", range(5))
def test_wolbers_c_counts_the_pairs_its_definition_names(seed):
    from fracrisk.metrics import wolbers_c

    rng = np.random.default_rng(seed)
    n = 60
    time = rng.choice(np.arange(1.0, 15.0), n)  # ties in time
    event = rng.choice([0, 1, 2], n, p=[0.4, 0.3, 0.3])
    risk = rng.choice(np.arange(8.0), n)  # ties in risk
    for cause in (1, 2):
        assert wolbers_c(time, event, risk, cause=cause) == pytest.approx(
            _wolbers_by_pairs(time, event, risk, cause)
        )
    # Without competing events it is Harrell's C.
    plain = np.where(event == 2, 0, event)
    assert wolbers_c(time, plain, risk) == pytest.approx(harrell_c(time, plain, risk))


def test_wolbers_c_rewards_the_absolute_risk_where_death_competes():
    """Death that comes early makes a high hazard a low absolute risk (simulated truth)."""
    from fracrisk.metrics import wolbers_c

    rng = np.random.default_rng(0)
    n = 4000
    frailty = rng.normal(size=n)  # raises both hazards
    t_fracture = rng.exponential(1 / (0.05 * np.exp(frailty)))
    t_death = rng.exponential(1 / (0.05 * np.exp(2.5 * frailty)))
    censor = rng.uniform(0, 10, n)
    time = np.minimum.reduce([t_fracture, t_death, censor])
    event = np.select([time == t_fracture, time == t_death], [1, 2], 0)
    hazard = frailty  # the cause-specific log hazard of fracture
    h1, h2 = 0.05 * np.exp(frailty), 0.05 * np.exp(2.5 * frailty)
    absolute = h1 / (h1 + h2) * (1 - np.exp(-(h1 + h2) * 10))  # true 10-year incidence
    assert wolbers_c(time, event, absolute) > wolbers_c(time, event, hazard) + 0.02
    assert harrell_c(time, event, hazard) > harrell_c(time, event, absolute)
