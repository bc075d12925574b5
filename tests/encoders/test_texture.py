"""Texture features: what each one measures, on images where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.encoders.texture import GLCM_PROPERTIES, TextureFeatures


def _images(rng, n=6, channels=2, size=32, noise=0.1, level=1.0):
    return level + noise * rng.standard_normal((n, channels, size, size))


def test_names_and_shape():
    features = TextureFeatures(["frontal", "lateral"], distances=(1, 3))
    per_channel = 9 + 4 + 10 + 2 * len(GLCM_PROPERTIES)
    assert len(features.feature_names_) == 2 * per_channel
    assert features.feature_names_[0] == "frontal_mean"
    assert "lateral_glcm_contrast_d3" in features.feature_names_
    rng = np.random.default_rng(0)
    x = _images(rng)
    out = features.fit(x).transform(torch.from_numpy(x))
    assert out.shape == (6, 2 * per_channel) and np.isfinite(out).all()


def test_first_order_features_are_the_statistics_they_name():
    rng = np.random.default_rng(1)
    x = _images(rng, n=3, channels=1)
    features = TextureFeatures(["L1"]).fit(x)
    out = dict(zip(features.feature_names_, features.transform(x)[0], strict=True))
    assert out["L1_mean"] == pytest.approx(x[0, 0].mean())
    assert out["L1_std"] == pytest.approx(x[0, 0].std())
    assert out["L1_p50"] == pytest.approx(np.median(x[0, 0]))


def test_denser_images_have_a_higher_mean_and_coarser_noise_more_contrast():
    rng = np.random.default_rng(2)
    features = TextureFeatures(["v"])
    smooth = _images(rng, n=4, channels=1, noise=0.05)
    rough = _images(rng, n=4, channels=1, noise=0.4)
    dense = smooth + 0.5
    features.fit(np.concatenate([smooth, rough, dense]))
    names = features.feature_names_
    f = {key: features.transform(x) for key, x in (("s", smooth), ("r", rough), ("d", dense))}
    mean, contrast = names.index("v_mean"), names.index("v_glcm_contrast_d1")
    assert f["d"][:, mean].min() > f["s"][:, mean].max()
    assert f["r"][:, contrast].min() > f["s"][:, contrast].max()
    local = names.index("v_local_variance")
    assert f["r"][:, local].min() > f["s"][:, local].max()


def test_the_top_hat_sees_small_bright_structures_and_ignores_slow_background():
    """Thin bright lines (cortices) on a ramp (soft tissue) and the same on a brighter ramp."""
    ramp = np.linspace(0.0, 2.0, 32)[None, :] * np.ones((32, 1))
    lines = ramp.copy()
    lines[8:24, 10:12] += 1.0
    lines[8:24, 20:22] += 1.0
    images = np.stack([ramp, lines, lines + 3.0])[:, None]
    features = TextureFeatures(["v"]).fit(images)
    names = features.feature_names_
    f = features.transform(images)
    top, median = names.index("v_tophat_p99"), names.index("v_tophat_p50")
    assert f[0, median] == pytest.approx(0.0, abs=1e-12)  # a ramp has no small structure
    assert f[0, top] < 0.25  # (but for the image's edges, where the opening is one-sided)
    assert f[1, top] > 0.9  # the lines, 1 above the ramp
    assert f[2, top] == pytest.approx(f[1, top])  # a uniform offset changes nothing
    assert f[2, names.index("v_p99")] == pytest.approx(f[1, names.index("v_p99")] + 3.0)


def test_a_constant_image_gives_finite_features():
    features = TextureFeatures(["v"]).fit(np.ones((2, 1, 8, 8)))
    assert np.isfinite(features.transform(np.ones((1, 1, 8, 8)))).all()


def test_round_trip_and_errors():
    rng = np.random.default_rng(3)
    x = _images(rng)
    features = TextureFeatures(["a", "b"]).fit(x)
    again = TextureFeatures.from_dict(features.to_dict())
    np.testing.assert_array_equal(again.transform(x), features.transform(x))
    with pytest.raises(RuntimeError, match="not fitted"):
        TextureFeatures(["a", "b"]).transform(x)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        features.transform(x[:, :1])
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        features.transform(bad)
    with pytest.raises(ValueError, match="levels"):
        TextureFeatures(["a"], levels=1)
