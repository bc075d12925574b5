"""The cone-beam DRR renderer: closed-form chords, the parallel limit, the two code paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.imaging import (
    MU_WATER_PER_MM,
    ConeBeam,
    DRRCache,
    ParallelBeam,
    detector_rays,
    drr_cache_key,
    project_points,
    render_drr,
    resolve_geometry,
)

HU_INSIDE = 1000.0
MU_INSIDE = MU_WATER_PER_MM * (1 + HU_INSIDE / 1000)
SEMI = np.array([9.0, 7.0, 11.0])  # ellipsoid semi-axes (mm) along z, y, x
# A strongly diverging beam: magnification 2 at the isocentre, rays up to ~10 degrees off axis.
STEEP = ConeBeam(source_to_detector=120.0, source_to_isocentre=60.0)


def _ellipsoid(spacing, supersample: int = 3) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Air with a uniform ellipsoid centred in the field of view, with partial-volume voxels.

    Each voxel holds the fraction of ``supersample**3`` sub-voxel centres inside the
    ellipsoid, so the voxelised surface is close to the true one in every direction.
    """
    spacing = np.asarray(spacing, dtype=float)
    shape = tuple(int(n) for n in np.round(2.4 * SEMI / spacing))
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    fraction = np.zeros(shape)
    axes = [(np.arange(n) + 0.5) * s - n * s / 2 for n, s in zip(shape, spacing, strict=True)]
    for dz in offsets:
        for dy in offsets:
            for dx in offsets:
                z = (axes[0] + dz * spacing[0])[:, None, None] / SEMI[0]
                y = (axes[1] + dy * spacing[1])[None, :, None] / SEMI[1]
                x = (axes[2] + dx * spacing[2])[None, None, :] / SEMI[2]
                fraction += z**2 + y**2 + x**2 <= 1
    fraction /= supersample**3
    # mu = MU_INSIDE * fraction  <=>  HU = 1000 (mu / mu_water - 1).
    volume = 1000.0 * (MU_INSIDE * fraction / MU_WATER_PER_MM - 1.0)
    return volume.astype(np.float32), shape


def _chord_lengths(start, end, centre, semi=SEMI) -> np.ndarray:
    """Length (mm) of each segment start -> end inside the ellipsoid: a quadratic's roots."""
    p = (start - centre) / semi
    d = (end - start) / semi
    a = (d**2).sum(-1)
    b = 2 * (p * d).sum(-1)
    c = (p**2).sum(-1) - 1
    disc = np.clip(b**2 - 4 * a * c, 0, None)
    length_param = np.sqrt(disc) / a  # t2 - t1 in units of the segment
    return length_param * np.linalg.norm(end - start, axis=-1)


@pytest.mark.parametrize("view", ["frontal", "lateral", "axial"])
def test_line_integrals_match_the_chords_through_an_ellipsoid(view):
    spacing = (0.3, 0.3, 0.3)
    volume, shape = _ellipsoid(spacing)
    size = (48, 56)
    image = render_drr(volume, spacing, views=view, size=size, geometry=STEEP)[0].numpy()
    start, end = detector_rays(view, shape, spacing, size=size, geometry=STEEP)
    centre = np.asarray(shape) * np.asarray(spacing) / 2
    expected = MU_INSIDE * _chord_lengths(start, end, centre)
    deepest = expected.max()
    interior = expected > 0.5 * deepest
    assert interior.sum() > 300
    rel = np.abs(image[interior] - expected[interior]) / expected[interior]
    assert rel.max() < 0.01
    # The beam diverges: the shadow is larger than the ellipsoid's parallel projection.
    assert (expected > 0).sum() > (image.shape[0] * image.shape[1]) * 0.3
    # Rays that miss the ellipsoid grown by 3 voxels (partial volume and bilinear reach)
    # cross only air.
    missed = _chord_lengths(start, end, centre, SEMI + 0.9) == 0
    assert missed.sum() > 100 and np.abs(image[missed]).max() == 0.0


def test_a_distant_source_gives_the_parallel_projection():
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 300, size=(14, 18, 22)).astype(np.float32)
    spacing = (1.0, 0.8, 1.2)
    far = ConeBeam(source_to_detector=1e7 + 1.0, source_to_isocentre=1e7)
    for view, size in [("frontal", (14, 22)), ("lateral", (14, 18)), ("axial", (18, 22))]:
        cone = render_drr(volume, spacing, views=view, geometry=far)
        parallel = render_drr(volume, spacing, views=view)
        assert cone.shape == parallel.shape == (1, *size)
        torch.testing.assert_close(cone, parallel, rtol=1e-4, atol=1e-5)


def test_magnification_places_near_and_far_points():
    """A voxel near the source is magnified more than one near the detector."""
    shape, spacing = (9, 41, 41), (1.0, 1.0, 1.0)
    volume = np.full(shape, -1000, dtype=np.int16)
    near_source, near_detector = (4, 36, 30), (4, 4, 30)  # frontal: source anterior (+y)
    volume[near_source] = volume[near_detector] = 3000
    image = render_drr(volume, spacing, views="frontal", geometry=STEEP)[0].numpy()
    centre_col = (shape[2] - 1) / 2
    cols = {}
    for name, index in [("source", near_source), ("detector", near_detector)]:
        point = (np.array(index) + 0.5) * np.array(spacing)
        col, row = project_points(point, "frontal", shape, spacing, geometry=STEEP)
        window = image[int(round(row)) - 2 : int(round(row)) + 3]
        assert window.max() > 0  # the row the point projects to shows it
        cols[name] = col
    offset = 30 + 0.5 - shape[2] / 2  # mm right of the isocentre, for both voxels
    depth_source, depth_detector = -(36.5 - 20.5), -(4.5 - 20.5)
    for name, depth in [("source", depth_source), ("detector", depth_detector)]:
        expected = offset * 120.0 / (60.0 + depth) / (1.0 * 41 * 2.0 / 41) + centre_col
        assert cols[name] == pytest.approx(expected)
    assert cols["source"] - centre_col > cols["detector"] - centre_col


@pytest.mark.parametrize("view", ["frontal", "lateral", "axial"])
@pytest.mark.parametrize("size", [None, (30, 24)])
def test_project_points_finds_a_voxel(view, size):
    shape, spacing = (20, 14, 16), (1.0, 2.0, 1.5)
    volume = np.full(shape, -1000, dtype=np.int16)
    index = (13, 4, 11)
    volume[index] = 3000
    geometry = ConeBeam(source_to_detector=90.0, source_to_isocentre=40.0)
    image = render_drr(volume, spacing, views=view, size=size, geometry=geometry)[0].numpy()
    point = (np.array(index) + 0.5) * np.array(spacing)
    col, row = project_points(point, view, shape, spacing, size=size, geometry=geometry)
    # The centre of mass of the blob is where the point projects.
    rows, cols = np.indices(image.shape)
    total = image.sum()
    assert abs((rows * image).sum() / total - row) < 0.35
    assert abs((cols * image).sum() / total - col) < 0.35


@pytest.mark.parametrize(
    ("views", "size", "angles", "spacing"),
    [
        (("frontal", "lateral", "axial"), (20, 24), None, (1.0, 1.0, 1.0)),
        (("lateral",), None, [12.0, -30.0], (1.2, 0.7, 0.9)),
        (("frontal", "axial"), (9, 7), 5.0, (0.5, 1.0, 2.0)),
    ],
)
def test_compiled_kernel_equals_grid_sample(views, size, angles, spacing):
    rng = np.random.default_rng(1)
    volume = torch.from_numpy(rng.normal(0, 400, size=(2, 16, 16, 16)).astype(np.float32))
    geometry = ConeBeam(source_to_detector=70.0, source_to_isocentre=30.0)
    kwargs = {"views": views, "size": size, "angles": angles, "geometry": geometry}
    kernel = render_drr(volume, spacing, **kwargs)
    traced = render_drr(volume.clone().requires_grad_(True), spacing, **kwargs)
    assert traced.requires_grad
    torch.testing.assert_close(kernel, traced.detach(), rtol=1e-5, atol=1e-5)
    # Batched equals one by one.
    for i in range(2):
        single_angles = angles if not isinstance(angles, list) else angles[i]
        torch.testing.assert_close(
            render_drr(volume[i], spacing, **{**kwargs, "angles": single_angles}), kernel[i]
        )


def test_gradient_flows_to_the_volume():
    volume = torch.zeros((6, 6, 6), requires_grad=True)
    image = render_drr(volume, (1.0, 1.0, 1.0), views="frontal", geometry=STEEP)
    image.sum().backward()
    assert volume.grad is not None and torch.isfinite(volume.grad).all()
    # Every voxel of the middle slice lies on some ray.
    assert (volume.grad[:, 3] > 0).all()


def test_geometry_rotation_adds_to_the_angles():
    rng = np.random.default_rng(3)
    volume = rng.normal(0, 300, size=(16, 16, 16)).astype(np.float32)
    rotated = ConeBeam(source_to_detector=80.0, source_to_isocentre=40.0, rotation=20.0)
    upright = ConeBeam(source_to_detector=80.0, source_to_isocentre=40.0)
    torch.testing.assert_close(
        render_drr(volume, (1, 1, 1), geometry=rotated, angles=10.0),
        render_drr(volume, (1, 1, 1), geometry=upright, angles=30.0),
    )
    torch.testing.assert_close(
        render_drr(volume, (1, 1, 1), geometry=ParallelBeam(rotation=-15.0)),
        render_drr(volume, (1, 1, 1), angles=-15.0),
    )


def test_bfloat16_is_close_to_float32():
    rng = np.random.default_rng(4)
    volume = rng.normal(0, 300, size=(32, 32, 32)).astype(np.float32)
    for geometry in ("parallel", "cone"):
        full = render_drr(volume, (1, 1, 1), geometry=geometry, size=(40, 40))
        half = render_drr(volume, (1, 1, 1), geometry=geometry, size=(40, 40), dtype=torch.bfloat16)
        assert half.dtype == torch.bfloat16
        rel = ((half.float() - full).norm() / full.norm()).item()
        assert rel < 0.005


def test_detector_spacing_sets_the_field_of_view():
    volume = np.zeros((10, 10, 10), dtype=np.float32)  # water
    wide = ConeBeam(source_to_detector=100.0, source_to_isocentre=50.0, detector_spacing=4.0)
    image = render_drr(volume, (1, 1, 1), views="frontal", size=(11, 11), geometry=wide)[0]
    # 11 pixels of 4 mm at the detector = 22 mm at the isocentre: the 10 mm cube is
    # surrounded by air; the central ray crosses 10 mm of water.
    assert image[0, 0] == 0 and image[5, 5] == pytest.approx(10 * MU_WATER_PER_MM, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"source_to_detector": 100.0, "source_to_isocentre": 100.0}, "must be shorter"),
        ({"source_to_detector": -1.0}, "source_to_detector must be a positive"),
        ({"source_to_isocentre": float("nan")}, "source_to_isocentre must be a positive"),
        ({"detector_spacing": (1.0, 2.0, 3.0)}, "detector_spacing must be one or two"),
        ({"detector_spacing": 0.0}, "detector_spacing must be a positive"),
        ({"rotation": float("inf")}, "rotation must be a finite angle"),
    ],
)
def test_cone_beam_rejects_impossible_geometry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConeBeam(**kwargs)


def test_source_inside_the_volume_is_an_error():
    with pytest.raises(ValueError, match="puts the source inside the volume"):
        render_drr(
            np.zeros((8, 200, 8)),
            (1, 1, 1),
            views="frontal",
            geometry=ConeBeam(source_to_detector=300.0, source_to_isocentre=90.0),
        )


def test_geometry_names_and_dicts():
    assert resolve_geometry("cone") == ConeBeam()
    assert resolve_geometry("parallel") == ParallelBeam()
    custom = ConeBeam(source_to_detector=900.0, source_to_isocentre=600.0, detector_spacing=0.5)
    assert resolve_geometry(custom.to_dict()) == custom
    assert custom.detector_spacing == (0.5, 0.5) and custom.magnification == 1.5
    with pytest.raises(ValueError, match="geometry must be 'parallel', 'cone'"):
        resolve_geometry("fan")
    with pytest.raises(ValueError, match="invalid cone geometry"):
        resolve_geometry({"type": "cone", "focal_length": 3})
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.bfloat16"):
        render_drr(np.zeros((4, 4, 4)), (1, 1, 1), dtype=torch.float64)


def test_cache_keys_follow_the_geometry(tmp_path):
    volume = np.zeros((6, 6, 6), dtype=np.int16)
    key = drr_cache_key
    assert key(volume, (1, 1, 1)) == key(volume, (1, 1, 1), geometry="parallel")
    assert key(volume, (1, 1, 1), geometry="cone") == key(volume, (1, 1, 1), geometry=ConeBeam())
    assert key(volume, (1, 1, 1), geometry="cone") != key(volume, (1, 1, 1))
    cache = DRRCache(tmp_path)
    cone = cache.render(volume, (1, 1, 1), geometry="cone", size=(8, 8))
    parallel = cache.render(volume, (1, 1, 1), size=(8, 8))
    assert cache.misses == 2 and not torch.equal(cone, parallel)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_in_float32_and_bfloat16():
    rng = np.random.default_rng(2)
    volume = torch.from_numpy(rng.normal(0, 300, size=(2, 16, 20, 24)).astype(np.float32))
    kwargs = {"size": (32, 32), "angles": [5.0, -20.0], "geometry": "cone"}
    cpu = render_drr(volume, (1.0, 0.9, 1.1), **kwargs)
    gpu = render_drr(volume.cuda(), (1.0, 0.9, 1.1), **kwargs)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    half = render_drr(volume.cuda(), (1.0, 0.9, 1.1), dtype=torch.bfloat16, **kwargs)
    assert half.dtype == torch.bfloat16
    assert ((half.float().cpu() - cpu).norm() / cpu.norm()).item() < 0.005


def _cube(seed: int = 5, n: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 300, size=(n, n, n)).astype(np.float32)


def test_a_tilt_of_90_degrees_turns_the_frontal_view_into_the_axial_view():
    """Tilt: anterior (+y) towards superior (+z). After +90 degrees, projecting along y sums
    what was along z: the frontal view is the original axial view, superior (was anterior)
    at the top."""
    volume = _cube()
    tilted = render_drr(volume, (1, 1, 1), views="frontal", angles=(0.0, 90.0, 0.0))
    axial = render_drr(volume, (1, 1, 1), views="axial")
    torch.testing.assert_close(tilted, axial.flip(-2), rtol=1e-4, atol=1e-4)


def test_a_roll_of_90_degrees_turns_the_axial_view_into_the_lateral_view():
    """Roll: superior (+z) towards the patient's left (+x). After +90 degrees, projecting
    along z sums what was along x, and the image columns (x) run along the old z."""
    volume = _cube(6)
    rolled = render_drr(volume, (1, 1, 1), views="axial", angles=(0.0, 0.0, 90.0))
    lateral = render_drr(volume, (1, 1, 1), views="lateral")
    torch.testing.assert_close(rolled, lateral.flip(-2).transpose(-1, -2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("angles", [(0.0, 25.0, 0.0), (0.0, 0.0, -30.0), (15.0, -20.0, 10.0)])
@pytest.mark.parametrize("geometry", ["parallel", "cone"])
def test_project_points_follows_three_axis_rotations(angles, geometry):
    shape, spacing = (30, 30, 30), (1.0, 1.0, 1.0)
    volume = np.full(shape, -1000, dtype=np.int16)
    index = (20, 8, 11)
    volume[index] = 3000
    point = (np.array(index) + 0.5) * np.array(spacing)
    for view in ("frontal", "lateral", "axial"):
        image = render_drr(volume, spacing, views=view, angles=angles, geometry=geometry)[0]
        image = image.numpy()
        col, row = project_points(point, view, shape, spacing, angle=angles, geometry=geometry)
        rows, cols = np.indices(image.shape)
        total = image.sum()
        assert abs((rows * image).sum() / total - row) < 0.15
        assert abs((cols * image).sum() / total - col) < 0.15


def test_a_turn_alone_takes_the_fast_slice_path_with_the_same_result():
    volume = torch.from_numpy(np.stack([_cube(7), _cube(8)]))
    turned = render_drr(volume, (1.0, 0.8, 1.2), angles=[20.0, -35.0], size=(12, 12))
    # A negligible tilt sends the same turn through the trilinear 3D resampling.
    angles = np.array([[20.0, 1e-9, 0.0], [-35.0, 1e-9, 0.0]])
    general = render_drr(volume, (1.0, 0.8, 1.2), angles=angles, size=(12, 12))
    torch.testing.assert_close(turned, general, rtol=1e-5, atol=1e-5)


def test_angles_accept_triples_and_per_item_turns():
    volume = np.stack([_cube(9), _cube(10), _cube(11)])
    per_item = render_drr(volume, (1, 1, 1), views="frontal", angles=[5.0, 10.0, 15.0])
    triples = np.array([[5.0, 0, 0], [10.0, 0, 0], [15.0, 0, 0]])
    torch.testing.assert_close(
        per_item, render_drr(volume, (1, 1, 1), views="frontal", angles=triples)
    )
    one = render_drr(volume[0], (1, 1, 1), views="frontal", angles=(5.0, 10.0, -5.0))
    geometry = ParallelBeam(rotation=(5.0, 10.0, -5.0))
    torch.testing.assert_close(one, render_drr(volume[0], (1, 1, 1), "frontal", geometry=geometry))
    assert geometry.rotation == (5.0, 10.0, -5.0) and ParallelBeam(rotation=3).rotation == (
        3.0,
        0.0,
        0.0,
    )
    assert resolve_geometry(ConeBeam(rotation=(1, 2, 3)).to_dict()).rotation == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match=r"\(z, x, y\) triples of shape \(3, 3\)"):
        render_drr(volume, (1, 1, 1), angles=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="three \\(z, x, y\\)"):
        ParallelBeam(rotation=(1.0, 2.0))


def test_rotated_rays_pass_through_the_points_that_project_onto_their_pixel():
    """detector_rays with a rotation gives the rays through the unrotated volume: the ray of
    the pixel where project_points puts a point passes through that point (project_points
    itself is checked against rendered images above)."""
    shape, spacing = (24, 20, 28), (1.0, 1.2, 0.9)
    geometry = ConeBeam(source_to_detector=120.0, source_to_isocentre=60.0, rotation=(20, 15, -10))
    rng = np.random.default_rng(12)
    points = rng.uniform(0.3, 0.7, size=(10, 3)) * np.asarray(shape) * np.asarray(spacing)
    for view in ("frontal", "lateral", "axial"):
        start, end = detector_rays(view, shape, spacing, size=(40, 44), geometry=geometry)
        pixels = project_points(points, view, shape, spacing, size=(40, 44), geometry=geometry)
        for point, (col, row) in zip(points, pixels, strict=True):
            # Interpolate the ray ends at the continuous pixel (rays vary linearly).
            r0, c0 = int(np.floor(row)), int(np.floor(col))
            fr, fc = row - r0, col - c0

            def at(a, r0=r0, c0=c0, fr=fr, fc=fc):
                return (1 - fr) * ((1 - fc) * a[r0, c0] + fc * a[r0, c0 + 1]) + fr * (
                    (1 - fc) * a[r0 + 1, c0] + fc * a[r0 + 1, c0 + 1]
                )

            s0, e0 = at(start), at(end)
            direction = (e0 - s0) / np.linalg.norm(e0 - s0)
            offset = point - s0
            assert np.linalg.norm(offset - (offset @ direction) * direction) < 1e-6
