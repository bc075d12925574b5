"""Breslow baseline hazard: hand-computed values, streaming equals in-memory, DataLoader path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fracrisk.baseline_hazard import BreslowBaselineHazard
from fracrisk.exceptions import DataWarning, NotFittedError
from fracrisk.heads import DeepSurvHead
from fracrisk.testing import assert_valid_survival
from fracrisk.training import predict_batches


def test_hand_computed_with_ties_and_competing_event():
    # times 1,1,2,3,4 ; events 1,1,2(death),1,0 ; eta = log(1), log(2), 0, 0, log(3)
    eta = np.log([1.0, 2.0, 1.0, 1.0, 3.0])
    est = BreslowBaselineHazard().fit(eta, [1, 1, 2, 3, 4], [1, 1, 2, 1, 0])
    # t=1: 2 events / (1+2+1+1+3=8); t=3: 1 event / (1+3=4). Death at t=2 is censoring.
    np.testing.assert_allclose(est.event_times_, [1.0, 3.0])
    np.testing.assert_allclose(est.cumulative_hazard_, [2 / 8, 2 / 8 + 1 / 4], rtol=1e-15)
    np.testing.assert_allclose(
        est.cumulative_hazard([0.0, 0.999, 1.0, 2.9, 3.0, 4.0]),
        [0, 0, 0.25, 0.25, 0.5, 0.5],
        rtol=1e-15,
    )
    surv = est.survival(np.log([1.0, 2.0]), [1.0, 3.0])
    np.testing.assert_allclose(surv, np.exp(-np.outer([1.0, 2.0], [0.25, 0.5])), rtol=1e-15)


def test_streaming_in_batches_equals_one_pass():
    rng = np.random.default_rng(0)
    n = 5000
    eta = rng.normal(0, 2, n)
    time = rng.integers(1, 3650, n) / 365.25
    event = rng.integers(0, 3, n)
    whole = BreslowBaselineHazard().fit(eta, time, event)
    parts = BreslowBaselineHazard().fit_batches(
        (eta[i : i + 333], time[i : i + 333], event[i : i + 333]) for i in range(0, n, 333)
    )
    np.testing.assert_array_equal(whole.event_times_, parts.event_times_)
    np.testing.assert_allclose(whole.cumulative_hazard_, parts.cumulative_hazard_, rtol=1e-12)


def test_stream_from_a_dataloader_never_holds_inputs():
    torch.manual_seed(0)
    x = torch.randn(600, 6)
    time = torch.randint(1, 100, (600,)).double() / 10
    event = torch.randint(0, 2, (600,))
    head = DeepSurvHead(6, hidden=(8,)).eval()
    loader = DataLoader(TensorDataset(x, time, event), batch_size=64)
    streamed = BreslowBaselineHazard().fit_batches(predict_batches(head, loader, device="cpu"))
    with torch.no_grad():
        eta = head(x).reshape(-1).double().numpy()
    direct = BreslowBaselineHazard().fit(eta, time.numpy(), event.numpy())
    np.testing.assert_allclose(streamed.cumulative_hazard_, direct.cumulative_hazard_, rtol=1e-6)
    assert_valid_survival(streamed.survival(eta[:20], np.linspace(0, 9.9, 30)))


def test_state_round_trip_and_extrapolation_warning():
    est = BreslowBaselineHazard().fit([0.0, 0.5, -0.5], [1.0, 2.0, 3.0], [1, 1, 0])
    again = BreslowBaselineHazard.from_state_arrays(est.state_arrays())
    np.testing.assert_array_equal(
        again.cumulative_hazard([0.5, 1.5, 2.5]), est.cumulative_hazard([0.5, 1.5, 2.5])
    )
    with pytest.warns(DataWarning, match="beyond the longest training follow-up"):
        est.survival([0.0], [5.0])


@pytest.mark.parametrize(
    "eta, time, event, match",
    [
        pytest.param([0.0], [1.0], [0], "no events", id="no-events"),
        pytest.param([np.nan], [1.0], [1], "NaN", id="nan-eta"),
        pytest.param([0.0, 1.0], [1.0], [1], "same length", id="lengths"),
    ],
)
def test_bad_input(eta, time, event, match):
    with pytest.raises(ValueError, match=match):
        BreslowBaselineHazard().fit(eta, time, event)


def test_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        BreslowBaselineHazard().cumulative_hazard([1.0])
