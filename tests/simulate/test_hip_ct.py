"""The procedural hip CT: plausible HU, anatomy driven by the inputs, faithful writers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fracrisk.simulate.hip_ct import HipCT, hip_ct_volume, write_dicom_series, write_nifti

BASE = dict(
    femoral_neck_bmd=0.80,
    z=0.0,
    bmi=25.0,
    sex="F",
    hip_axis_length=105.0,
    neck_shaft_angle=130.0,
)
SIDES = ("right", "left")


def make(seed: int = 0, **kw) -> HipCT:
    return hip_ct_volume(**{**BASE, **kw}, rng=np.random.default_rng(seed))


@pytest.fixture(scope="module")
def ct() -> HipCT:
    return make(0)


def ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape, sparse=True)
    c = np.asarray(centre)
    return (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2


def femur_component(ct: HipCT, side: str) -> np.ndarray:
    """The connected bone (> 300 HU, face connectivity) that holds the femoral head."""
    labels, n = ndimage.label(ct.volume_hu > 300)
    r = ct.landmarks["head_radius"][0]
    counts = np.bincount(
        labels[ball(labels.shape, ct.landmarks[f"head_{side}"], r)], minlength=n + 1
    )
    counts[0] = 0
    return labels == counts.argmax()


def detected_head_centre(ct: HipCT, side: str) -> np.ndarray:
    """Head centre measured in the image: the top cap of the femur component.

    The femur is separated from the pelvis by the joint space, so its component's highest
    voxels belong to the head; the cap above ``top - 0.8 r`` of a sphere is centred on the
    vertical through the sphere centre whatever the femur's rotation.
    """
    comp = femur_component(ct, side)
    zz, yy, xx = np.nonzero(comp)
    r = ct.landmarks["head_radius"][0]
    cap = zz >= zz.max() - 0.8 * r
    return np.array([zz.max() + 0.5 - r, yy[cap].mean(), xx[cap].mean()])


def head_roi(ct: HipCT, side: str) -> np.ndarray:
    """Trabecular ROI: ball of half the head radius at the head centre (inside the cortex)."""
    r = ct.landmarks["head_radius"][0]
    return ct.volume_hu[ball(ct.volume_hu.shape, ct.landmarks[f"head_{side}"], 0.55 * r)]


# ------------------------------------------------------------------------------ basics


def test_shape_dtype_spacing_and_affine(ct):
    assert ct.volume_hu.shape == (96, 128, 128)
    assert ct.volume_hu.dtype == np.int16
    assert ct.spacing == (1.0, 1.0, 1.0)
    assert 0.2 < ct.anatomy_scale < 0.5
    other = make(1, shape=(40, 64, 56), spacing=2.0)
    assert other.volume_hu.shape == (40, 64, 56)
    assert other.spacing == (2.0, 2.0, 2.0)
    aff = other.affine()
    # x index -> patient left (RAS x decreases), y -> anterior, z -> superior; centred FOV
    np.testing.assert_allclose(aff[:3, :3], [[0, 0, -2], [0, 2, 0], [2, 0, 0]])
    centre = aff @ np.array([39 / 2, 63 / 2, 55 / 2, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)


def test_hu_ranges(ct):
    v = ct.volume_hu.astype(float)
    corners = [
        v[zs, ys, xs]
        for zs in (slice(0, 4), slice(-4, None))
        for ys in (slice(0, 4), slice(-4, None))
        for xs in (slice(0, 4), slice(-4, None))
    ]
    for block in corners:
        assert abs(block.mean() + 1000) < 25  # air plus (correlated) noise of 10-20 HU
        assert block.max() < -900
    # soft tissue at the centre of the field of view (midline, between the hips)
    nz, ny, nx = v.shape
    centre = v[nz // 2 - 3 : nz // 2 + 3, ny // 2 - 3 : ny // 2 + 3, nx // 2 - 3 : nx // 2 + 3]
    assert 0 < centre.mean() < 70
    assert centre.std() < 30  # scanner noise only
    assert (v > 700).sum() > 1000  # cortical bone
    assert v.max() < 2500
    assert v.min() >= -1024


def test_deterministic_for_a_seed_and_different_across_seeds(ct):
    np.testing.assert_array_equal(make(0).volume_hu, ct.volume_hu)
    other = make(1).volume_hu
    assert np.mean(other != ct.volume_hu) > 0.3


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="sex"):
        make(sex="X")
    with pytest.raises(ValueError, match="neck_shaft_angle"):
        make(neck_shaft_angle=200.0)
    with pytest.raises(ValueError, match="femoral_neck_bmd"):
        make(femoral_neck_bmd=-0.1)
    with pytest.raises(ValueError, match="shape"):
        make(shape=(8, 8, 8))


# ---------------------------------------------------------------------------- anatomy


def test_two_femoral_heads_symmetric_and_hip_axis_length_consistent(ct):
    # bone mass split at the midline between the heads (patient shifts by a few mm)
    bone = ct.volume_hu > 300
    mid = int(round((ct.landmarks["head_right"][2] + ct.landmarks["head_left"][2]) / 2))
    right, left = bone[:, :, :mid].sum(), bone[:, :, mid:].sum()
    assert 0.85 < right / left < 1.18
    # The femur is a separate component (joint space) whose top cap locates the head
    # centre in the image; it agrees with the landmark to within a voxel.
    for side in SIDES:
        comp = femur_component(ct, side)
        assert 2000 < comp.sum() < 20000  # a femur, not the whole skeleton
        np.testing.assert_allclose(
            detected_head_centre(ct, side), ct.landmarks[f"head_{side}"], atol=1.2
        )
    # Documented geometry: head centres 2 x 0.76 x HAL anatomical mm apart, times the
    # anatomy scale (a few degrees of random rotation change it by < 0.3%).
    for hal in (95.0, 115.0):
        img = make(2, hip_axis_length=hal)
        sep = detected_head_centre(img, "left")[2] - detected_head_centre(img, "right")[2]
        expected = 2 * 0.76 * hal * img.anatomy_scale / img.spacing[2]
        assert sep == pytest.approx(expected, abs=1.5)
    wide = make(3, hip_axis_length=115.0)
    narrow = make(3, hip_axis_length=95.0)

    def separation(img):
        return detected_head_centre(img, "left")[2] - detected_head_centre(img, "right")[2]

    assert separation(wide) - separation(narrow) > 0.8 * 2 * 0.76 * 20 * wide.anatomy_scale


def test_femoral_heads_sit_in_their_sockets(ct):
    v = ct.volume_hu
    r = ct.landmarks["head_radius"][0]
    for side in SIDES:
        c = ct.landmarks[f"head_{side}"]
        zz, yy, xx = np.indices(v.shape, sparse=True)
        dist = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        above = zz > c[0] + 0.3 * r
        # joint space (soft tissue) just outside the head, then the socket's cortical lining
        space = v[(dist > r + 0.8) & (dist < r + 1.7) & above]
        roof = v[(dist > r + 2.6) & (dist < r + 3.6) & above]
        assert np.median(space) < 150
        assert np.median(roof) > 600


def test_trabecular_hu_increases_with_bmd():
    means = []
    for bmd in (0.60, 0.85, 1.10):
        img = make(4, femoral_neck_bmd=bmd)
        means.append(np.mean([head_roi(img, side).mean() for side in SIDES]))
    assert np.all(np.diff(means) > 40), means
    assert 60 < means[0] < means[-1] < 500


def texture(roi_volume: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Bright-voxel fraction (> ROI mean + 50 HU) and high-pass share (Laplacian energy over
    variance)."""
    vals = roi_volume[mask].astype(float)
    lap = ndimage.laplace(roi_volume.astype(float))[mask]
    return float(np.mean(vals > vals.mean() + 50)), float(np.mean(lap**2) / vals.var())


def test_texture_shows_bone_quality_at_fixed_bmd():
    for seed in range(5):
        stats = {}
        for zq in (-2.0, 2.0):
            img = make(seed, z=zq)
            r = img.landmarks["head_radius"][0]
            pooled = [
                texture(
                    img.volume_hu, ball(img.volume_hu.shape, img.landmarks[f"head_{s}"], 0.5 * r)
                )
                for s in SIDES
            ]
            stats[zq] = np.mean(pooled, axis=0)
        bright_low, hp_low = stats[-2.0]
        bright_high, hp_high = stats[2.0]
        # high z: denser network (more bright voxels) and finer (more high-pass energy)
        assert bright_high > bright_low + 0.05, (seed, stats)
        assert hp_high > 1.15 * hp_low, (seed, stats)


def fat_run(line: np.ndarray) -> int:
    """Voxels of fat (-250..-30 HU) right after the skin, walking inwards along ``line``."""
    skin = int(np.argmax(line > -500))
    run = 0
    for value in line[skin + 1 :]:
        if -250 < value < -30:
            run += 1
        elif run:
            break
    return run


def test_fat_layer_thicker_at_high_bmi():
    thin, thick = make(5, bmi=20.0), make(5, bmi=35.0)
    for img in (thin, thick):
        v = img.volume_hu
        assert np.median(v[(v > -300) & (v < -50)]) == pytest.approx(-100, abs=15)  # fat HU
    nz, ny, nx = thin.volume_hu.shape
    z = nz // 2
    # anterior midline (from the front skin inwards) and right lateral (from the side)
    lines = [lambda v: v[z, ::-1, nx // 2], lambda v: v[z, ny // 2, :]]
    for get in lines:
        a, b = fat_run(get(thin.volume_hu)), fat_run(get(thick.volume_hu))
        assert b >= a + 3, (a, b)
        assert a >= 1


def test_neck_shaft_angle_rotates_the_neck_axis():
    """Neck axis measured in the image: mean direction of femur voxels 1.15-1.6 head radii
    from the head centre. Its elevation above the horizontal grows with the neck-shaft angle
    (elevation ~ NSA + 8 deg shaft tilt - 90 deg) and matches the landmark axis."""
    elevations = {}
    for nsa in (120.0, 140.0):
        img = make(6, neck_shaft_angle=nsa)
        r = img.landmarks["head_radius"][0]
        for side in SIDES:
            c = img.landmarks[f"head_{side}"]
            pts = np.argwhere(femur_component(img, side)) - c
            d = np.linalg.norm(pts, axis=1)
            u = pts[(d > 1.15 * r) & (d < 1.6 * r)].mean(0)
            u /= np.linalg.norm(u)
            assert u @ img.landmarks[f"neck_axis_{side}"] > 0.99
            assert u[0] < 0 and np.sign(u[2]) == (1 if side == "left" else -1)  # down, lateral
            elevations[nsa, side] = np.degrees(np.arctan2(-u[0], abs(u[2])))
    for side in SIDES:
        assert elevations[140.0, side] - elevations[120.0, side] > 10, elevations
        assert 28 < elevations[120.0, side] < 50


# ---------------------------------------------------------------------------- writers


def test_write_nifti_round_trip(ct, tmp_path):
    nib = pytest.importorskip("nibabel")
    path = write_nifti(ct, tmp_path / "sub" / "hip.nii.gz")
    assert path == tmp_path / "sub" / "hip.nii.gz" and path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hip.nii.gz"]  # no temp left
    img = nib.load(path)
    np.testing.assert_array_equal(np.asarray(img.dataobj), ct.volume_hu)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.header.get_zooms(), ct.spacing)
    np.testing.assert_allclose(img.affine, ct.affine(), atol=1e-5)
    assert nib.aff2axcodes(img.affine) == ("S", "A", "L")
    with pytest.raises(ValueError, match="nii"):
        write_nifti(ct, tmp_path / "hip.img")


def test_write_dicom_series_round_trip(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    small = make(7, shape=(24, 48, 40), spacing=2.5)
    out = write_dicom_series(small, tmp_path / "dcm", patient_id="P000123")
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 24
    slices = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    hu = np.stack(
        [
            d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept)
            for d in slices
        ]
    )
    np.testing.assert_array_equal(hu, small.volume_hu)
    first = slices[0]
    assert first.Modality == "CT" and first.PatientID == "P000123"
    assert first.PixelRepresentation == 0 and first.BitsAllocated == 16
    assert [float(s) for s in first.PixelSpacing] == [2.5, 2.5]
    assert float(first.SliceThickness) == 2.5
    z = np.array([float(d.ImagePositionPatient[2]) for d in slices])
    np.testing.assert_allclose(np.diff(z), 2.5)
    # geometry agrees with the affine (DICOM is LPS, the affine RAS)
    ras = small.affine() @ np.array([0, 0, 0, 1.0])
    np.testing.assert_allclose(
        [float(v) for v in first.ImagePositionPatient], [-ras[0], -ras[1], ras[2]], atol=1e-3
    )
    assert len({d.SeriesInstanceUID for d in slices}) == 1
    assert len({d.SOPInstanceUID for d in slices}) == 24
    # UIDs are deterministic for a patient and differ between patients
    again = pydicom.dcmread(
        write_dicom_series(small, tmp_path / "again", patient_id="P000123") / files[0].name
    )
    assert again.SeriesInstanceUID == first.SeriesInstanceUID
    assert again.SOPInstanceUID == first.SOPInstanceUID
    other = pydicom.dcmread(
        write_dicom_series(small, tmp_path / "other", patient_id="P000124") / files[0].name
    )
    assert other.SeriesInstanceUID != first.SeriesInstanceUID
