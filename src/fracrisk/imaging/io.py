"""Read CT volumes and radiographs from disk into arrays with a known orientation and scale.

CT volumes (:func:`load_ct`)
    A NIfTI file (``.nii`` / ``.nii.gz``), a directory holding one DICOM series (one slice
    per file), or a single DICOM file (one slice, giving a volume of depth 1, or a
    multi-frame volume). Values are Hounsfield units: DICOM stored values go through the
    modality transform (``RescaleSlope`` / ``RescaleIntercept``), NIfTI values through the
    header's ``scl_slope`` / ``scl_inter``.

Canonical orientation
    Every volume is returned as a float32 array ``(nz, ny, nx)`` whose axes point, in the
    patient's (RAS+) world,

    * axis 0 (``z``): inferior -> superior (index grows towards **S**),
    * axis 1 (``y``): posterior -> anterior (towards **A**),
    * axis 2 (``x``): patient right -> left (towards **L**),

    i.e. nibabel axis codes ``("S", "A", "L")`` (:data:`CANONICAL_AXCODES`), the layout of
    :func:`fracrisk.simulate.hip_ct.hip_ct_volume` and of the spine simulator. The input is
    brought there by flips and axis permutations only (MONAI's ``Orientation`` transform on
    the voxel-to-world affine). NIfTI files are read by MONAI's ``NibabelReader`` (the
    reader ``LoadImage`` uses). For DICOM, fracrisk's own series reader checks that the
    slices form one regular stack, and builds the affine from ``ImageOrientationPatient``,
    ``ImagePositionPatient`` and ``PixelSpacing``, converted from LPS to RAS. An oblique
    acquisition is reoriented to its closest canonical axes, not rotated by interpolation;
    a :class:`~fracrisk.exceptions.DataWarning` says so when any axis is more than 1 degree
    off. The returned :attr:`CTVolume.affine` maps the returned voxel indices ``(z, y, x)``
    to RAS millimetres exactly.

Resampling
    With ``spacing`` given, the volume is resampled (spline of order ``order``, default
    linear, edge values repeated) to exactly that voxel size in mm on every axis that has
    more than one voxel. The new grid keeps the field of view (``round(n * old / new)``
    voxels, centred on the old grid); for a whole-number ratio such as 2 mm -> 1 mm this is
    the grid of ``scipy.ndimage.zoom(..., grid_mode=True)``. An axis with a single voxel
    (a one-slice DICOM) is not resampled and keeps its own spacing.
    MONAI's ``Spacing`` is not used here: it anchors the new grid at the first voxel's
    corner, so an axis whose old size is not a whole multiple of the new one (0.7 mm ->
    1 mm) moves by up to half a voxel, where this grid stays centred on the old one.

Radiographs (:func:`load_radiograph`)
    DICOM (modality transform applied; ``MONOCHROME1`` is inverted so that higher always
    means more attenuation), PNG and TIFF (8- or 16-bit grayscale, 32-bit integer or float;
    colour is converted to luminance). PNG/TIFF values are returned as stored: fracrisk's
    simulated radiographs hold ``line integral * 1000``
    (:data:`fracrisk.simulate._images.RADIOGRAPH_SCALE`) with bone bright, and a PNG or TIFF
    is assumed to be stored bone-bright. No reorientation is done for radiographs.

Errors
    Every problem with a file raises :class:`ImageReadError` (a :class:`ValueError`) naming
    the file and the reason: missing file, unreadable / corrupt / truncated data, NaN or
    infinite values, wrong dimensionality, an empty directory, several series in one
    directory, slices that do not form one regular stack. Bad arguments raise a plain
    :class:`ValueError`. :func:`load_images` applies a cohort-level policy (stop at the first
    bad file, or skip it and report it).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fracrisk.exceptions import DataWarning

__all__ = [
    "CANONICAL_AXCODES",
    "MAX_RADIOGRAPH_PIXELS",
    "MAX_VOXELS",
    "PLAUSIBLE_SPACING_MM",
    "CTVolume",
    "ImageReadError",
    "Radiograph",
    "load_ct",
    "load_images",
    "load_radiograph",
]

#: nibabel axis codes of the canonical voxel axes (z, y, x): towards superior, anterior, left.
CANONICAL_AXCODES: tuple[str, str, str] = ("S", "A", "L")

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
_OBLIQUE_WARN_DEG = 1.0  # warn when a voxel axis is further than this from a world axis
_SLICE_GAP_RTOL = 0.05  # slice gaps may differ from their median by this fraction
_DUPLICATE_MM = 1e-3  # slices closer than this along the normal are duplicates
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)  # ITU-R BT.601, as Pillow's "L"

#: Largest CT a reader allocates, before and after resampling (voxels; 2**28 is 1 GiB of
#: float32, e.g. 512 x 512 x 1024). Header-claimed sizes are checked against it and against
#: the file's own size before any voxel is read.
MAX_VOXELS = 2**28
#: Voxel sizes (mm) a CT may have: below or above is a header error, not a scan.
PLAUSIBLE_SPACING_MM = (0.05, 20.0)
#: Largest radiograph decoded (pixels; a 43 x 43 cm detector at 0.1 mm is 18.5 M).
MAX_RADIOGRAPH_PIXELS = 64_000_000


class ImageReadError(ValueError):
    """A file could not be read as an image; the message names the file and the reason.

    Parameters
    ----------
    path : str or os.PathLike
        The file or directory that failed.
    reason : str
        Why, in words (e.g. ``"not a gzip file"``).

    Attributes
    ----------
    path : str
        The file or directory, as given.
    reason : str
        Why it could not be read.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = str(reason)
        super().__init__(f"cannot read {self.path}: {self.reason}")

    def __reduce__(self):
        # Rebuild from (path, reason) so the error crosses process boundaries intact.
        return (type(self), (self.path, self.reason))


@dataclass(eq=False)
class CTVolume:
    """A CT volume in Hounsfield units, in the canonical orientation.

    Attributes
    ----------
    volume_hu : numpy.ndarray
        float32 ``(nz, ny, nx)`` Hounsfield units. Axis 0 runs inferior -> superior, axis 1
        posterior -> anterior, axis 2 from the patient's right to left (nibabel axis codes
        ``("S", "A", "L")``; see the module notes).
    spacing : tuple of float
        Voxel size in mm, ``(z, y, x)``.
    source : str
        The file or directory the volume was read from.
    affine : numpy.ndarray or None
        4 x 4 float64 voxel-to-world matrix: voxel index ``(z, y, x)`` to RAS+ mm (nibabel
        convention), after reorientation and resampling.
    """

    volume_hu: np.ndarray
    spacing: tuple[float, float, float]
    source: str
    affine: np.ndarray | None = None


@dataclass(eq=False)
class Radiograph:
    """A projection radiograph.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(H, W)``; higher = more attenuation (bone bright). DICOM values are after
        the modality transform (and inversion for ``MONOCHROME1``); PNG/TIFF values as
        stored (fracrisk's simulated radiographs: line integral * 1000, dimensionless).
    pixel_spacing : tuple of float or None
        ``(row, col)`` pixel size in mm when known (DICOM ``PixelSpacing``, else
        ``ImagerPixelSpacing``, or the ``pixel_spacing`` argument), else None.
    source : str
        The file the image was read from.
    """

    image: np.ndarray
    pixel_spacing: tuple[float, float] | None
    source: str


# ------------------------------------------------------------------------------ helpers


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def _has_dicom_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _check_exists(path: Path, source: str) -> None:
    if not path.exists():
        raise ImageReadError(source, "no such file or directory")


def _check_finite(data: np.ndarray, source: str) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ImageReadError(
            source,
            f"{n_nan} NaN and {n_inf} infinite value(s) among {data.size} voxels/pixels",
        )


def _float_tuple(value: Any, n: int) -> tuple[float, ...] | None:
    """``value`` as ``n`` positive finite floats, or None when absent or not so."""
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values


# --------------------------------------------------------------------------------- NIfTI


def _read_nifti(path: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise ImageReadError(source, f"not a readable NIfTI file ({_describe(exc)})") from exc
    shape = tuple(int(n) for n in img.shape)
    _check_nifti_size(path, img, shape, source)
    if len(shape) < 3:
        raise ImageReadError(
            source, f"is a {len(shape)}-D image of shape {shape}; expected a 3-D volume"
        )
    if len(shape) > 3 and math.prod(shape[3:]) != 1:
        raise ImageReadError(
            source,
            f"is a {len(shape)}-D image of shape {shape} holding {math.prod(shape[3:])} "
            "volumes; expected a single 3-D volume",
        )
    try:
        data, affine = _read_nifti_voxels(path)
        data = data.reshape(shape[:3])
    except Exception as exc:
        raise ImageReadError(
            source, f"image data are unreadable or truncated ({_describe(exc)})"
        ) from exc
    header = img.header
    if int(header.get("sform_code", 0)) == 0 and int(header.get("qform_code", 0)) == 0:
        warnings.warn(
            f"{source}: the NIfTI header sets neither an sform nor a qform (both codes 0), so "
            "its orientation is unknown; nibabel's default affine was used",
            DataWarning,
            stacklevel=3,
        )
    return data, affine


def _check_nifti_size(path: Path, img, shape: tuple[int, ...], source: str) -> None:
    """The header's claimed size against the voxel budget and the file: before reading.

    An uncompressed file must hold ``vox_offset + voxels x bytes per voxel``; a gzipped
    one must say so in its trailer (ISIZE, the uncompressed size modulo 2**32).
    """
    voxels = math.prod(shape) if shape else 0
    if voxels > MAX_VOXELS:
        raise ImageReadError(
            source,
            f"header claims {' x '.join(map(str, shape))} = {voxels:,} voxels, more than the "
            f"{MAX_VOXELS:,} a CT reader allocates (fracrisk.imaging.io.MAX_VOXELS)",
        )
    header = img.header
    itemsize = int(header.get_data_dtype().itemsize)
    offset = int(float(header.get("vox_offset", 352)))
    expected = offset + voxels * itemsize
    size = path.stat().st_size
    if str(path).lower().endswith(".gz"):
        if size < 18:
            raise ImageReadError(source, f"is a {size}-byte gzip file: truncated")
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            isize = int.from_bytes(fh.read(4), "little")
        if expected < 2**32 and isize < expected:
            raise ImageReadError(
                source,
                f"header claims {' x '.join(map(str, shape))} voxels ({expected:,} bytes "
                f"uncompressed) but the gzip stream holds {isize:,} bytes: truncated or "
                "a forged header",
            )
    elif size < expected:
        raise ImageReadError(
            source,
            f"header claims {' x '.join(map(str, shape))} voxels ({expected:,} bytes) but "
            f"the file has {size:,} bytes: truncated or a forged header",
        )


def _check_spacing(voxel_sizes: tuple[float, float, float], shape, source: str) -> None:
    low, high = PLAUSIBLE_SPACING_MM
    bad = [v for v in voxel_sizes if not (math.isfinite(v) and low <= v <= high)]
    if bad:
        sizes = " x ".join(f"{v:g}" for v in voxel_sizes)
        raise ImageReadError(
            source,
            f"voxel size {sizes} mm is not a CT's (plausible: {low:g} to {high:g} mm per "
            "axis); the header's spacing is wrong",
        )


def _check_resampled_size(shape, voxel_sizes, target: float, source: str) -> None:
    out = [
        1 if n == 1 else max(1, round(n * v / target))
        for n, v in zip(shape, voxel_sizes, strict=True)
    ]
    if math.prod(out) > MAX_VOXELS:
        raise ImageReadError(
            source,
            f"resampling {' x '.join(map(str, shape))} voxels of "
            f"{' x '.join(f'{v:g}' for v in voxel_sizes)} mm to {target:g} mm would make "
            f"{' x '.join(map(str, out))} = {math.prod(out):,} voxels, more than "
            f"{MAX_VOXELS:,} (fracrisk.imaging.io.MAX_VOXELS)",
        )


def _read_nifti_voxels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (as stored, header scaling applied) and affine, by MONAI's nibabel reader.

    The reader ``LoadImage`` uses for NIfTI, called directly: ``LoadImage`` itself would
    construct every reader it knows (DICOM and image codecs included) on each call.
    """
    from monai.data import NibabelReader

    reader = NibabelReader()
    image = reader.read(str(path))
    data, meta = reader.get_data(image)
    return np.asarray(data, dtype=np.float32), np.asarray(meta["affine"], np.float64)


# --------------------------------------------------------------------------------- DICOM


def _dcmread(path: Path, source: str, where: str = ""):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise ImageReadError(
            source, f"{where}not a DICOM file (and not .nii/.nii.gz NIfTI): {_describe(exc)}"
        ) from exc
    except Exception as exc:
        raise ImageReadError(
            source, f"{where}corrupt or truncated DICOM file ({_describe(exc)})"
        ) from exc


def _has_pixels(ds) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _pixel_array(ds, source: str, where: str) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageReadError(
            source,
            f"{where}cannot decode the pixel data (transfer syntax {syntax}; truncated or "
            f"unsupported: {_describe(exc)})",
        ) from exc


def _group_value(ds, frame: int | None, group: str, keyword: str):
    """``keyword`` from the per-frame, then shared functional group, then the top level."""
    seqs = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if frame < len(per_frame):
            seqs.append(per_frame[frame])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        seqs.append(ds.SharedFunctionalGroupsSequence[0])
    for item in seqs:
        sequence = item.get(group)
        if sequence and keyword in sequence[0]:
            return sequence[0].get(keyword)
    return ds.get(keyword)


@dataclass
class _Slice:
    pixels: np.ndarray  # 2-D float, after the modality transform
    position: np.ndarray | None  # LPS mm of the first pixel's centre
    orientation: np.ndarray | None  # 6 direction cosines (row direction, column direction)
    pixel_spacing: tuple[float, ...] | None  # (between rows, between columns) mm
    thickness: float | None  # SpacingBetweenSlices, else SliceThickness (mm)
    where: str  # file (and frame) for messages


def _vector(value, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _thickness(ds, frame: int | None) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _float_tuple([_group_value(ds, frame, "PixelMeasuresSequence", keyword)], 1)
        if value is not None:
            return value[0]
    return None


def _slices_from_dataset(ds, source: str, where: str) -> list[_Slice]:
    """One slice per frame of a DICOM image dataset, HU after the modality transform."""
    from pydicom.pixels import apply_modality_lut

    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise ImageReadError(
            source,
            f"{where}has {ds.SamplesPerPixel} samples per pixel "
            f"({ds.get('PhotometricInterpretation')}); a CT slice has one",
        )
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = _pixel_array(ds, source, where)
    if n_frames == 1:
        arr = arr.reshape((1, *arr.shape[-2:])) if arr.ndim == 2 else arr
    if arr.ndim != 3 or arr.shape[0] != n_frames:
        raise ImageReadError(source, f"{where}pixel data of shape {arr.shape} is not 2-D frames")
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    top_pos = _vector(ds.get("ImagePositionPatient"), 3)
    slices = []
    for i in range(n_frames):
        frame = i if n_frames > 1 or enhanced else None
        tag = f"{where}frame {i + 1}: " if n_frames > 1 else where
        if enhanced:
            slope = _group_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
            inter = _group_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
            slope = 1.0 if slope is None else float(slope)
            inter = 0.0 if inter is None else float(inter)
            pixels = arr[i].astype(np.float64) * slope + inter
        else:
            pixels = np.asarray(apply_modality_lut(arr[i], ds), np.float64)
        orientation = _vector(
            _group_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"), 6
        )
        position = _vector(
            _group_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient"), 3
        )
        thickness = _thickness(ds, frame)
        if n_frames > 1 and (position is None or (not enhanced and i > 0)):
            # Legacy multi-frame: frames stacked from the first position along the normal.
            if top_pos is None or orientation is None or thickness is None:
                raise ImageReadError(
                    source,
                    f"{tag}no per-frame ImagePositionPatient and no position, orientation and "
                    "slice spacing to place the frames",
                )
            normal = np.cross(orientation[:3], orientation[3:])
            position = top_pos + i * thickness * normal / np.linalg.norm(normal)
        spacing = _float_tuple(_group_value(ds, frame, "PixelMeasuresSequence", "PixelSpacing"), 2)
        slices.append(_Slice(pixels, position, orientation, spacing, thickness, tag))
    return slices


def _warn_modality(ds, source: str) -> None:
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality != "CT":
        warnings.warn(
            f"{source}: Modality is {modality!r}, not 'CT': the values are not Hounsfield units",
            DataWarning,
            stacklevel=4,
        )


def _stack_slices(slices: list[_Slice], source: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort the slices along their normal and build the RAS voxel-to-world affine."""
    n = len(slices)
    shapes = sorted({s.pixels.shape for s in slices})
    if len(shapes) > 1:
        raise ImageReadError(source, f"slices have different sizes {shapes}; not one stack")
    missing_iop = [s.where.rstrip(": ") or "file" for s in slices if s.orientation is None]
    missing_ipp = [s.where.rstrip(": ") or "file" for s in slices if s.position is None]
    if n > 1 and (missing_iop or missing_ipp):
        names = ", ".join(sorted(set(missing_iop + missing_ipp))[:5])
        raise ImageReadError(
            source,
            "ImageOrientationPatient or ImagePositionPatient missing (in "
            f"{names}); the slices cannot be ordered",
        )
    if n == 1 and (missing_iop or missing_ipp):
        warnings.warn(
            f"{source}: no ImageOrientationPatient/ImagePositionPatient; assuming an axial "
            "slice (rows towards the patient's left, columns towards posterior) at the origin",
            DataWarning,
            stacklevel=4,
        )
    orientation = slices[0].orientation
    if orientation is None:
        orientation = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    for s in slices[1:]:
        if not np.allclose(s.orientation, orientation, atol=1e-3):
            raise ImageReadError(
                source,
                f"{s.where.rstrip(': ')} has ImageOrientationPatient {s.orientation.tolist()} "
                f"but the first slice has {orientation.tolist()}; not one stack",
            )
    row_dir = orientation[:3] / np.linalg.norm(orientation[:3])  # along a row: column index
    col_dir = orientation[3:] / np.linalg.norm(orientation[3:])  # down a column: row index
    normal = np.cross(row_dir, col_dir)
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        raise ImageReadError(
            source, f"ImageOrientationPatient {orientation.tolist()} is degenerate"
        )
    spacings = {s.pixel_spacing for s in slices}
    if None in spacings:
        raise ImageReadError(source, "PixelSpacing is missing or not two positive numbers")
    if len(spacings) > 1:
        raise ImageReadError(
            source, f"slices have different PixelSpacing {sorted(spacings)}; not one stack"
        )
    pixel_spacing = slices[0].pixel_spacing
    positions = np.array(
        [np.zeros(3) if s.position is None else s.position for s in slices], np.float64
    )
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if n > 1:
        gaps = np.diff(along[order])
        dup = np.flatnonzero(gaps < _DUPLICATE_MM)
        if dup.size:
            a, b = slices[order[dup[0]]].where, slices[order[dup[0] + 1]].where
            raise ImageReadError(
                source,
                f"{dup.size} pair(s) of slices share a position along the slice normal "
                f"(e.g. {a.rstrip(': ')} and {b.rstrip(': ')} at {along[order[dup[0]]]:.4g} mm); "
                "duplicate slices or several acquisitions in one series",
            )
        step = float(np.median(gaps))
        if np.max(np.abs(gaps - step)) > _SLICE_GAP_RTOL * step:
            raise ImageReadError(
                source,
                f"slice spacing is not uniform ({gaps.min():.4g} to {gaps.max():.4g} mm, "
                f"median {step:.4g} mm); missing slices?",
            )
        slice_vec = (positions[order[-1]] - positions[order[0]]) / (n - 1)
    else:
        thickness = slices[0].thickness
        if thickness is None:
            warnings.warn(
                f"{source}: single slice without SpacingBetweenSlices or SliceThickness; "
                "its thickness is taken as 1 mm",
                DataWarning,
                stacklevel=4,
            )
            thickness = 1.0
        slice_vec = normal * thickness
    data = np.stack([slices[i].pixels for i in order]).astype(np.float32)
    lps = np.eye(4)
    lps[:3, 0] = slice_vec
    lps[:3, 1] = col_dir * pixel_spacing[0]  # row index: PixelSpacing[0] between rows
    lps[:3, 2] = row_dir * pixel_spacing[1]  # column index: PixelSpacing[1] between columns
    lps[:3, 3] = positions[order[0]]
    return data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _read_dicom_file(path: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    ds = _dcmread(path, source)
    if not _has_pixels(ds):
        raise ImageReadError(source, "DICOM file has no pixel data")
    _warn_modality(ds, source)
    return _stack_slices(_slices_from_dataset(ds, source, ""), source)


def _read_dicom_dir(path: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(
        f
        for f in path.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.name.upper() != "DICOMDIR"
    )
    if not files:
        raise ImageReadError(
            source,
            "directory holds no files (expected one DICOM series; sub-directories "
            "are not searched)",
        )
    datasets = []
    for f in files:
        ds = _dcmread(f, source, where=f"file {f.name}: ")
        if _has_pixels(ds):  # other objects (reports, presentation states) are not slices
            datasets.append((f, ds))
    if not datasets:
        raise ImageReadError(source, f"none of its {len(files)} DICOM files holds pixel data")
    series: dict[str, list] = {}
    for f, ds in datasets:
        series.setdefault(str(ds.get("SeriesInstanceUID", "<missing>")), []).append(f)
    if len(series) > 1:
        listing = "; ".join(
            f"{uid} ({len(fs)} file(s), e.g. {fs[0].name})" for uid, fs in sorted(series.items())
        )
        raise ImageReadError(
            source,
            f"holds {len(series)} DICOM series (SeriesInstanceUID {listing}); "
            "put one series per directory",
        )
    for keyword, what in (("PatientID", "patients"), ("StudyInstanceUID", "studies")):
        values: dict[str, list] = {}
        for f, ds in datasets:
            values.setdefault(str(ds.get(keyword, "<missing>")), []).append(f.name)
        if len(values) > 1:
            listing = "; ".join(
                f"{value!r} ({len(names)} file(s), e.g. {names[0]})"
                for value, names in sorted(values.items())
            )
            raise ImageReadError(
                source,
                f"its slices belong to {len(values)} {what} ({keyword} {listing}): one "
                "series must come from one patient and one study",
            )
    claimed = sum(
        int(ds.get("Rows", 0) or 0)
        * int(ds.get("Columns", 0) or 0)
        * int(ds.get("NumberOfFrames", 1) or 1)
        for _, ds in datasets
    )
    if claimed > MAX_VOXELS:
        raise ImageReadError(
            source,
            f"its {len(datasets)} slices claim {claimed:,} voxels, more than the "
            f"{MAX_VOXELS:,} a CT reader allocates (fracrisk.imaging.io.MAX_VOXELS)",
        )
    _warn_modality(datasets[0][1], source)
    if len(datasets) > 1:
        multi = [f.name for f, ds in datasets if int(ds.get("NumberOfFrames", 1) or 1) > 1]
        if multi:
            raise ImageReadError(
                source, f"mixes multi-frame files ({', '.join(multi[:5])}) with other slices"
            )
    slices = []
    for f, ds in datasets:
        slices.extend(_slices_from_dataset(ds, source, f"file {f.name}: "))
    return _stack_slices(slices, source)


# ------------------------------------------------------------------- orientation, resampling


def _to_canonical(
    data: np.ndarray, affine: np.ndarray, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Flip / permute ``data`` to the canonical axes; returns the array and its affine."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation
    from nibabel.orientations import io_orientation

    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ImageReadError(
            source, f"the voxel-to-world affine is singular or not finite:\n{affine}"
        )
    if np.isnan(io_orientation(affine)).any():
        raise ImageReadError(source, "the affine does not give every voxel axis a direction")
    # MONAI's Orientation: flips and axis permutations to the canonical axis codes.
    ras = (("L", "R"), ("P", "A"), ("I", "S"))  # affine axes: RAS+ millimetres
    oriented = Orientation(axcodes="".join(CANONICAL_AXCODES), labels=ras)(
        MetaTensor(
            torch.from_numpy(np.ascontiguousarray(data))[None], affine=torch.from_numpy(affine)
        )
    )
    out = oriented[0].numpy()
    new_affine = np.asarray(oriented.affine.numpy(), np.float64)
    directions = new_affine[:3, :3] / np.linalg.norm(new_affine[:3, :3], axis=0)
    off_axis = np.degrees(np.arccos(np.clip(np.abs(directions).max(axis=0), -1.0, 1.0)))
    if off_axis.max() > _OBLIQUE_WARN_DEG:
        warnings.warn(
            f"{source}: oblique acquisition (a voxel axis is {off_axis.max():.1f} degrees from "
            "the nearest patient axis); reoriented to the closest axes without rotating the "
            "image, so the canonical axes are approximate (the affine stays exact)",
            DataWarning,
            stacklevel=3,
        )
    return np.ascontiguousarray(out), new_affine


def _voxel_sizes(affine: np.ndarray) -> tuple[float, float, float]:
    z, y, x = (float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return z, y, x


def _resample(
    data: np.ndarray, affine: np.ndarray, target: float, order: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Resample to ``target`` mm on every axis longer than one voxel (field of view kept).

    Returns the array, its affine and its voxel sizes (exactly ``target`` where resampled).
    """
    from scipy import ndimage

    old = _voxel_sizes(affine)
    steps, offsets, shape, sizes = [], [], [], []
    for n, size in zip(data.shape, old, strict=True):
        sizes.append(size if n == 1 else target)
        if n == 1:
            steps.append(1.0)
            offsets.append(0.0)
            shape.append(1)
            continue
        m = max(1, round(n * size / target))
        step = target / size  # input voxels per output voxel
        steps.append(step)
        offsets.append((n - 1) / 2 - (m - 1) / 2 * step)  # centred on the input grid
        shape.append(m)
    if tuple(shape) == data.shape and np.allclose(steps, 1.0) and np.allclose(offsets, 0.0):
        return data, affine, old
    out = ndimage.affine_transform(
        data,
        np.asarray(steps),
        offset=np.asarray(offsets),
        output_shape=tuple(shape),
        output=np.float32,
        order=order,
        mode="nearest",
    )
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(steps)
    index_map[:3, 3] = offsets
    return out, affine @ index_map, (sizes[0], sizes[1], sizes[2])


# ---------------------------------------------------------------------------------- load_ct


def load_ct(path: str | os.PathLike, *, spacing: float | None = 1.0, order: int = 1) -> CTVolume:
    """Read a CT volume in HU and bring it to the canonical orientation (and spacing).

    Parameters
    ----------
    path : str or os.PathLike
        A NIfTI file (``.nii`` or ``.nii.gz``), a directory holding exactly one DICOM series
        (files starting with ``.`` and ``DICOMDIR`` are ignored, as are DICOM objects without
        pixel data; sub-directories are not searched), or a single DICOM file (one slice,
        read as a volume of depth 1, or a multi-frame volume).
    spacing : float or None, default 1.0
        Isotropic voxel size in mm to resample to; None keeps the file's grid.
    order : int, default 1
        Spline order of the resampling (0 nearest, 1 linear, up to 5; orders above 1 can
        overshoot at edges).

    Returns
    -------
    CTVolume
        float32 ``(nz, ny, nx)`` HU with axis 0 inferior -> superior, axis 1 posterior ->
        anterior, axis 2 right -> left; ``spacing`` in mm ``(z, y, x)``; ``affine`` from
        voxel ``(z, y, x)`` to RAS mm.

    Raises
    ------
    ImageReadError
        The path does not exist; the file is not NIfTI/DICOM, is corrupt or truncated; the
        image is not one 3-D volume (2-D NIfTI, 4-D with several volumes); it holds NaN or
        infinite values; a directory is empty, holds several series, slices of several
        patients or studies, or slices that do not form one regular stack (different sizes
        or orientations, duplicate positions, missing slices); the header claims more than
        :data:`MAX_VOXELS` voxels or more bytes than the file holds (checked before any
        voxel is read); the voxel size is outside :data:`PLAUSIBLE_SPACING_MM`; resampling
        would exceed :data:`MAX_VOXELS`.
    ValueError
        ``spacing`` is not a positive number or ``order`` not in 0-5.

    Warns
    -----
    DataWarning
        The orientation is unknown (NIfTI without sform/qform; DICOM slice without
        position/orientation) or oblique (more than 1 degree), or a DICOM ``Modality`` is
        not CT.
    """
    if spacing is not None:
        if isinstance(spacing, bool) or not np.isscalar(spacing):
            raise ValueError(f"spacing must be a positive number of mm or None, got {spacing!r}")
        spacing = float(spacing)
        if not (math.isfinite(spacing) and spacing > 0):
            raise ValueError(f"spacing must be a positive number of mm or None, got {spacing!r}")
    if isinstance(order, bool) or int(order) != order or not 0 <= int(order) <= 5:
        raise ValueError(f"order must be an integer from 0 to 5, got {order!r}")
    source = os.fspath(path)
    p = Path(source)
    _check_exists(p, source)
    if p.is_dir():
        data, affine = _read_dicom_dir(p, source)
    elif _is_nifti(p):
        data, affine = _read_nifti(p, source)
    else:
        data, affine = _read_dicom_file(p, source)
    _check_finite(data, source)
    data, affine = _to_canonical(data, affine, source)
    voxel_sizes = _voxel_sizes(affine)
    _check_spacing(voxel_sizes, data.shape, source)
    if spacing is not None:
        _check_resampled_size(data.shape, voxel_sizes, spacing, source)
        data, affine, voxel_sizes = _resample(data, affine, spacing, int(order))
    return CTVolume(np.ascontiguousarray(data, dtype=np.float32), voxel_sizes, source, affine)


# --------------------------------------------------------------------------- radiographs


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type


def _check_png_complete(path: Path, source: str) -> None:
    """A PNG's image data must decompress to every row its header claims.

    Pillow fills the rows of a PNG whose compressed stream ends early with zeros, without a
    word; here the stream is inflated (bounded by the claimed size) and its length checked.
    """
    import zlib

    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return
    position, idat, header = 8, [], None
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR" and len(body) >= 13:
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None:
        raise ImageReadError(source, "PNG without an IHDR header")
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlace = header[8], header[9], header[12]
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or interlace != 0:
        return  # Adam7 interlacing: Pillow's own checks only
    row = 1 + (width * depth * channels + 7) // 8
    expected = height * row
    inflater = zlib.decompressobj()
    try:
        got = len(inflater.decompress(b"".join(idat), expected + 1))
    except zlib.error as exc:
        raise ImageReadError(source, f"corrupt PNG image data ({exc})") from exc
    if got < expected:
        raise ImageReadError(
            source,
            f"PNG header claims {width} x {height} pixels ({height} rows) but its image data "
            f"hold {got // row} complete row(s): truncated",
        )


def _read_pil(path: Path, source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the pixel budget below is the check that counts
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            width, height = im.size
            if width * height > MAX_RADIOGRAPH_PIXELS:
                raise ImageReadError(
                    source,
                    f"header claims {width} x {height} = {width * height:,} pixels, more than "
                    f"the {MAX_RADIOGRAPH_PIXELS:,} a radiograph reader decodes "
                    "(fracrisk.imaging.io.MAX_RADIOGRAPH_PIXELS)",
                )
            if im.format == "PNG":
                _check_png_complete(path, source)
            n_frames = int(getattr(im, "n_frames", 1))
            if n_frames > 1:
                raise ImageReadError(
                    source, f"holds {n_frames} frames/pages; expected a single radiograph"
                )
            im.load()
            mode = im.mode
            if mode in ("L", "I", "F") or mode.startswith("I;16"):
                arr = np.asarray(im).astype(np.float32)
            elif mode in ("LA", "La"):
                arr = np.asarray(im.getchannel(0)).astype(np.float32)
            elif mode == "1":
                arr = np.asarray(im.convert("L")).astype(np.float32)
            else:  # RGB, RGBA, palette, CMYK, YCbCr, ...: luminance (alpha ignored)
                rgb = np.asarray(im.convert("RGB"), np.float64)
                arr = (rgb @ _LUMA).astype(np.float32)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            source, "not a recognised image (expected PNG, TIFF or DICOM)"
        ) from exc
    except Exception as exc:
        raise ImageReadError(source, f"corrupt or truncated image file ({_describe(exc)})") from exc
    if arr.ndim != 2:
        raise ImageReadError(source, f"image of shape {arr.shape} is not 2-D grayscale")
    return arr


def _read_dicom_radiograph(path: Path, source: str) -> tuple[np.ndarray, tuple | None]:
    from pydicom.pixels import apply_modality_lut

    ds = _dcmread(path, source)
    if not _has_pixels(ds):
        raise ImageReadError(source, "DICOM file has no pixel data")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        raise ImageReadError(source, f"holds {n_frames} frames; expected a single radiograph")
    arr = _pixel_array(ds, source, "")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        image = np.asarray(arr, np.float64) @ _LUMA  # pydicom returns RGB
    elif arr.ndim == 2:
        image = np.asarray(apply_modality_lut(arr, ds), np.float64)
        if photometric == "MONOCHROME1":
            # MONOCHROME1: the lowest value is displayed white. Reflect the whole
            # representable range onto itself so that higher = more attenuation.
            bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
            if int(ds.get("PixelRepresentation", 0)) == 1:
                stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], np.int64)
            else:
                stored = np.array([0, 2**bits - 1], np.int64)
            ends = np.asarray(apply_modality_lut(stored, ds), np.float64)
            image = (ends.min() + ends.max()) - image
    else:
        raise ImageReadError(source, f"pixel data of shape {arr.shape} is not one 2-D image")
    spacing = None
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            spacing = _float_tuple(ds.get(keyword), 2)
            if spacing is None:
                warnings.warn(
                    f"{source}: {keyword} {ds.get(keyword)!r} is not two positive numbers; ignored",
                    DataWarning,
                    stacklevel=3,
                )
            else:
                break
    return image.astype(np.float32), spacing


def load_radiograph(
    path: str | os.PathLike,
    *,
    pixel_spacing: float | tuple[float, float] | None = None,
) -> Radiograph:
    """Read a projection radiograph (DICOM, PNG or TIFF) as a float32 bone-bright image.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM file (recognised by its ``.dcm`` / ``.dicom`` / ``.dic`` suffix or its
        ``DICM`` marker) or any single-frame image Pillow reads (PNG, TIFF, ...).
    pixel_spacing : float or (float, float), optional
        ``(row, col)`` pixel size in mm (a single number for square pixels); replaces the
        spacing found in the file, or supplies it for PNG/TIFF, which carry none that is
        trusted.

    Returns
    -------
    Radiograph
        float32 ``(H, W)`` image (higher = more attenuation), pixel spacing in mm (or None)
        and the source. DICOM: values after the modality transform (``RescaleSlope`` /
        ``RescaleIntercept`` or modality LUT); ``MONOCHROME1`` is reflected over the
        representable range so bone is bright; spacing from ``PixelSpacing``, else
        ``ImagerPixelSpacing`` (detector plane, includes geometric magnification). PNG/TIFF:
        values as stored (8-bit 0-255, 16-bit 0-65535, 32-bit integer or float), colour
        converted to luminance (0.299 R + 0.587 G + 0.114 B, alpha ignored).

    Raises
    ------
    ImageReadError
        Missing, unrecognised, corrupt or truncated file; more than one frame; NaN or
        infinite values.
    ValueError
        ``pixel_spacing`` is not one or two positive numbers.
    """
    override = None
    if pixel_spacing is not None:
        values = [pixel_spacing] if np.isscalar(pixel_spacing) else pixel_spacing
        override = _float_tuple(values, len(values) if len(values) in (1, 2) else 0)
        if override is None:
            raise ValueError(
                f"pixel_spacing must be one or two positive numbers of mm, got {pixel_spacing!r}"
            )
        if len(override) == 1:
            override = (override[0], override[0])
    source = os.fspath(path)
    p = Path(source)
    _check_exists(p, source)
    if p.is_dir():
        raise ImageReadError(source, "is a directory; expected an image file")
    if p.suffix.lower() in _DICOM_SUFFIXES or _has_dicom_marker(p):
        image, spacing = _read_dicom_radiograph(p, source)
    else:
        image, spacing = _read_pil(p, source), None
    _check_finite(image, source)
    if override is not None:
        spacing = override
    return Radiograph(np.ascontiguousarray(image, dtype=np.float32), spacing, source)


# ---------------------------------------------------------------------------- load_images


def _is_missing(path: Any) -> bool:
    if path is None:
        return True
    if isinstance(path, float) and math.isnan(path):
        return True
    return isinstance(path, str) and not path.strip()


def load_images(
    paths: Iterable[str | os.PathLike | None],
    loader: Callable[[Any], Any],
    *,
    on_error: str = "raise",
) -> tuple[list, list[tuple[str, str]]]:
    """Load many images with one policy for files that cannot be read.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        One path per image (e.g. a cohort's image column). A missing entry (None, NaN or an
        empty string) counts as a file that cannot be read.
    loader : callable
        Called with each path, e.g. :func:`load_ct`, :func:`load_radiograph` or
        ``functools.partial(load_ct, spacing=2.0)``. Only :class:`ImageReadError` counts as a
        bad file; any other exception (a bug, a bad argument, memory) propagates.
    on_error : {"raise", "skip"}, default "raise"
        ``"raise"``: stop at the first bad file with its :class:`ImageReadError`.
        ``"skip"``: put None in its place, record it, carry on, and warn once at the end.

    Returns
    -------
    items : list
        What ``loader`` returned, in the order of ``paths``; None for skipped files.
    failures : list of (str, str)
        ``(path, reason)`` of every skipped file, in order (empty with ``"raise"``).

    Raises
    ------
    ImageReadError
        With ``on_error="raise"``, the first bad file.
    ValueError
        ``on_error`` is neither ``"raise"`` nor ``"skip"``.
    TypeError
        ``paths`` is a single path rather than a collection of paths.

    Warns
    -----
    DataWarning
        With ``on_error="skip"``, when any file was skipped: how many, out of how many, and
        the first few paths with their reasons.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("paths must be a collection of paths, not a single path")
    items: list = []
    failures: list[tuple[str, str]] = []
    for path in paths:
        try:
            if _is_missing(path):
                raise ImageReadError(str(path), "no path given (missing value)")
            items.append(loader(path))
        except ImageReadError as exc:
            if on_error == "raise":
                raise
            name = str(path) if _is_missing(path) else os.fspath(path)
            failures.append((name, exc.reason if exc.path == name else str(exc)))
            items.append(None)
    if failures:
        shown = "; ".join(f"{p}: {r}" for p, r in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        warnings.warn(
            f"{len(failures)} of {len(items)} images could not be read and were skipped "
            f"(None in their place): {shown}{more}",
            DataWarning,
            stacklevel=2,
        )
    return items, failures
