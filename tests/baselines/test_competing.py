"""The cumulative incidence of fracture from the cause-specific pair."""

from __future__ import annotations

import numpy as np

from fracrisk.baseline_hazard import BreslowBaselineHazard
from fracrisk.baselines._competing import cumulative_incidence


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 400
    time = rng.exponential(5.0, n)
    event = rng.choice([0, 1, 2], size=n, p=[0.5, 0.3, 0.2])
    fracture = BreslowBaselineHazard().fit(np.zeros(n), time, (event == 1).astype(int))
    death = BreslowBaselineHazard().fit(np.zeros(n), time, (event == 2).astype(int))
    return fracture, death


def test_small_steps_match_the_plug_in_sum():
    fracture, death = _pair()
    times = [1.0, 3.0, 6.0]
    eta = np.array([-1.0, 0.0, 0.5])
    cif = cumulative_incidence(fracture, death, eta, -eta, times)
    jumps = np.union1d(fracture.event_times_, death.event_times_)
    jumps = jumps[jumps <= max(times)]
    h_f, h_d = fracture.cumulative_hazard(jumps), death.cumulative_hazard(jumps)
    for i, e in enumerate(eta):
        hf, hd = h_f * np.exp(e), h_d * np.exp(-e)
        before = np.exp(-np.concatenate([[0.0], hf[:-1]]) - np.concatenate([[0.0], hd[:-1]]))
        plug_in = np.cumsum(before * np.diff(np.concatenate([[0.0], hf])))
        expected = [plug_in[np.searchsorted(jumps, t, side="right") - 1] for t in times]
        np.testing.assert_allclose(cif[i], expected, atol=2e-3)


def test_an_extreme_hazard_keeps_the_incidence_a_probability():
    fracture, death = _pair(1)
    times = np.linspace(0.0, 10.0, 21)
    eta = np.array([8.0, 12.0, 0.0])
    cif = cumulative_incidence(fracture, death, eta, np.array([0.0, 3.0, 9.0]), times)
    assert np.all(cif >= 0) and np.all(cif <= 1)
    assert np.all(np.diff(cif, axis=1) >= -1e-15)
    assert cif[1, -1] > 0.99  # a huge fracture hazard: almost surely a fracture first
    assert cif[2, -1] < 0.05  # a huge death hazard: almost never a fracture first
