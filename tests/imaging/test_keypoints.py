"""Vertebral corner detection: shipped accuracy, save/load, training, validation, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fracrisk.imaging.keypoints import (
    KeypointNet,
    detect_keypoints,
    keypoint_errors_mm,
    load_keypoint_detector,
    normalise_radiographs,
    save_keypoint_detector,
    train_keypoint_detector,
    vertebrae_found,
)
from fracrisk.simulate import simulate_training_set, training_radiograph

# The shipped detector was trained on simulate_training_set(2400, seed=0) (streams (0, i));
# seed 7 gives radiographs it has never seen.
HELD_OUT_SEED = 7


@pytest.fixture(scope="module")
def shipped():
    return load_keypoint_detector()


@pytest.fixture(scope="module")
def held_out():
    radiographs = [training_radiograph(HELD_OUT_SEED, i) for i in range(40)]
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
        images, keypoints, epochs=2, batch_size=4, seed=1, accelerator="cpu", history=history
    )
    assert isinstance(model, KeypointNet) and not model.training
    assert len(history) == 2 and all(math.isfinite(v) for v in history)
    assert history[-1] <= history[0] * 1.05
    pred = detect_keypoints(model, images[:2, 0].numpy())
    assert pred.shape == (2, 5, 4, 2) and np.isfinite(pred).all()
    # seeded: the same run gives the same network
    again = train_keypoint_detector(
        images, keypoints.reshape(8, 5, 4, 2), epochs=2, batch_size=4, seed=1, accelerator="cpu"
    )
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def _toy_training_set(n: int = 6, h: int = 32, w: int = 16):
    """Random images and corners: enough to exercise the engine in a fraction of a second."""
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(n, 1, h, w, generator=generator)
    keypoints = torch.rand(n, 20, 2, generator=generator) * torch.tensor([w - 1.0, h - 1.0])
    return images, keypoints


_TOY = {"batch_size": 4, "channels": (4, 8, 8), "accelerator": "cpu"}


def _assert_same_weights(a: KeypointNet, b: KeypointNet) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_training_is_seeded_and_keeps_the_callers_random_state():
    images, keypoints = _toy_training_set()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = train_keypoint_detector(images, keypoints, epochs=2, seed=4, **_TOY)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    second = train_keypoint_detector(images, keypoints, epochs=2, seed=4, **_TOY)
    _assert_same_weights(first, second)
    other = train_keypoint_detector(images, keypoints, epochs=2, seed=5, **_TOY)
    assert not torch.equal(first.head.weight, other.head.weight)


def test_lightning_module_and_datamodule_are_importable():
    from fracrisk.imaging import keypoints as module
    from fracrisk.imaging.keypoints import KeypointDataModule, KeypointLightningModule

    assert KeypointLightningModule.__module__ == "fracrisk.imaging.keypoints"
    assert module.KeypointDataModule is KeypointDataModule
    with pytest.raises(AttributeError, match="no attribute"):
        module.NoSuchThing  # noqa: B018


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_accelerator_without_a_gpu_is_a_fracrisk_error():
    from fracrisk.exceptions import DeviceUnavailableError

    images, keypoints = _toy_training_set()
    options = {**_TOY, "accelerator": "gpu"}
    with pytest.raises(DeviceUnavailableError, match="asks for a GPU"):
        train_keypoint_detector(images, keypoints, epochs=1, **options)


def test_resume_from_a_checkpoint_is_bit_identical(tmp_path):
    images, keypoints = _toy_training_set()
    uninterrupted = train_keypoint_detector(images, keypoints, epochs=3, seed=2, **_TOY)
    # time_limit=0 stops the run after its first epoch, as a preempted job would stop
    run, first = tmp_path / "run", []
    train_keypoint_detector(
        images,
        keypoints,
        epochs=3,
        seed=2,
        checkpoint_dir=run,
        time_limit=0,
        history=first,
        **_TOY,
    )
    assert len(first) == 1
    assert (run / "last.ckpt").is_file()
    with pytest.raises(FileExistsError, match="resume=True"):
        train_keypoint_detector(images, keypoints, epochs=3, seed=2, checkpoint_dir=run, **_TOY)
    history: list[float] = []
    resumed = train_keypoint_detector(
        images,
        keypoints,
        epochs=3,
        seed=2,
        checkpoint_dir=run,
        resume=True,
        history=history,
        **_TOY,
    )
    assert len(history) == 3 and history[0] == first[0]
    # the resumed run trained the last two epochs only (its own CSV log)
    log = (run / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2"]
    _assert_same_weights(resumed, uninterrupted)


def test_normalise_radiographs_is_a_per_image_z_score():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(3.0, 2.0, size=(3, 1, 16, 8)).astype(np.float32))
    images[1] *= 10.0
    x = normalise_radiographs(images)
    assert x.dtype == torch.float32 and x.shape == images.shape
    torch.testing.assert_close(x.mean((1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std((1, 2, 3)), torch.ones(3), atol=1e-5, rtol=0)
    assert torch.equal(normalise_radiographs(torch.ones(1, 4, 4)), torch.zeros(1, 4, 4))


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
    with pytest.raises(ValueError, match="accelerator must be one of"):
        train_keypoint_detector(
            torch.zeros(2, 1, 32, 32), torch.zeros(2, 20, 2), epochs=1, accelerator="tpu"
        )
    with pytest.raises(ValueError, match="precision must be"):
        train_keypoint_detector(
            torch.zeros(2, 1, 32, 32), torch.zeros(2, 20, 2), epochs=1, precision="8-bit"
        )
    with pytest.raises(ValueError, match="seed must be"):
        train_keypoint_detector(torch.zeros(2, 1, 32, 32), torch.zeros(2, 20, 2), epochs=1, seed=-1)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        train_keypoint_detector(
            torch.zeros(2, 1, 32, 32), torch.zeros(2, 20, 2), epochs=1, resume=True
        )
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
