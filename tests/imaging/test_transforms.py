"""Image transforms: closed-form results, the draws' statistics, the flip policy, seeding."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from fracrisk.imaging.transforms import (
    Compose,
    EnsureFloat32,
    RandFlip,
    RandGaussianNoise,
    RandIntensityJitter,
    RandRotate,
    Rotate,
    ScaleIntensityRange,
    default_eval_transform,
    default_train_transform,
)


def _image(shape=(3, 16, 16), seed=0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(Rotate(0.0), id="Rotate(0)"),
        pytest.param(RandRotate(max_degrees=0.0), id="RandRotate(max 0)"),
        pytest.param(RandRotate(max_degrees=10.0, prob=0.0), id="RandRotate(prob 0)"),
    ],
)
def test_rotation_by_zero_is_the_identity(transform):
    x = _image()
    assert torch.equal(transform(x), x)


@pytest.mark.parametrize("shape", [(3, 9, 9), (2, 3, 9, 9), (9, 9)])
def test_a_quarter_turn_is_clockwise_and_exact(shape):
    x = _image(shape)
    y = Rotate(90.0)(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    torch.testing.assert_close(y, torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)


def test_a_small_positive_angle_moves_the_top_towards_the_right():
    x = torch.zeros(1, 41, 41)
    x[0, 5, 20] = 1.0  # above the centre
    y = Rotate(10.0)(x)[0]
    col = float((y.sum(0) * torch.arange(41.0)).sum() / y.sum())
    expected = 20 + 15 * math.sin(math.radians(10.0))  # radius 15 px
    assert col == pytest.approx(expected, abs=0.3)


def test_random_angles_are_uniform_within_the_range():
    rotate = RandRotate(max_degrees=5.0, seed=0)
    angles = np.array([rotate.draw() for _ in range(4000)])
    assert angles.min() >= -5.0 and angles.max() <= 5.0
    assert abs(angles.mean()) < 0.15
    assert angles.std() == pytest.approx(5.0 / math.sqrt(3.0), rel=0.04)
    assert (angles < -4.5).any() and (angles > 4.5).any()


# --------------------------------------------------------------------------- intensity


def test_gain_and_offset_are_uniform_and_independent():
    jitter = RandIntensityJitter(scale=0.1, shift=0.05, gamma=0.0, seed=1)
    ramp = torch.linspace(0.0, 1.0, 64).reshape(1, 8, 8)
    gains, offsets = [], []
    for _ in range(3000):
        y = jitter(ramp)
        gain = float(y.flatten()[-1] - y.flatten()[0])  # the ramp spans exactly 1
        offset = float(y.flatten()[0])
        torch.testing.assert_close(y, ramp * gain + offset, atol=1e-5, rtol=0)
        gains.append(gain)
        offsets.append(offset)
    gains, offsets = np.array(gains), np.array(offsets)
    assert gains.min() >= 0.9 - 1e-6 and gains.max() <= 1.1 + 1e-6
    assert offsets.min() >= -0.05 - 1e-6 and offsets.max() <= 0.05 + 1e-6
    assert gains.mean() == pytest.approx(1.0, abs=0.004)
    assert abs(offsets.mean()) < 0.002
    assert gains.std() == pytest.approx(0.1 / math.sqrt(3.0), rel=0.05)
    assert offsets.std() == pytest.approx(0.05 / math.sqrt(3.0), rel=0.05)
    assert abs(np.corrcoef(gains, offsets)[0, 1]) < 0.06


def test_gamma_keeps_the_range_and_is_a_power_curve():
    jitter = RandIntensityJitter(scale=0.0, shift=0.0, gamma=0.5, seed=2)
    x = 2.0 + 3.0 * _image((2, 8, 8))
    lo, hi = float(x.min()), float(x.max())
    u = (x - lo) / (hi - lo)
    mid = u.flatten()[(u.flatten() - 0.5).abs().argmin()]
    gammas = []
    for _ in range(200):
        y = jitter(x)
        assert float(y.min()) == pytest.approx(lo, abs=1e-5)
        assert float(y.max()) == pytest.approx(hi, abs=1e-5)
        v = (y - lo) / (hi - lo)
        g = math.log(float(v.flatten()[(u.flatten() - 0.5).abs().argmin()])) / math.log(mid)
        torch.testing.assert_close(v, u**g, atol=2e-5, rtol=0)
        gammas.append(g)
    assert min(gammas) >= 0.5 - 1e-3 and max(gammas) <= 1.5 + 1e-3
    assert min(gammas) < 0.7 and max(gammas) > 1.3


def test_gaussian_noise_has_the_requested_spread():
    y = RandGaussianNoise(std=0.2, seed=0)(torch.full((4, 64, 64), 3.0))
    assert float((y - 3.0).mean()) == pytest.approx(0.0, abs=0.01)
    assert float((y - 3.0).std()) == pytest.approx(0.2, rel=0.03)
    x = _image()
    assert torch.equal(RandGaussianNoise(std=0.2, prob=0.0)(x), x)


def test_scale_intensity_range_is_linear():
    x = torch.tensor([[[-1.0, 0.0, 2.0, 4.0, 5.0]]])
    expected = torch.tensor([[[-0.25, 0.0, 0.5, 1.0, 1.25]]])
    torch.testing.assert_close(ScaleIntensityRange(0.0, 4.0)(x), expected)
    clipped = ScaleIntensityRange(0.0, 4.0, clip=True)(x)
    torch.testing.assert_close(clipped, expected.clamp(0.0, 1.0))


# --------------------------------------------------------------------------- flips


@pytest.mark.parametrize("axis", [1, (1,), (0, 1)])
def test_column_flips_are_refused_by_default(axis):
    with pytest.raises(ValueError, match="allow_laterality_change=True"):
        RandFlip(spatial_axis=axis)


def test_row_flips_are_allowed_and_column_flips_need_consent():
    x = _image((3, 4, 5))
    assert torch.equal(RandFlip(0, prob=1.0)(x), x.flip(-2))
    assert torch.equal(RandFlip(0, prob=0.0)(x), x)
    mirrored = RandFlip(1, prob=1.0, allow_laterality_change=True)(x)
    assert torch.equal(mirrored, x.flip(-1))


def test_a_patient_mirror_flips_frontal_and_axial_but_not_lateral():
    x = _image((3, 4, 5))  # frontal, lateral, axial
    flip = RandFlip(1, prob=1.0, channels=(0, 2), allow_laterality_change=True)
    y = flip(x)
    assert torch.equal(y[0], x[0].flip(-1))
    assert torch.equal(y[1], x[1])
    assert torch.equal(y[2], x[2].flip(-1))


@pytest.mark.parametrize("kind", ["drr", "patches"])
def test_default_training_transform_never_mirrors(kind):
    x = torch.zeros(3, 32, 32)
    x[:, :, :12] = 1.0  # bright on the image's left
    transform = default_train_transform(kind, max_degrees=5.0)
    assert not any(isinstance(t, RandFlip) for t in transform.transforms)
    for seed in range(40):
        y = transform(x, generator=torch.Generator().manual_seed(seed))
        assert float(y[:, :, :12].mean()) > float(y[:, :, 20:].mean()) + 0.5


# --------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("kind", ["drr", "patches"])
def test_same_seed_same_augmentation(kind):
    x = _image((5, 24, 24))
    a = default_train_transform(kind, seed=7)(x)
    b = default_train_transform(kind, seed=7)(x)
    c = default_train_transform(kind, seed=8)(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_a_call_generator_takes_precedence_and_reproduces():
    x = _image()
    t = default_train_transform("patches", seed=0)
    a = t(x, generator=torch.Generator().manual_seed(5))
    b = default_train_transform("patches", seed=99)(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_set_random_state_restarts_the_stream():
    x = _image()
    t = Compose([RandRotate(5.0), RandIntensityJitter()]).set_random_state(3)
    first = [t(x) for _ in range(3)]
    t.set_random_state(3)
    again = [t(x) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])


def test_a_pickled_transform_continues_the_same_stream():
    x = _image()
    t = default_train_transform("drr", seed=4)
    t(x)
    copy = pickle.loads(pickle.dumps(t))
    assert torch.equal(t(x), copy(x))


def test_the_global_generator_is_used_without_a_seed():
    x = _image()
    t = default_train_transform("drr")
    torch.manual_seed(11)
    a = t(x)
    torch.manual_seed(11)
    assert torch.equal(t(x), a)


# --------------------------------------------------------------------------- deterministic


def test_eval_transform_converts_and_is_not_random():
    t = default_eval_transform("drr")
    assert not t.is_random
    y = t(np.arange(12, dtype=np.int16).reshape(1, 3, 4))
    assert y.dtype == torch.float32 and y.is_contiguous()
    assert y.flatten().tolist() == list(range(12))


def test_non_finite_images_are_rejected():
    x = _image()
    x[0, 1, 2] = float("nan")
    x[1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="2 non-finite"):
        EnsureFloat32()(x)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda: default_train_transform("ct"), "kind must be one of", id="kind"),
        pytest.param(lambda: RandRotate(-1.0), "max_degrees", id="negative angle"),
        pytest.param(lambda: RandRotate(5.0, padding_mode="wrap"), "padding_mode", id="padding"),
        pytest.param(lambda: RandIntensityJitter(scale=1.0), "scale", id="scale 1"),
        pytest.param(lambda: RandIntensityJitter(gamma=1.5), "gamma", id="gamma"),
        pytest.param(lambda: RandIntensityJitter(prob=1.5), "prob", id="prob"),
        pytest.param(lambda: RandGaussianNoise(std=-0.1), "std", id="std"),
        pytest.param(lambda: RandFlip(2), "spatial_axis", id="axis"),
        pytest.param(lambda: RandRotate(seed=-1), "seed", id="seed"),
        pytest.param(lambda: EnsureFloat32()(np.zeros(5)), r"\(\.\.\., H, W\)", id="1-D"),
        pytest.param(lambda: ScaleIntensityRange(1.0, 1.0), "a_min must be < a_max", id="range"),
    ],
)
def test_bad_settings_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mask_vertebral_body_blanks_the_margin_and_keeps_the_frame():
    from fracrisk.imaging.transforms import MaskVertebralBody

    image = torch.arange(2 * 26 * 26, dtype=torch.float32).reshape(2, 26, 26) + 1
    masked = MaskVertebralBody(margin=0.15)(image)
    # 26 px span 1.3 frames: pixel centres t = -0.15 + 1.3 (i + 0.5) / 26, inside for i in 3..22.
    inside = torch.zeros(26, dtype=torch.bool)
    inside[3:23] = True
    keep = inside[:, None] & inside[None, :]
    assert torch.equal(masked[:, keep], image[:, keep])
    assert (masked[:, ~keep] == 0).all()
    assert torch.equal(MaskVertebralBody(margin=0.0)(image), image)
    with pytest.raises(ValueError, match="margin"):
        MaskVertebralBody(margin=-1.0)
