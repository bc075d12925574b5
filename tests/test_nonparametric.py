"""Kaplan-Meier against lifelines."""

from __future__ import annotations

import numpy as np
from lifelines import KaplanMeierFitter

from fracrisk.nonparametric import kaplan_meier


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
