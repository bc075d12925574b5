"""Reading CT volumes and radiographs: orientation, spacing, HU and every error path."""

from __future__ import annotations

import itertools
import pickle
import re
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from fracrisk.exceptions import DataWarning
from fracrisk.imaging.io import (
    CANONICAL_AXCODES,
    CTVolume,
    ImageReadError,
    Radiograph,
    load_ct,
    load_images,
    load_radiograph,
)
from fracrisk.simulate._images import RADIOGRAPH_SCALE, _save_png16
from fracrisk.simulate.hip_ct import HipCT, hip_ct_volume, write_dicom_series, write_nifti


def _name(path) -> str:
    """A regex matching the file's name (error messages must name the file)."""
    return re.escape(str(path.name))


@pytest.fixture(scope="module")
def hip() -> HipCT:
    # Deliberately non-cubic so that any swapped axis changes the shape.
    return hip_ct_volume(
        femoral_neck_bmd=0.80,
        z=0.0,
        bmi=26.0,
        sex="F",
        hip_axis_length=105.0,
        neck_shaft_angle=128.0,
        rng=np.random.default_rng(7),
        shape=(24, 40, 36),
        spacing=2.0,
    )


@pytest.fixture(scope="module")
def spine_xray():
    from fracrisk.simulate.spine import lateral_radiograph, spine_volume

    spine = spine_volume(
        femoral_neck_bmd=0.8,
        z=0.0,
        genant_grades=[0, 0, 0, 0, 0],
        deformity_types=["none"] * 5,
        bmi=25.0,
        sex="F",
        rng=np.random.default_rng(3),
    )
    return lateral_radiograph(spine)


def _ct_small_path() -> str:
    return pydicom.data.get_testdata_file("CT_small.dcm")


# ----------------------------------------------------------------------------- NIfTI / DICOM


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip_keeps_hu_orientation_and_spacing(hip, tmp_path, suffix):
    path = write_nifti(hip, tmp_path / f"hip{suffix}")
    ct = load_ct(path, spacing=None)
    assert isinstance(ct, CTVolume)
    assert ct.volume_hu.dtype == np.float32
    assert ct.volume_hu.shape == hip.volume_hu.shape
    np.testing.assert_array_equal(ct.volume_hu, hip.volume_hu.astype(np.float32))
    assert ct.spacing == pytest.approx(hip.spacing)
    np.testing.assert_allclose(ct.affine, hip.affine(), atol=1e-5)
    assert nib.aff2axcodes(ct.affine) == CANONICAL_AXCODES
    assert ct.source == str(path)


def test_dicom_series_with_shuffled_file_names_matches_nifti(hip, tmp_path):
    ref = load_ct(write_nifti(hip, tmp_path / "hip.nii.gz"), spacing=None)
    series = write_dicom_series(hip, tmp_path / "series", patient_id="P001")
    files = sorted(series.iterdir())
    # Rename so that name order no longer follows slice position: sorting must use geometry.
    order = np.random.default_rng(0).permutation(len(files))
    for f, k in zip(files, order, strict=True):
        f.rename(series / f"IMG{k:03d}")
    ct = load_ct(series, spacing=None)
    np.testing.assert_array_equal(ct.volume_hu, ref.volume_hu)
    assert ct.spacing == pytest.approx(ref.spacing)
    np.testing.assert_allclose(ct.affine, ref.affine, atol=1e-4)


def test_dicom_series_with_flipped_rows_columns_and_slice_order_is_reoriented(hip, tmp_path):
    """Store every slice rotated by 180 degrees (rows run P, columns run R): LPS handling."""
    series = write_dicom_series(hip, tmp_path / "series", patient_id="P002")
    nz, ny, nx = hip.volume_hu.shape
    sz, sy, sx = hip.spacing
    for f in series.iterdir():
        ds = pydicom.dcmread(f)
        pixels = ds.pixel_array[::-1, ::-1].copy()
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        # The new first pixel is the old last one: + (nx-1) columns along +x, (ny-1) rows along -y.
        ds.ImagePositionPatient = [
            f"{x + (nx - 1) * sx:.6g}",
            f"{y - (ny - 1) * sy:.6g}",
            f"{z:.6g}",
        ]
        ds.ImageOrientationPatient = ["-1", "0", "0", "0", "1", "0"]  # normal now points to -z
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds.save_as(f)
    ct = load_ct(series, spacing=None)
    np.testing.assert_array_equal(ct.volume_hu, hip.volume_hu.astype(np.float32))
    np.testing.assert_allclose(ct.affine, hip.affine(), atol=1e-4)


_AXES = (("L", "R"), ("P", "A"), ("I", "S"))
_ALL_AXCODES = [  # the 48 orientations: 6 axis orders x 8 directions
    tuple(axis[s] for axis, s in zip(order, signs, strict=True))
    for order in itertools.permutations(_AXES)
    for signs in itertools.product((0, 1), repeat=3)
]


@pytest.mark.parametrize("codes", _ALL_AXCODES, ids="".join)
def test_nifti_with_other_orientation_loads_to_the_same_canonical_array(hip, tmp_path, codes):
    # nibabel's orientation transforms are the oracle of MONAI's Orientation used by load_ct.
    ornt = ornt_transform(axcodes2ornt(CANONICAL_AXCODES), axcodes2ornt(codes))
    data = apply_orientation(hip.volume_hu, ornt)
    affine = hip.affine() @ inv_ornt_aff(ornt, hip.volume_hu.shape)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path = tmp_path / "reoriented.nii.gz"
    nib.save(img, path)
    assert nib.aff2axcodes(nib.load(path).affine) == codes  # the copy really is reoriented
    ct = load_ct(path, spacing=None)
    np.testing.assert_array_equal(ct.volume_hu, hip.volume_hu.astype(np.float32))
    np.testing.assert_allclose(ct.affine, hip.affine(), atol=1e-5)


def test_resampling_2mm_to_1mm_doubles_the_grid_and_keeps_positions(hip, tmp_path):
    ct = load_ct(write_nifti(hip, tmp_path / "hip.nii.gz"), spacing=1.0)
    assert ct.volume_hu.shape == (48, 80, 72)
    assert ct.spacing == (1.0, 1.0, 1.0)
    assert abs(ct.volume_hu.mean() - hip.volume_hu.mean()) < 5.0

    # A ramp along z shows where each new voxel samples the old grid: new i -> old i/2 - 1/4.
    nz = 10
    ramp = np.broadcast_to(10 * np.arange(nz, dtype=np.int16)[:, None, None], (nz, 16, 16))
    ramp_ct = HipCT(np.ascontiguousarray(ramp), (2.0, 2.0, 2.0))
    out = load_ct(write_nifti(ramp_ct, tmp_path / "ramp.nii"), spacing=1.0)
    assert out.volume_hu.shape == (20, 32, 32)
    expected = 10 * np.clip(0.5 * np.arange(20) - 0.25, 0, nz - 1)
    np.testing.assert_allclose(out.volume_hu[:, 5, 7], expected, atol=1e-4)
    for i in (0, 7, 19):
        new = out.affine @ np.array([i, 0.0, 0.0, 1.0])
        old = ramp_ct.affine() @ np.array([0.5 * i - 0.25, -0.25, -0.25, 1.0])
        np.testing.assert_allclose(new, old, atol=1e-9)


def test_anisotropic_dicom_spacing_comes_from_positions_and_is_resampled(hip, tmp_path):
    thick = HipCT(hip.volume_hu[:12], (5.0, 2.0, 2.0))
    series = write_dicom_series(thick, tmp_path / "thick", patient_id="P003")
    for f in series.iterdir():  # positions must be trusted over the thickness tags
        ds = pydicom.dcmread(f)
        ds.SliceThickness = "1"
        del ds.SpacingBetweenSlices
        ds.save_as(f)
    native = load_ct(series, spacing=None)
    assert native.spacing == pytest.approx((5.0, 2.0, 2.0))
    iso = load_ct(series, spacing=2.5)
    assert iso.volume_hu.shape == (24, 32, 29)  # round(12 * 5 / 2.5), round(40 * 2 / 2.5), ...
    assert iso.spacing == (2.5, 2.5, 2.5)


def test_ct_small_single_dicom_file_applies_rescale_intercept():
    path = _ct_small_path()
    ds = pydicom.dcmread(path)
    assert float(ds.RescaleIntercept) == -1024.0
    ct = load_ct(path, spacing=None)
    assert ct.volume_hu.shape == (1, 128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    # Rows of CT_small run towards posterior (IOP column direction +y LPS): flipped to P->A.
    np.testing.assert_array_equal(ct.volume_hu[0], expected[::-1, :].astype(np.float32))
    assert -1024.0 <= ct.volume_hu.min() < -500.0  # air/lung, not raw stored values >= 0
    assert 500.0 < ct.volume_hu.max() <= 3071.0
    assert ct.spacing == pytest.approx((float(ds.SliceThickness), 0.661468, 0.661468))

    iso = load_ct(path)  # default 1 mm: in-plane resampled, the single slice kept
    assert iso.volume_hu.shape == (1, 85, 85)
    assert iso.spacing == (pytest.approx(5.0), 1.0, 1.0)


def test_non_ct_dicom_warns_that_values_are_not_hu():
    with pytest.warns(DataWarning, match="Modality is 'MR'"):
        ct = load_ct(pydicom.data.get_testdata_file("MR_small.dcm"), spacing=None)
    assert ct.volume_hu.shape == (1, 64, 64)


def test_oblique_nifti_warns(hip, tmp_path):
    angle = np.radians(10.0)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    img = nib.Nifti1Image(hip.volume_hu, rot @ hip.affine())
    path = tmp_path / "oblique.nii.gz"
    nib.save(img, path)
    with pytest.warns(DataWarning, match="oblique"):
        ct = load_ct(path, spacing=None)
    np.testing.assert_array_equal(ct.volume_hu, hip.volume_hu.astype(np.float32))


def test_four_d_nifti_with_one_volume_loads(hip, tmp_path):
    path = tmp_path / "single4d.nii.gz"
    nib.save(nib.Nifti1Image(hip.volume_hu[..., None], hip.affine()), path)
    ct = load_ct(path, spacing=None)
    np.testing.assert_array_equal(ct.volume_hu, hip.volume_hu.astype(np.float32))


# ------------------------------------------------------------------------------- CT errors


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(ImageReadError, match=f"{_name(path)}: no such file"):
        load_ct(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".dcm"])
def test_random_bytes_are_unreadable(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(ImageReadError, match=_name(path)) as info:
        load_ct(path)
    assert info.value.path == str(path)
    assert info.value.reason


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_is_unreadable(hip, tmp_path, suffix):
    path = write_nifti(hip, tmp_path / f"cut{suffix}")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match=_name(path) + ".*(truncated|unreadable|NIfTI)"):
        load_ct(path)


def test_truncated_dicom_slice_names_directory_and_file(hip, tmp_path):
    series = write_dicom_series(hip, tmp_path / "series", patient_id="P004")
    victim = series / "CT0005.dcm"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(ImageReadError, match=f"{_name(series)}: file CT0005\\.dcm"):
        load_ct(series)


def test_truncated_single_dicom_file(tmp_path):
    path = tmp_path / "ct_small_cut.dcm"
    raw = open(_ct_small_path(), "rb").read()
    path.write_bytes(raw[: len(raw) - 5000])
    with pytest.raises(ImageReadError, match=_name(path)):
        load_ct(path)


def test_nan_voxels_are_an_error(hip, tmp_path):
    data = hip.volume_hu.astype(np.float32)
    data[3, 4, 5] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, hip.affine()), path)
    with pytest.raises(ImageReadError, match=_name(path) + ": 1 NaN"):
        load_ct(path)


def test_two_volume_4d_nifti_is_an_error(hip, tmp_path):
    path = tmp_path / "two.nii.gz"
    data = np.stack([hip.volume_hu, hip.volume_hu], axis=-1)
    nib.save(nib.Nifti1Image(data, hip.affine()), path)
    with pytest.raises(ImageReadError, match=_name(path) + ": is a 4-D image .* 2 volumes"):
        load_ct(path)


def test_2d_nifti_is_an_error(hip, tmp_path):
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(hip.volume_hu[0], np.eye(4)), path)
    with pytest.raises(ImageReadError, match=_name(path) + ": is a 2-D image"):
        load_ct(path)


def test_empty_directory_is_an_error(tmp_path):
    empty = tmp_path / "empty_series"
    empty.mkdir()
    with pytest.raises(ImageReadError, match=_name(empty) + ": directory holds no files"):
        load_ct(empty)


def test_mixed_series_names_every_series_uid(hip, tmp_path):
    a = write_dicom_series(hip, tmp_path / "a", patient_id="PA")
    b = write_dicom_series(hip, tmp_path / "b", patient_id="PB")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for src, tag in ((a, "a"), (b, "b")):
        for f in src.iterdir():
            shutil.copy(f, mixed / f"{tag}_{f.name}")
    uid_a = pydicom.dcmread(next(a.iterdir())).SeriesInstanceUID
    uid_b = pydicom.dcmread(next(b.iterdir())).SeriesInstanceUID
    with pytest.raises(ImageReadError, match=_name(mixed) + ": holds 2 DICOM series") as info:
        load_ct(mixed)
    assert uid_a in str(info.value) and uid_b in str(info.value)


def test_missing_slice_is_an_error(hip, tmp_path):
    series = write_dicom_series(hip, tmp_path / "gap", patient_id="P005")
    (series / "CT0010.dcm").unlink()
    with pytest.raises(ImageReadError, match=_name(series) + ": slice spacing is not uniform"):
        load_ct(series)


def test_duplicate_slice_is_an_error(hip, tmp_path):
    series = write_dicom_series(hip, tmp_path / "dup", patient_id="P006")
    shutil.copy(series / "CT0003.dcm", series / "CT0003_copy.dcm")
    with pytest.raises(ImageReadError, match=_name(series) + ": 1 pair.*share a position"):
        load_ct(series)


def test_non_dicom_file_in_series_directory_is_named(hip, tmp_path):
    series = write_dicom_series(hip, tmp_path / "notes", patient_id="P007")
    (series / "notes.txt").write_text("scanned on Tuesday\n" * 20)
    with pytest.raises(ImageReadError, match=_name(series) + ": file notes\\.txt: not a DICOM"):
        load_ct(series)


def test_bad_arguments_are_plain_value_errors(hip, tmp_path):
    path = write_nifti(hip, tmp_path / "hip.nii.gz")
    with pytest.raises(ValueError, match="spacing"):
        load_ct(path, spacing=0.0)
    with pytest.raises(ValueError, match="order"):
        load_ct(path, order=7)


def test_image_read_error_is_a_value_error_and_pickles():
    err = ImageReadError("/data/x.nii.gz", "not a gzip file")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))


# ----------------------------------------------------------------------------- radiographs


def test_png16_lateral_radiograph_round_trip_and_bone_is_bright(spine_xray, tmp_path):
    path = tmp_path / "spine_lateral.png"
    _save_png16(spine_xray.image, path)
    rad = load_radiograph(path)
    assert isinstance(rad, Radiograph)
    assert rad.image.dtype == np.float32 and rad.image.shape == spine_xray.image.shape
    assert rad.pixel_spacing is None
    np.testing.assert_allclose(rad.image / RADIOGRAPH_SCALE, spine_xray.image, atol=0.5e-3 + 1e-6)

    kp = spine_xray.keypoints  # (5, 4, 2) as (col, row); corners AS, PS, PI, AI

    def patch(point):
        c, r = np.round(point).astype(int)
        return float(rad.image[r - 1 : r + 2, c - 1 : c + 2].mean())

    for v in range(4):
        body = kp[v].mean(axis=0)
        disc = (kp[v, 2:4].mean(axis=0) + kp[v + 1, 0:2].mean(axis=0)) / 2
        assert patch(body) > patch(disc) + 30.0  # vertebral bone brighter than the disc

    with_spacing = load_radiograph(path, pixel_spacing=spine_xray.pixel_spacing)
    assert with_spacing.pixel_spacing == tuple(spine_xray.pixel_spacing)
    assert load_radiograph(path, pixel_spacing=0.2).pixel_spacing == (0.2, 0.2)


def _write_dicom_radiograph(path, stored, photometric, *, slope="2", intercept="-100", **extra):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_dicom_is_inverted_so_bone_is_bright(tmp_path):
    rng = np.random.default_rng(5)
    attenuation = rng.integers(0, 4096, size=(20, 30)).astype(np.uint16)
    # MONOCHROME1 stores high attenuation as LOW values (displayed white).
    m1 = _write_dicom_radiograph(
        tmp_path / "m1.dcm", 4095 - attenuation, "MONOCHROME1", ImagerPixelSpacing=["0.15", "0.14"]
    )
    m2 = _write_dicom_radiograph(
        tmp_path / "m2.dcm", attenuation, "MONOCHROME2", PixelSpacing=["0.2", "0.25"]
    )
    rad1, rad2 = load_radiograph(m1), load_radiograph(m2)
    np.testing.assert_allclose(rad2.image, 2.0 * attenuation - 100.0)  # rescale applied
    # Reflected over the representable range [-100, 2 * 4095 - 100]: the same image.
    np.testing.assert_allclose(rad1.image, rad2.image)
    assert np.corrcoef(rad1.image.ravel(), attenuation.ravel())[0, 1] > 0.999
    assert rad1.pixel_spacing == pytest.approx((0.15, 0.14))  # ImagerPixelSpacing fallback
    assert rad2.pixel_spacing == pytest.approx((0.2, 0.25))
    assert load_radiograph(m2, pixel_spacing=(0.1, 0.1)).pixel_spacing == (0.1, 0.1)


def test_pydicom_monochrome1_cr_file_is_inverted():
    path = next(
        f
        for f in pydicom.data.get_testdata_files()
        if f.replace("\\", "/").endswith("77654033/CR3/6278")
    )
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    rad = load_radiograph(path)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    values = ds.pixel_array * slope + intercept
    ends = np.array([0, 2**ds.BitsStored - 1]) * slope + intercept
    np.testing.assert_allclose(rad.image, ends.sum() - values, rtol=1e-5)
    assert rad.pixel_spacing == pytest.approx((0.1, 0.1))


@pytest.mark.parametrize(
    ("suffix", "dtype"), [(".tif", np.uint8), (".tif", np.uint16), (".png", np.uint8)]
)
def test_grayscale_png_and_tiff_load_as_stored(tmp_path, suffix, dtype):
    rng = np.random.default_rng(2)
    values = rng.integers(0, np.iinfo(dtype).max, size=(17, 23), endpoint=True).astype(dtype)
    path = tmp_path / f"gray_{np.dtype(dtype).name}{suffix}"
    Image.fromarray(values).save(path)
    rad = load_radiograph(path)
    assert rad.image.dtype == np.float32 and rad.image.shape == (17, 23)
    np.testing.assert_array_equal(rad.image, values.astype(np.float32))


def test_rgb_png_loads_as_luminance(tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(12, 9, 3)).astype(np.uint8)
    rgb[0] = 200  # a gray row stays 200
    path = tmp_path / "colour.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    rad = load_radiograph(path)
    assert rad.image.shape == (12, 9)
    np.testing.assert_allclose(rad.image, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)
    np.testing.assert_allclose(rad.image[0], 200.0, atol=1e-3)


def test_radiograph_errors_name_the_file(tmp_path, spine_xray):
    missing = tmp_path / "absent.png"
    with pytest.raises(ImageReadError, match=_name(missing) + ": no such file"):
        load_radiograph(missing)
    truncated = tmp_path / "truncated.png"
    _save_png16(spine_xray.image, truncated)
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match=_name(truncated) + ": .*truncated"):
        load_radiograph(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match=_name(text) + ": not a recognised image"):
        load_radiograph(text)
    pages = tmp_path / "pages.tif"
    frames = [Image.fromarray(np.full((4, 4), k, np.uint8)) for k in range(3)]
    frames[0].save(pages, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match=_name(pages) + ": holds 3 frames"):
        load_radiograph(pages)
    nan_tif = tmp_path / "nan.tif"
    img = np.ones((5, 5), np.float32)
    img[2, 2] = np.nan
    Image.fromarray(img, mode="F").save(nan_tif)
    with pytest.raises(ImageReadError, match=_name(nan_tif) + ": 1 NaN"):
        load_radiograph(nan_tif)


# ----------------------------------------------------------------------------- load_images


def test_load_images_skip_reports_and_warns(hip, tmp_path):
    good = write_nifti(hip, tmp_path / "good.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x00" * 100)
    paths = [good, bad, None, str(good)]
    with pytest.warns(DataWarning, match=r"2 of 4 images could not be read.*bad\.nii\.gz"):
        items, failures = load_images(paths, load_ct, on_error="skip")
    assert len(items) == 4
    assert isinstance(items[0], CTVolume) and isinstance(items[3], CTVolume)
    assert items[1] is None and items[2] is None
    assert [p for p, _ in failures] == [str(bad), "None"]
    assert "NIfTI" in failures[0][1] and "missing value" in failures[1][1]


def test_load_images_raise_stops_at_first_bad_file(hip, tmp_path):
    good = write_nifti(hip, tmp_path / "good.nii.gz")
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not gzip at all")
    calls = []

    def loader(path):
        calls.append(path)
        return load_ct(path, spacing=None)

    with pytest.raises(ImageReadError, match=_name(bad)):
        load_images([good, bad, good], loader)
    assert calls == [good, bad]  # stopped at the bad file


def test_load_images_with_no_failures_returns_everything_without_warning(spine_xray, tmp_path):
    path = tmp_path / "x.png"
    _save_png16(spine_xray.image, path)
    items, failures = load_images([path, path], load_radiograph, on_error="skip")
    assert failures == [] and all(isinstance(r, Radiograph) for r in items)


def test_load_images_rejects_bad_policy_and_single_path(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_images([], load_ct, on_error="ignore")
    with pytest.raises(TypeError, match="single path"):
        load_images(str(tmp_path / "a.nii.gz"), load_ct)


def test_enhanced_multiframe_dicom_volume_matches_nifti(hip, tmp_path):
    """One file holding every slice, geometry and rescale in the functional groups."""
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage

    nz, ny, nx = hip.volume_hu.shape
    sz, sy, sx = hip.spacing
    aff = hip.affine()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ny, nx, nz
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0

    def item(**kwargs):
        out = Dataset()
        for key, value in kwargs.items():
            setattr(out, key, value)
        return out

    shared = item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[1, 0, 0, 0, -1, 0])]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[sy, sx], SliceThickness=sz)]),
        PixelValueTransformationSequence=Sequence(
            [item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]
        ),
    )
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = np.random.default_rng(1).permutation(nz)  # frames stored out of order
    per_frame = []
    for k in order:
        ras = aff @ np.array([k, 0.0, 0.0, 1.0])
        position = [-ras[0], -ras[1], ras[2]]
        per_frame.append(
            item(PlanePositionSequence=Sequence([item(ImagePositionPatient=position)]))
        )
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    stored = (hip.volume_hu.astype(np.int32) + 1024).astype("<u2")
    ds.PixelData = stored[order].tobytes()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    ct = load_ct(path, spacing=None)
    np.testing.assert_array_equal(ct.volume_hu, hip.volume_hu.astype(np.float32))
    np.testing.assert_allclose(ct.affine, aff, atol=1e-6)


def test_nifti_without_orientation_warns(tmp_path):
    path = tmp_path / "no_orientation.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), None), path)
    header = nib.load(path).header
    assert int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0
    with pytest.warns(DataWarning, match=_name(path) + ": the NIfTI header sets neither"):
        ct = load_ct(path, spacing=None)
    assert ct.volume_hu.size == 4 * 5 * 6
