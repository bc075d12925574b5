"""The lumbar spine phantom: anatomy, exact keypoints, deformities, density and texture signals."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from fracrisk.simulate.spine import (
    GENANT_HEIGHT_LOSS,
    LateralRadiograph,
    SpineVolume,
    lateral_radiograph,
    spine_volume,
)

NO_FRACTURE = {"genant_grades": (0,) * 5, "deformity_types": ("none",) * 5}


def make(seed=0, *, bmd=0.8, z=0.0, bmi=27.0, sex="F", **kwargs) -> SpineVolume:
    args = {**NO_FRACTURE, **kwargs}
    return spine_volume(
        femoral_neck_bmd=bmd, z=z, bmi=bmi, sex=sex, rng=np.random.default_rng(seed), **args
    )


def body_rois(xray: LateralRadiograph, fraction: float = 0.3):
    """Square ROIs in the middle of each vertebral body, from the keypoints."""
    rois = []
    for quad in xray.keypoints:
        centre = quad.mean(0)
        side = min(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[0] - quad[1]))
        half = fraction * side
        rows = slice(int(np.ceil(centre[1] - half)), int(np.floor(centre[1] + half)) + 1)
        cols = slice(int(np.ceil(centre[0] - half)), int(np.floor(centre[0] + half)) + 1)
        rois.append((rows, cols))
    return rois


def texture_fineness(xray: LateralRadiograph) -> float:
    """Share of fine (< ~1 px) against mid-scale (~1-4 px) texture in the body ROIs.

    A scale ratio, so nearly free of the texture's amplitude (which follows BMD): it
    rises as the trabecular structure gets finer (higher z).
    """
    image = xray.image.astype(np.float64)
    g1, g4 = ndimage.gaussian_filter(image, 1.0), ndimage.gaussian_filter(image, 4.0)
    fine, mid = image - g1, g1 - g4
    return float(np.mean([fine[roi].std() / mid[roi].std() for roi in body_rois(xray)]))


def heights(xray: LateralRadiograph, level: int) -> tuple[float, float]:
    """Anterior and posterior body heights (pixels) of one vertebra from its keypoints."""
    a_s, p_s, p_i, a_i = xray.keypoints[level]
    return float(np.linalg.norm(a_s - a_i)), float(np.linalg.norm(p_s - p_i))


def middle_height(xray: LateralRadiograph, level: int) -> float:
    """Distance (pixels) between the two endplate lines (the brightest features) along the
    body's axis through its centre."""
    a_s, p_s, p_i, a_i = xray.keypoints[level]
    top, bottom = (a_s + p_s) / 2, (a_i + p_i) / 2
    centre = (top + bottom) / 2
    t = np.linspace(-0.7, 0.7, 561)  # in units of the corner height, 0 at the centre
    line = centre[None, :] + t[:, None] * (bottom - top)
    profile = ndimage.map_coordinates(xray.image, [line[:, 1], line[:, 0]], order=1)
    upper = t[t < 0][np.argmax(profile[t < 0])]
    lower = t[t > 0][np.argmax(profile[t > 0])]
    return float((lower - upper) * np.linalg.norm(bottom - top))


@pytest.fixture(scope="module")
def normal():
    spine = make(0)
    return spine, lateral_radiograph(spine)


def test_shapes_dtypes_and_spacing(normal):
    spine, xray = normal
    assert spine.volume_hu.shape == (176, 96, 80) and spine.volume_hu.dtype == np.int16
    assert spine.spacing == (1.0, 1.0, 1.0)
    assert spine.corners.shape == (5, 4, 2)
    assert xray.image.shape == (176, 96) and xray.image.dtype == np.float32
    assert xray.pixel_spacing == (1.0, 1.0)
    assert xray.keypoints.shape == (5, 4, 2)
    assert np.isfinite(xray.image).all() and xray.image.min() >= 0
    # Air behind the back, soft tissue, bone: a plausible HU range.
    assert spine.volume_hu.min() < -900 and spine.volume_hu.max() > 600


def test_same_seed_same_spine_other_seed_other_spine(normal):
    spine, xray = normal
    again = make(0)
    np.testing.assert_array_equal(again.volume_hu, spine.volume_hu)
    np.testing.assert_array_equal(again.corners, spine.corners)
    np.testing.assert_array_equal(lateral_radiograph(again).image, xray.image)
    other = make(1)
    assert not np.array_equal(other.volume_hu, spine.volume_hu)
    assert not np.allclose(other.corners, spine.corners)


def test_five_vertebral_bodies_along_the_column(normal):
    """Along the curve through the body centres, the radiograph alternates between bone and
    disc: exactly five bright runs, each as tall as a vertebral body."""
    _, xray = normal
    centres = xray.keypoints.mean(1)  # (col, row), L1..L5
    # Extend the polyline half a body beyond L1 and L5.
    ends = [2 * centres[0] - centres[1], 2 * centres[-1] - centres[-2]]
    path = np.concatenate([[ends[0]], centres, [ends[1]]])
    samples = np.concatenate(
        [
            a + (b - a) * t[:, None]
            for a, b in zip(path[:-1], path[1:], strict=True)
            for t in [np.linspace(0, 1, 60, endpoint=False)]
        ]
    )
    image = ndimage.gaussian_filter(xray.image.astype(np.float64), 1.0)
    profile = ndimage.map_coordinates(
        image, [samples[:, 1], samples[:, 0]], order=1, mode="nearest"
    )
    # Discs are the darkest few percent of the path, bodies most of it.
    low, high = np.percentile(profile, [5, 60])
    labels, count = ndimage.label(profile > (low + high) / 2)
    step = np.linalg.norm(np.diff(samples, axis=0), axis=1).mean()
    lengths = np.bincount(labels)[1:] * step
    assert count == 5, lengths
    assert np.all((lengths > 20) & (lengths < 36))


def test_every_corner_box_contains_bone(normal):
    spine, _ = normal
    nx = spine.volume_hu.shape[2]
    slab = spine.volume_hu[:, :, nx // 2 - 10 : nx // 2 + 10].mean(axis=2)  # +-10 mm
    for quad in spine.corners:
        centre = quad.mean(0)
        inner = centre + 0.6 * (quad - centre)  # shrink towards the centre
        lo, hi = np.floor(inner.min(0)).astype(int), np.ceil(inner.max(0)).astype(int)
        box = slab[lo[1] : hi[1], lo[0] : hi[0]]
        assert box.mean() > 100  # trabecular bone (~150 HU), not disc (80) or muscle (45)


def test_keypoints_inside_the_image_and_ordered(normal):
    _, xray = normal
    h, w = xray.image.shape
    kp = xray.keypoints
    # Inside, with room for soft tissue in front of the bodies.
    assert np.all((kp[..., 0] >= 0) & (kp[..., 0] <= w - 1 - 5))
    assert np.all((kp[..., 1] >= 0) & (kp[..., 1] <= h - 1))
    rows = kp[..., 1].mean(1)
    assert np.all(np.diff(rows) > 20)  # L1 at the top, L5 at the bottom
    # Superior corners above inferior ones; anterior corners to the right (y increases).
    assert np.all(kp[:, [0, 1], 1].max(1) < kp[:, [2, 3], 1].min(1))
    assert np.all(kp[:, [0, 3], 0].min(1) > kp[:, [1, 2], 0].max(1))
    # Bodies do not overlap: each inferior endplate's midpoint lies above the next
    # body's superior endplate midpoint, by at least a thin disc.
    assert np.all(kp[:-1, [2, 3], 1].mean(1) + 3 < kp[1:, [0, 1], 1].mean(1))


@pytest.mark.parametrize("size", [None, (352, 192)])
def test_keypoints_sit_on_the_bone_edges(size):
    spine = make(3)
    xray = lateral_radiograph(spine, size=size)
    scale = 1 if size is None else 2
    image = ndimage.map_coordinates  # bilinear sampling at (row, col)
    for a_s, p_s, p_i, a_i in xray.keypoints:
        for corner, other, along in ((a_s, p_s, a_i), (a_i, p_i, a_s)):
            inward = (other - corner) / np.linalg.norm(other - corner)  # towards posterior
            down = (along - corner) / np.linalg.norm(along - corner)  # along the wall
            base = corner + 4 * scale * down
            inside = base + 4 * scale * inward
            outside = base - 4 * scale * inward
            values = image(xray.image, [[inside[1], outside[1]], [inside[0], outside[0]]], order=1)
            # Crossing the anterior wall from soft tissue into the body: intensity rises.
            assert values[0] > values[1] + 0.02
            # The steepest rise along this line is at the keypoint's wall (within ~1.5 mm).
            t = np.linspace(-4, 4, 81) * scale
            line = base[None, :] + t[:, None] * inward
            profile = image(xray.image, [line[:, 1], line[:, 0]], order=1)
            edge = t[np.argmax(np.gradient(profile))]
            assert abs(edge) <= 1.5 * scale
    if size is not None:
        native = lateral_radiograph(spine)
        np.testing.assert_allclose(xray.keypoints, (native.keypoints + 0.5) * 2 - 0.5)
        assert xray.pixel_spacing == (0.5, 0.5)


def test_wedge_crush_and_biconcave_change_heights_as_genant_says():
    base = lateral_radiograph(make(5))
    wedge = lateral_radiograph(
        make(
            5,
            genant_grades=(3, 0, 0, 0, 0),
            deformity_types=("wedge", "none", "none", "none", "none"),
        )
    )
    crush = lateral_radiograph(
        make(
            5,
            genant_grades=(3, 0, 0, 0, 0),
            deformity_types=("crush", "none", "none", "none", "none"),
        )
    )
    biconcave = lateral_radiograph(
        make(
            5,
            genant_grades=(0, 0, 2, 0, 0),
            deformity_types=("none", "none", "biconcave", "none", "none"),
        )
    )
    loss = GENANT_HEIGHT_LOSS[3]
    ant, post = heights(base, 0)
    assert ant / post == pytest.approx(1.0, abs=0.03)
    ant, post = heights(wedge, 0)
    assert ant / post == pytest.approx(1 - loss, abs=0.03)
    # Crush: both heights fall by the Genant loss, relative to L2 of the same patient (the
    # column may be rescaled to fit the field of view).
    for k in range(2):
        fractured = heights(crush, 0)[k] / heights(crush, 1)[k]
        intact = heights(base, 0)[k] / heights(base, 1)[k]
        assert fractured / intact == pytest.approx(1 - loss, abs=0.03)
    # Biconcave: corners (anterior and posterior heights) kept, the middle collapses.
    ratio = heights(biconcave, 2)[0] / heights(biconcave, 2)[1]
    assert ratio == pytest.approx(1.0, abs=0.03)
    middle = middle_height(biconcave, 2) / middle_height(base, 2)
    assert middle == pytest.approx(1 - GENANT_HEIGHT_LOSS[2], abs=0.06)


def test_grades_and_types_are_ignored_at_grade_zero():
    a = make(7, genant_grades=(0,) * 5, deformity_types=("wedge",) * 5)
    b = make(7)
    np.testing.assert_array_equal(a.volume_hu, b.volume_hu)


def test_body_intensity_increases_with_bmd():
    means = []
    for bmd in (0.55, 0.75, 0.95, 1.1):
        xray = lateral_radiograph(make(11, bmd=bmd))
        means.append(np.mean([xray.image[roi].mean() for roi in body_rois(xray)]))
    assert np.all(np.diff(means) > 0.005)


def test_texture_separates_low_from_high_bone_quality_at_fixed_bmd():
    low = np.array([texture_fineness(lateral_radiograph(make(s, z=-2.0))) for s in range(8)])
    high = np.array([texture_fineness(lateral_radiograph(make(100 + s, z=2.0))) for s in range(8)])
    # AUC of the measure for z = +2 against z = -2 (different patients, same BMD).
    auc = np.mean(high[:, None] > low[None, :])
    assert auc >= 0.9, (low, high)


def test_texture_partial_correlation_with_z_given_bmd():
    rng = np.random.default_rng(2024)
    n = 150
    t_score = rng.normal(-1.3, 1.0, n)
    z = 0.4 * (t_score + 1.3) + np.sqrt(1 - 0.4**2) * rng.normal(size=n)
    bmd = 0.858 + 0.120 * t_score
    bmi = np.clip(rng.normal(27.3, 4.8, n), 16, 45)
    sex = np.where(rng.random(n) < 0.7, "F", "M")
    measure = np.array(
        [
            texture_fineness(
                lateral_radiograph(
                    make(1000 + i, bmd=float(bmd[i]), z=float(z[i]), bmi=float(bmi[i]), sex=sex[i])
                )
            )
            for i in range(n)
        ]
    )
    design = np.column_stack([np.ones(n), bmd])

    def residual(y):
        return y - design @ np.linalg.lstsq(design, y, rcond=None)[0]

    partial = np.corrcoef(residual(measure), residual(z))[0, 1]
    assert partial >= 0.3, partial


def test_other_shapes_and_spacings_keep_the_anatomy_inside():
    spine = make(4, shape=(96, 56, 48), spacing=2.0, sex="M")
    assert spine.volume_hu.shape == (96, 56, 48) and spine.spacing == (2.0, 2.0, 2.0)
    fov = np.array([56 * 2.0, 96 * 2.0])  # (y, z) mm
    assert np.all((spine.corners > 0) & (spine.corners < fov))
    xray = lateral_radiograph(spine)
    assert xray.image.shape == (96, 56) and xray.pixel_spacing == (2.0, 2.0)
    small = make(4, shape=(120, 64, 56))  # too small for the anatomy: it is scaled down
    fov = np.array([64.0, 120.0])
    assert np.all((small.corners > 0) & (small.corners < fov))


def test_speed():
    make(0)  # warm the texture bank
    start = time.perf_counter()
    for seed in range(20):
        lateral_radiograph(make(seed))
    per_patient = (time.perf_counter() - start) / 20
    assert per_patient < 0.15  # ~13 ms on 2 CPU cores; generous for loaded CI machines


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"genant_grades": (0, 0, 0, 0)}, "genant_grades must be 5 grades"),
        ({"genant_grades": (0, 0, 4, 0, 0)}, "genant_grades must be 5 grades"),
        (
            {"deformity_types": ("none", "none", "twisted", "none", "none")},
            "deformity_types must be 5",
        ),
        ({"genant_grades": (0, 2, 0, 0, 0)}, "L2 has Genant grade 2 but type 'none'"),
        ({"sex": "X"}, "sex must be 'F' or 'M'"),
        ({"bmd": float("nan")}, "femoral_neck_bmd must be a finite number"),
        ({"bmd": 80.0}, "femoral_neck_bmd must be in g/cm2"),
        ({"bmi": 5.0}, "bmi must be between"),
        ({"shape": (176, 96)}, "shape must be 3 sizes"),
        ({"spacing": 0.0}, "spacing must be a positive"),
    ],
)
def test_invalid_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(0, **kwargs)


def test_lateral_radiograph_checks_its_input(normal):
    spine, _ = normal
    with pytest.raises(ValueError, match="spine must hold"):
        lateral_radiograph(SpineVolume(spine.volume_hu[0], spine.spacing, spine.corners))


def test_rng_must_be_a_generator():
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        spine_volume(femoral_neck_bmd=0.8, z=0.0, bmi=27.0, sex="F", rng=0, **NO_FRACTURE)
