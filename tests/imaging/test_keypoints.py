"""Vertebral corner detection: shipped accuracy, save/load, training, validation, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fracrisk.imaging.keypoints import (
    KeypointNet,
    _simulate_one,
    detect_keypoints,
    keypoint_errors_mm,
    load_keypoint_detector,
    save_keypoint_detector,
    simulate_training_set,
    train_keypoint_detector,
    vertebrae_found,
)

# The shipped detector was trained on simulate_training_set(2400, seed=0) (streams (0, i));
# seed 7 gives radiographs it has never seen.
HELD_OUT_SEED = 7


@pytest.fixture(scope="module")
def shipped():
    return load_keypoint_detector()


@pytest.fixture(scope="module")
def held_out():
    radiographs = [_simulate_one(HELD_OUT_SEED, i) for i in range(40)]
    for r in radiographs:
        assert r.pixel_spacing == pytest.approx((1.0, 1.0))
    images = np.stack([r.image for r in radiographs])
    keypoints = np.stack([r.keypoints for r in radiographs])
    return images, keypoints


# --------------------------------------------------------------------------- accuracy


def test_shipped_detector_meets_target_on_held_out_radiographs(shipped, held_out):
    images, true = held_out
    pred = detect_keypoints(shipped, images)
    assert pred.shape == (40, 5, 4, 2)
    errors = keypoint_errors_mm(pred, true, (1.0, 1.0))
    found = vertebrae_found(pred, true, (1.0, 1.0), tolerance_mm=5.0)
    print(
        f"\nheld-out (40 radiographs, seed {HELD_OUT_SEED}): mean corner error "
        f"{errors.mean():.3f} mm, median {np.median(errors):.3f}, p95 "
        f"{np.percentile(errors, 95):.3f}, max {errors.max():.3f}; vertebrae found "
        f"{found.sum()}/{found.size}"
    )
    assert errors.mean() < 2.0
    assert found.all()


def test_single_image_and_tensor_input_agree_with_batch(shipped, held_out):
    images, _ = held_out
    batch = detect_keypoints(shipped, images[:3])
    single = detect_keypoints(shipped, images[1])
    assert single.shape == (5, 4, 2)
    np.testing.assert_allclose(single, batch[1], atol=1e-4)
    from_tensor = detect_keypoints(shipped, torch.from_numpy(images[:3]))
    np.testing.assert_allclose(from_tensor, batch, atol=1e-5)


def test_shipped_config_is_plain_json(shipped):
    from fracrisk.imaging import keypoints as module

    config = json.loads(module._SHIPPED.with_suffix(".json").read_text())
    assert config["format"] == "fracrisk-keypoints/1"
    assert config["image_size"] == [176, 96]
    assert "z-score" in config["normalisation"]
    assert module._SHIPPED.with_suffix(".safetensors").stat().st_size < 1_100_000
    assert shipped.image_size == (176, 96)


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip_is_bit_identical(tmp_path, shipped, held_out):
    images, _ = held_out
    weights, config = save_keypoint_detector(shipped, tmp_path / "detector")
    assert weights.name == "detector.safetensors" and config.name == "detector.json"
    loaded = load_keypoint_detector(tmp_path / "detector.safetensors")
    for (name, a), (_, b) in zip(
        shipped.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(
        detect_keypoints(loaded, images[:4]), detect_keypoints(shipped, images[:4])
    )


def test_round_trip_of_a_fresh_network(tmp_path):
    torch.manual_seed(3)
    model = KeypointNet(channels=(4, 8, 8, 12)).eval()
    save_keypoint_detector(model, tmp_path / "fresh.json")
    loaded = load_keypoint_detector(tmp_path / "fresh")
    assert loaded.channels == (4, 8, 8, 12)
    x = np.random.default_rng(0).normal(size=(2, 40, 24)).astype(np.float32)
    np.testing.assert_array_equal(detect_keypoints(loaded, x), detect_keypoints(model, x))


# --------------------------------------------------------------------------- training


def test_tiny_training_run_end_to_end():
    images, keypoints = simulate_training_set(8, seed=99)
    assert images.shape == (8, 1, 176, 96) and keypoints.shape == (8, 20, 2)
    assert torch.allclose(images.mean((1, 2, 3)), torch.zeros(8), atol=1e-4)
    history: list[float] = []
    model = train_keypoint_detector(
        images, keypoints, epochs=2, batch_size=4, seed=1, device="cpu", history=history
    )
    assert isinstance(model, KeypointNet) and not model.training
    assert len(history) == 2 and all(math.isfinite(v) for v in history)
    assert history[-1] <= history[0] * 1.05
    pred = detect_keypoints(model, images[:2, 0].numpy())
    assert pred.shape == (2, 5, 4, 2) and np.isfinite(pred).all()
    # seeded: the same run gives the same network
    again = train_keypoint_detector(
        images, keypoints.reshape(8, 5, 4, 2), epochs=2, batch_size=4, seed=1, device="cpu"
    )
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_simulated_sets_are_reproducible_and_seed_dependent():
    a, ka = simulate_training_set(2, seed=5)
    b, kb = simulate_training_set(3, seed=5)
    c, kc = simulate_training_set(2, seed=6)
    assert torch.equal(a, b[:2]) and torch.equal(ka, kb[:2])
    assert not torch.equal(ka, kc)


def test_soft_argmax_finds_a_peak():
    logits = torch.full((1, 1, 16, 8), -50.0)
    logits[0, 0, 11, 3] = 50.0
    np.testing.assert_allclose(KeypointNet.soft_argmax(logits)[0, 0].numpy(), [3.0, 11.0])


# --------------------------------------------------------------------------- validation


def test_input_validation(tmp_path, shipped):
    with pytest.raises(ValueError, match="images must be"):
        detect_keypoints(shipped, np.zeros((1, 1, 176, 96)))
    with pytest.raises(ValueError, match="finite"):
        detect_keypoints(shipped, np.full((176, 96), np.nan))
    with pytest.raises(ValueError, match="at least 8"):
        detect_keypoints(shipped, np.zeros((4, 96)))
    with pytest.raises(TypeError, match="KeypointNet"):
        detect_keypoints(object(), np.zeros((176, 96)))
    with pytest.raises(ValueError, match="same positive number"):
        train_keypoint_detector(torch.zeros(3, 1, 32, 32), torch.zeros(2, 20, 2), epochs=1)
    with pytest.raises(ValueError, match="keypoints must be"):
        train_keypoint_detector(torch.zeros(2, 1, 32, 32), torch.zeros(2, 10, 2), epochs=1)
    with pytest.raises(ValueError, match="epochs must be"):
        train_keypoint_detector(torch.zeros(2, 1, 32, 32), torch.zeros(2, 20, 2), epochs=0)
    with pytest.raises(ValueError, match="multiples of 16"):
        train_keypoint_detector(torch.zeros(2, 1, 30, 32), torch.zeros(2, 20, 2), epochs=1)
    with pytest.raises(ValueError, match="n must be"):
        simulate_training_set(0)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_keypoint_detector(tmp_path / "missing")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    (tmp_path / "other.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a fracrisk keypoint detector"):
        load_keypoint_detector(tmp_path / "other")
    with pytest.raises(ValueError, match="same shape"):
        keypoint_errors_mm(np.zeros((5, 4, 2)), np.zeros((5, 2)), (1.0, 1.0))
    with pytest.raises(ValueError, match="pixel_spacing"):
        keypoint_errors_mm(np.zeros((4, 2)), np.zeros((4, 2)), (1.0, -1.0))


# --------------------------------------------------------------------------- errors


def test_keypoint_errors_mm_hand_case():
    pred = np.array([[0.0, 0.0], [10.0, 10.0]])
    true = np.array([[3.0, 4.0], [10.0, 10.0]])  # (x, y): 3 columns, 4 rows off
    np.testing.assert_allclose(keypoint_errors_mm(pred, true, (1.0, 1.0)), [5.0, 0.0])
    # row spacing 2 mm (y), column spacing 0.5 mm (x): sqrt(1.5^2 + 8^2)
    np.testing.assert_allclose(
        keypoint_errors_mm(pred, true, (2.0, 0.5)), [math.hypot(1.5, 8.0), 0.0]
    )
    corners = np.zeros((2, 4, 2))
    moved = corners.copy()
    moved[1, 2] = [0.0, 6.0]  # one corner of the second vertebra 6 mm off
    np.testing.assert_array_equal(vertebrae_found(moved, corners, (1.0, 1.0)), [True, False])
