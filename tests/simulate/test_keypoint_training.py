"""The keypoint detector's simulated training set (fracrisk.simulate.keypoint_training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.imaging.anatomy import N_KEYPOINTS
from fracrisk.simulate import simulate_training_set, training_radiograph


def test_simulated_sets_are_reproducible_and_seed_dependent():
    a, ka = simulate_training_set(2, seed=5)
    b, kb = simulate_training_set(3, seed=5)
    c, kc = simulate_training_set(2, seed=6)
    assert torch.equal(a, b[:2]) and torch.equal(ka, kb[:2])
    assert not torch.equal(ka, kc)
    assert ka.shape == (2, N_KEYPOINTS, 2) and ka.dtype == torch.float32


def test_a_set_is_its_radiographs_normalised():
    images, keypoints = simulate_training_set(2, seed=3)
    radiograph = training_radiograph(3, 1)
    assert radiograph.pixel_spacing == pytest.approx((1.0, 1.0))
    raw = torch.from_numpy(radiograph.image)
    expected = (raw - raw.mean()) / raw.std()
    torch.testing.assert_close(images[1, 0], expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(
        keypoints[1].numpy(), radiograph.keypoints.reshape(-1, 2).astype(np.float32)
    )


@pytest.mark.parametrize(
    "call, message",
    [
        pytest.param(lambda: simulate_training_set(0), "n must be a positive integer", id="n=0"),
        pytest.param(lambda: simulate_training_set(True), "n must be", id="n=True"),
        pytest.param(
            lambda: simulate_training_set(1, seed=-1),
            "seed must be a non-negative integer",
            id="seed<0",
        ),
        pytest.param(lambda: training_radiograph(0, 1.5), "index must be", id="index-float"),
    ],
)
def test_invalid_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
