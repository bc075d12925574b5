"""The parallel-beam DRR renderer: closed-form line integrals, orientation, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.imaging import (
    MU_WATER_PER_MM,
    hu_to_attenuation,
    project_points,
    render_drr,
    view_geometry,
)

# Ellipsoid semi-axes (mm) along z, y, x and the bone-like HU inside it (mu = 2 mu_water).
SEMI = {"z": 9.0, "y": 7.0, "x": 11.0}
HU_INSIDE = 1000.0
MU_INSIDE = MU_WATER_PER_MM * (1 + HU_INSIDE / 1000)
# Which axis each view integrates along, and which axes are its rows and columns.
VIEW_AXES = {"frontal": ("y", "z", "x"), "lateral": ("x", "z", "y"), "axial": ("z", "y", "x")}


def _centres(n: int, spacing: float) -> np.ndarray:
    """Voxel centres in mm relative to the middle of the field of view."""
    return (np.arange(n) + 0.5) * spacing - n * spacing / 2


def _ellipsoid_volume(spacing: dict[str, float]) -> np.ndarray:
    """Air with a uniform ellipsoid centred in the field of view (binary voxelisation)."""
    n = {axis: int(round(2.4 * SEMI[axis] / spacing[axis])) for axis in "zyx"}
    z = _centres(n["z"], spacing["z"])[:, None, None]
    y = _centres(n["y"], spacing["y"])[None, :, None]
    x = _centres(n["x"], spacing["x"])[None, None, :]
    inside = (z / SEMI["z"]) ** 2 + (y / SEMI["y"]) ** 2 + (x / SEMI["x"]) ** 2 <= 1
    return np.where(inside, np.float32(HU_INSIDE), np.float32(-1000.0))


@pytest.mark.parametrize("view", ["frontal", "lateral", "axial"])
def test_ellipsoid_line_integrals_match_the_closed_form(view):
    ray, row_axis, col_axis = VIEW_AXES[view]
    # Fine along the ray (a binary voxelisation errs by at most one voxel per ray), coarse
    # across it.
    spacing = {axis: 0.5 for axis in "zyx"}
    spacing[ray] = 0.04
    volume = _ellipsoid_volume(spacing)
    image = render_drr(volume, (spacing["z"], spacing["y"], spacing["x"]), views=view)[0]
    image = image.numpy().astype(np.float64)

    rows = _centres(volume.shape["zyx".index(row_axis)], spacing[row_axis])
    if row_axis == "z":  # superior at the top
        rows = rows[::-1]
    cols = _centres(volume.shape["zyx".index(col_axis)], spacing[col_axis])
    r2 = (rows[:, None] / SEMI[row_axis]) ** 2 + (cols[None, :] / SEMI[col_axis]) ** 2
    expected = 2 * MU_INSIDE * SEMI[ray] * np.sqrt(np.clip(1 - r2, 0, None))
    interior = r2 <= 0.5
    assert interior.sum() > 100
    rel = np.abs(image[interior] - expected[interior]) / expected[interior]
    assert rel.max() < 0.01
    # Through the centre: 2 * semi-axis * mu.
    centre = np.unravel_index(np.argmin(r2), r2.shape)
    assert image[centre] == pytest.approx(2 * SEMI[ray] * MU_INSIDE, rel=0.01)
    # Outside the ellipse's shadow there is only air.
    assert np.abs(image[r2 > 1.1]).max() == 0.0


def test_orientation_of_each_view():
    """A voxel near the superior, anterior, left corner lands where the conventions say."""
    volume = np.full((6, 7, 8), -1000, dtype=np.int16)
    volume[4, 5, 6] = 0  # z index 4 of 6, y 5 of 7, x 6 of 8
    images = {
        name: render_drr(volume, (1.0, 1.0, 1.0), views=name)[0].numpy()
        for name in ("frontal", "lateral", "axial")
    }
    assert np.argwhere(images["frontal"] > 0).tolist() == [[6 - 1 - 4, 6]]
    assert np.argwhere(images["lateral"] > 0).tolist() == [[6 - 1 - 4, 5]]
    assert np.argwhere(images["axial"] > 0).tolist() == [[5, 6]]


@pytest.mark.parametrize("view", ["frontal", "lateral", "axial"])
@pytest.mark.parametrize("size", [None, (40, 26)])
def test_project_points_finds_a_voxel(view, size):
    shape, spacing = (20, 13, 16), (1.0, 2.0, 1.5)
    volume = np.full(shape, -1000, dtype=np.int16)
    index = (13, 4, 11)
    volume[index] = 3000
    image = render_drr(volume, spacing, views=view, size=size)[0].numpy()
    point = (np.array(index) + 0.5) * np.array(spacing)
    col, row = project_points(point, view, shape, spacing, size=size)
    peak = np.unravel_index(np.argmax(image), image.shape)
    assert abs(peak[0] - row) <= 0.5 and abs(peak[1] - col) <= 0.5


def test_view_geometry():
    assert view_geometry("frontal", (10, 20, 30), (1.0, 2.0, 3.0)) == ((10, 30), (1.0, 3.0))
    assert view_geometry("lateral", (2, 10, 20, 30), (1.0, 2.0, 3.0)) == ((10, 20), (1.0, 2.0))
    assert view_geometry("axial", (10, 20, 30), (1.0, 2.0, 3.0)) == ((20, 30), (2.0, 3.0))


def test_water_gives_mu_times_path_length():
    volume = np.zeros((5, 6, 7), dtype=np.int16)
    out = render_drr(volume, (1.0, 2.0, 0.5), views=("frontal", "lateral", "axial"), size=(4, 4))
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    lengths = [6 * 2.0, 7 * 0.5, 5 * 1.0]
    for image, length in zip(out, lengths, strict=True):
        assert torch.allclose(image, torch.tensor(MU_WATER_PER_MM * length), rtol=1e-5)


def test_batch_equals_per_item_and_numpy_equals_torch():
    rng = np.random.default_rng(0)
    batch = rng.normal(0, 400, size=(3, 12, 10, 10)).astype(np.float32)
    spacing = (1.0, 0.8, 1.2)
    out = render_drr(
        batch, spacing, views=("frontal", "lateral"), size=(16, 12), angles=[0, 15, -40]
    )
    assert out.shape == (3, 2, 16, 12)
    for i in range(3):
        single = render_drr(
            batch[i], spacing, views=("frontal", "lateral"), size=(16, 12), angles=[0, 15, -40][i]
        )
        torch.testing.assert_close(out[i], single)
    torch.testing.assert_close(
        render_drr(torch.from_numpy(batch), spacing, views="axial"),
        render_drr(batch, spacing, views="axial"),
    )
    # Integer volumes are accepted and give the same result as their float version.
    ints = np.round(batch).astype(np.int16)
    torch.testing.assert_close(
        render_drr(ints, spacing, views="lateral"),
        render_drr(ints.astype(np.float32), spacing, views="lateral"),
    )


def test_rotation_by_90_degrees_maps_frontal_to_lateral():
    """Rotating by +90 degrees turns the patient's left (+x) to anterior (+y): a point at
    (x, y) moves to (-y, x). The frontal view of the rotated volume therefore shows the
    original lateral view mirrored left-right (its columns run along x = -y)."""
    n = 24
    volume = np.full((10, n, n), -1000.0, dtype=np.float32)
    volume[2:5, 3:8, 14:20] = 800.0  # posterior, left block, low
    volume[5:9, 15:22, 4:7] = 300.0  # anterior, right block, high
    volume[1, 18, 18] = 2000.0
    spacing = (1.5, 0.7, 0.7)
    rotated = render_drr(volume, spacing, views="frontal", angles=90.0)[0]
    lateral = render_drr(volume, spacing, views="lateral")[0]
    torch.testing.assert_close(rotated, lateral.flip(-1), atol=1e-5, rtol=1e-5)
    # By -90 degrees (x, y) -> (y, -x): the lateral view of the rotated volume is the
    # frontal view mirrored (its columns run along y = -x); by +90 degrees it is the frontal
    # view as it is.
    frontal = render_drr(volume, spacing, views="frontal")[0]
    minus = render_drr(volume, spacing, views="lateral", angles=-90.0)[0]
    torch.testing.assert_close(minus, frontal.flip(-1), atol=1e-5, rtol=1e-5)
    plus = render_drr(volume, spacing, views="lateral", angles=90.0)[0]
    torch.testing.assert_close(plus, frontal, atol=1e-5, rtol=1e-5)
    # The asymmetric object really changes under the rotation.
    assert not torch.allclose(rotated, frontal, atol=1e-3)


def test_rotation_keeps_points_where_project_points_says():
    shape, spacing = (8, 30, 30), (1.0, 1.0, 1.0)
    volume = np.full(shape, -1000.0, dtype=np.float32)
    volume[4, 8, 21] = 5000.0
    point = (np.array([4, 8, 21]) + 0.5) * np.array(spacing)
    for angle in (30.0, 90.0, 200.0):
        image = render_drr(volume, spacing, views="frontal", angles=angle)[0].numpy()
        col, row = project_points(point, "frontal", shape, spacing, angle=angle)
        peak = np.unravel_index(np.argmax(image), image.shape)
        assert abs(peak[0] - row) <= 0.5 and abs(peak[1] - col) <= 1.0


def test_rotation_conserves_the_total_attenuation_inside_the_field():
    volume = np.full((6, 40, 40), -1000.0, dtype=np.float32)
    volume[:, 15:25, 12:22] = 500.0
    before = render_drr(volume, (1.0, 1.0, 1.0), views="axial")[0].sum()
    after = render_drr(volume, (1.0, 1.0, 1.0), views="axial", angles=33.0)[0].sum()
    assert float(after) == pytest.approx(float(before), rel=0.01)


def test_input_is_not_modified():
    volume = np.full((4, 5, 6), 300.0, dtype=np.float32)
    tensor = torch.from_numpy(volume.copy())
    render_drr(volume, (1.0, 1.0, 1.0), views="lateral", angles=10.0)
    render_drr(tensor, (1.0, 1.0, 1.0), views="lateral")
    assert (volume == 300.0).all() and bool((tensor == 300.0).all())


def test_window_maps_to_unit_interval():
    rng = np.random.default_rng(1)
    volume = rng.normal(0, 500, size=(2, 16, 16, 16)).astype(np.float32)
    raw = render_drr(volume, (1.0, 1.0, 1.0))
    lo, hi = float(raw.quantile(0.2)), float(raw.quantile(0.8))
    out = render_drr(volume, (1.0, 1.0, 1.0), window=(lo, hi))
    assert out.shape == (2, 3, 16, 16)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    middle = (raw > lo) & (raw < hi)
    torch.testing.assert_close(out[middle], (raw[middle] - lo) / (hi - lo))


def test_resampling_shape_and_constant_preserved():
    volume = np.full((20, 30, 40), 200, dtype=np.int16)
    out = render_drr(volume, (1.0, 1.0, 1.0), views=("frontal", "lateral", "axial"), size=(64, 48))
    assert out.shape == (3, 64, 48)
    small = render_drr(volume, (1.0, 1.0, 1.0), views="frontal", size=(5, 7))
    torch.testing.assert_close(small, torch.full_like(small, float(small[0, 2, 3])))


def test_gradient_flows_to_the_volume():
    volume = torch.zeros((1, 6, 5, 4), requires_grad=True)
    out = render_drr(
        volume, (1.0, 1.0, 1.0), views=("frontal", "lateral", "axial"), size=(6, 6), angles=10.0
    )
    out.sum().backward()
    assert volume.grad is not None and torch.isfinite(volume.grad).all()
    assert float(volume.grad.abs().sum()) > 0


def test_hu_to_attenuation():
    hu = np.array([-2000, -1000, 0, 1000], dtype=np.int16)
    mu = hu_to_attenuation(hu)
    assert mu.dtype == np.float32
    np.testing.assert_allclose(mu, [0.0, 0.0, MU_WATER_PER_MM, 2 * MU_WATER_PER_MM], rtol=1e-6)
    mu64 = hu_to_attenuation(hu.astype(np.float64), mu_water=0.02)
    assert mu64.dtype == np.float64
    np.testing.assert_allclose(mu64, [0.0, 0.0, 0.02, 0.04])
    t = hu_to_attenuation(torch.tensor([-1000.0, 500.0]))
    assert isinstance(t, torch.Tensor)
    torch.testing.assert_close(t, torch.tensor([0.0, 1.5 * MU_WATER_PER_MM]))
    with pytest.raises(ValueError, match="mu_water"):
        hu_to_attenuation(hu, mu_water=-1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"volume_hu": np.zeros((4, 4))}, "volume_hu must have 3"),
        ({"volume_hu": np.zeros((1, 1, 4, 4, 4))}, "volume_hu must have 3"),
        ({"volume_hu": np.zeros((0, 4, 4))}, "volume_hu must not be empty"),
        ({"volume_hu": np.array([["a"]], dtype=object)}, "volume_hu must be numeric"),
        ({"spacing": (1.0, 1.0)}, "spacing must be 3 positive"),
        ({"spacing": (1.0, 0.0, 1.0)}, "spacing must be 3 positive"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing must be 3 positive"),
        ({"spacing": 1.0}, "spacing must be 3 positive"),
        (
            {"views": ("frontal", "sagittal")},
            "unknown view 'sagittal'.*'frontal', 'lateral', 'axial'",
        ),
        ({"views": ()}, "views must name at least one"),
        ({"size": (0, 4)}, "size must be None or two positive integers"),
        ({"size": (4,)}, "size must be None or two positive integers"),
        ({"window": (1.0, 1.0)}, "window must be None or"),
        ({"angles": [10.0, 20.0]}, "angles must be finite degrees"),
        ({"angles": float("nan")}, "angles must be finite degrees"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    args = {"volume_hu": np.zeros((4, 4, 4)), "spacing": (1.0, 1.0, 1.0)}
    args.update(kwargs)
    volume, spacing = args.pop("volume_hu"), args.pop("spacing")
    with pytest.raises(ValueError, match=match):
        render_drr(volume, spacing, **args)


def test_views_of_different_shapes_need_a_size():
    volume = np.zeros((4, 5, 6))
    with pytest.raises(ValueError, match="pass size"):
        render_drr(volume, (1.0, 1.0, 1.0))
    assert render_drr(volume, (1.0, 1.0, 1.0), size=(8, 8)).shape == (3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(2)
    volume = torch.from_numpy(rng.normal(0, 300, size=(2, 16, 20, 24)).astype(np.float32))
    kwargs = {"views": ("frontal", "lateral", "axial"), "size": (32, 32), "angles": [5.0, -20.0]}
    cpu = render_drr(volume, (1.0, 0.9, 1.1), **kwargs)
    gpu = render_drr(volume.cuda(), (1.0, 0.9, 1.1), **kwargs)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
