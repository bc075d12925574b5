"""harrell_c against scikit-survival and lifelines on real data and on heavily tied data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_censored

from fracrisk import CoxPH
from fracrisk.metrics import NoComparablePairsError, harrell_c


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
