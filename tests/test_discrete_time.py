"""The time grid of the discrete-time heads: cuts, discretisation, interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.discrete_time import discretise, fit_time_grid, interpolate_incidence


def test_grid_cuts_at_event_quantiles_and_starts_at_zero():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 9.0])
    event = np.array([1, 2, 1, 0, 1, 0])
    cuts = fit_time_grid(time, event, n_intervals=2)
    # events at 1, 2, 3, 5: the 1/2 and 2/2 quantiles
    np.testing.assert_allclose(cuts, [0.0, 2.5, 5.0])
    with pytest.raises(ValueError, match="no event"):
        fit_time_grid(time, np.zeros(6), 3)
    with pytest.raises(ValueError, match="n_intervals"):
        fit_time_grid(time, event, 0)


def test_discretise_events_up_and_censoring_down():
    cuts = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    time = torch.tensor([0.5, 1.0, 1.5, 1.5, 2.0, 3.5, 3.5])
    event = torch.tensor([1, 2, 0, 1, 0, 1, 0])
    index, code = discretise(time, event, cuts)
    # event in (0, 1] -> 1; event at the cut 1.0 -> 1; censored at 1.5 -> survived to 1;
    # event at 1.5 -> 2; censored at 2.0 -> 2; event after the last cut -> censored at 3
    assert index.tolist() == [1, 1, 1, 2, 2, 3, 3]
    assert code.tolist() == [1, 2, 0, 1, 0, 0, 0]


def test_interpolation_is_linear_between_cuts_and_flat_after():
    cuts = np.array([0.0, 1.0, 3.0])
    at_cuts = np.array([[0.0, 0.2, 0.6]])
    out = interpolate_incidence(at_cuts, cuts, [0.0, 0.5, 1.0, 2.0, 3.0, 7.0])
    np.testing.assert_allclose(out, [[0.0, 0.1, 0.2, 0.4, 0.6, 0.6]])
    with pytest.raises(ValueError, match="finite"):
        interpolate_incidence(at_cuts, cuts, [-1.0])
