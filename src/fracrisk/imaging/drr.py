r"""Digitally reconstructed radiographs (DRRs): line integrals of attenuation through a CT volume.

Conventions shared by every image module of the package:

* a volume has axes ``(z, y, x)``: z inferior -> superior, y posterior -> anterior, x the
  patient's right -> left; a batch adds a leading axis ``(B, z, y, x)``;
* ``spacing`` is the voxel size ``(dz, dy, dx)`` in mm;
* a point's position in mm is measured from the volume's corner, with the centre of voxel
  ``i`` at ``(i + 0.5) * spacing`` (the volume spans ``[0, n * spacing]`` on each axis);
* image pixel ``(row, col)`` has its centre at integer coordinates.

Views (the central ray runs along the view's axis):

==========  ==============  =================================  ===============================
view        integrated axis  rows (top -> bottom)               columns (left -> right)
==========  ==============  =================================  ===============================
frontal     y               z, superior at the top             x, patient's right on the left
lateral     x               z, superior at the top             y, posterior on the left
axial       z               y, posterior at the top            x, patient's right on the left
==========  ==============  =================================  ===============================

Two geometries (:mod:`fracrisk.imaging.geometry`): parallel beam, a sum along the axis, and
cone beam, rendered by shear-warp: the volume is cut into slices across the beam, each slice
is resampled (bilinear) at its own magnification onto the detector grid, and the slices are
summed with the obliquity of each ray. On the CPU a compiled kernel does this in one pass;
elsewhere (CUDA, bf16, or when the volume needs a gradient) ``grid_sample`` does the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fracrisk.imaging._drr_kernel import linear_taps, shear_warp_sum
from fracrisk.imaging.geometry import ConeBeam, ParallelBeam, resolve_geometry, rotation_matrix

__all__ = [
    "MU_WATER_PER_MM",
    "VIEWS",
    "detector_rays",
    "hu_to_attenuation",
    "project_points",
    "render_drr",
    "view_geometry",
]

# Linear attenuation coefficient of water at 60 keV, the mean energy of a ~100-120 kVp
# diagnostic beam: mass attenuation mu/rho = 0.2059 cm^2/g (NIST XCOM / Hubbell & Seltzer,
# "Tables of X-ray mass attenuation coefficients", NISTIR 5632, 1995), density 1.0 g/cm^3,
# so mu = 0.206 /cm = 0.0206 /mm (0.184 /cm at 80 keV).
MU_WATER_PER_MM = 0.0206


@dataclass(frozen=True)
class _View:
    """How one view is read off a ``(..., z, y, x)`` volume."""

    axis: int  # volume axis (0 = z, 1 = y, 2 = x) integrated along
    rows: int  # volume axis along the image rows
    cols: int  # volume axis along the image columns
    flip_rows: bool  # True when the first row is the last slice (superior at the top)
    source_side: int  # +1: the cone-beam source lies towards +axis, -1: towards -axis


#: The supported views; see the module docstring for the orientation of each.
VIEWS: dict[str, _View] = {
    "frontal": _View(axis=1, rows=0, cols=2, flip_rows=True, source_side=+1),  # AP
    "lateral": _View(axis=2, rows=0, cols=1, flip_rows=True, source_side=-1),  # source right
    "axial": _View(axis=0, rows=1, cols=2, flip_rows=False, source_side=-1),  # source below
}


def hu_to_attenuation(volume_hu, mu_water: float = MU_WATER_PER_MM):
    r"""Linear attenuation coefficient (1/mm) from Hounsfield units.

    .. math:: \mu = \mu_\text{water} \, \max\!\left(0,\; 1 + \frac{\text{HU}}{1000}\right)

    which inverts the definition :math:`\text{HU} = 1000 (\mu - \mu_\text{water}) /
    \mu_\text{water}` (air, -1000 HU, has :math:`\mu \approx 0`); values below -1000 HU (noise)
    are clipped to zero attenuation.

    Parameters
    ----------
    volume_hu : numpy.ndarray or torch.Tensor
        Any shape, in Hounsfield units.
    mu_water : float, default MU_WATER_PER_MM
        Attenuation of water in 1/mm at the effective beam energy.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, shape (and device) as the input; float32 for integer input, otherwise the
        input's floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> [round(float(v), 4) for v in hu_to_attenuation(np.array([-1000, 0, 1000], dtype=np.int16))]
    [0.0, 0.0206, 0.0412]
    """
    if not (isinstance(mu_water, (int, float)) and math.isfinite(mu_water) and mu_water > 0):
        raise ValueError(f"mu_water must be a positive number (1/mm), got {mu_water!r}")
    if isinstance(volume_hu, torch.Tensor):
        hu = volume_hu if volume_hu.is_floating_point() else volume_hu.to(torch.float32)
        return torch.clamp_min(hu * (mu_water / 1000.0) + mu_water, 0.0)
    hu = np.asarray(volume_hu)
    if not np.issubdtype(hu.dtype, np.floating):
        hu = hu.astype(np.float32)
    return np.maximum(hu * hu.dtype.type(mu_water / 1000.0) + hu.dtype.type(mu_water), 0)


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"spacing must be 3 positive voxel sizes (dz, dy, dx) in mm, got {spacing!r}"
        ) from err
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(
            f"spacing must be 3 positive voxel sizes (dz, dy, dx) in mm, got {spacing!r}"
        )
    return values


def _check_views(views) -> tuple[str, ...]:
    names = (views,) if isinstance(views, str) else tuple(views)
    if not names:
        raise ValueError(f"views must name at least one of {sorted(VIEWS)}, got {views!r}")
    for name in names:
        if name not in VIEWS:
            raise ValueError(
                f"unknown view {name!r} in views; valid views are "
                f"{', '.join(repr(v) for v in VIEWS)}"
            )
    return names


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = size
        ok = int(h) == h and int(w) == w and h >= 1 and w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"size must be None or two positive integers (H, W), got {size!r}")
    return int(h), int(w)


def _check_window(window) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError) as err:
        raise ValueError(f"window must be None or (lo, hi) with lo < hi, got {window!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"window must be None or (lo, hi) with lo < hi, got {window!r}")
    return lo, hi


def view_geometry(
    view: str, volume_shape: Sequence[int], spacing: Sequence[float]
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Native image shape ``(H, W)`` and pixel spacing ``(row, col)`` in mm of one view.

    Parameters
    ----------
    view : {"frontal", "lateral", "axial"}
        The view.
    volume_shape : sequence of int
        ``(nz, ny, nx)`` (a leading batch size is ignored).
    spacing : sequence of float
        ``(dz, dy, dx)`` in mm.

    Returns
    -------
    (H, W), (row_spacing, col_spacing)

    Examples
    --------
    >>> view_geometry("lateral", (176, 96, 80), (1.0, 0.5, 0.5))
    ((176, 96), (1.0, 0.5))
    """
    spec = VIEWS[_check_views(view)[0]]
    shape = tuple(int(n) for n in volume_shape)[-3:]
    sp = _check_spacing(spacing)
    return (shape[spec.rows], shape[spec.cols]), (sp[spec.rows], sp[spec.cols])


def project_points(
    points_mm,
    view: str,
    volume_shape: Sequence[int],
    spacing: Sequence[float],
    *,
    size: tuple[int, int] | None = None,
    angle: float | Sequence[float] = 0.0,
    geometry: str | ParallelBeam | ConeBeam | dict = "parallel",
) -> np.ndarray:
    """Pixel coordinates ``(col, row)`` at which :func:`render_drr` shows 3D points.

    Parameters
    ----------
    points_mm : array-like, shape (..., 3)
        Positions ``(z, y, x)`` in mm, with voxel ``i``'s centre at ``(i + 0.5) * spacing``.
    view : {"frontal", "lateral", "axial"}
        The view.
    volume_shape, spacing : sequence
        ``(nz, ny, nx)`` and ``(dz, dy, dx)`` of the volume.
    size : (H, W), optional
        The ``size`` passed to :func:`render_drr`, if any.
    angle : float or (float, float, float), default 0
        The rotation (degrees) passed to :func:`render_drr` for this volume: about z, or
        ``(z, x, y)``.
    geometry : str, ParallelBeam, ConeBeam or dict, default "parallel"
        The ``geometry`` passed to :func:`render_drr`.

    Returns
    -------
    numpy.ndarray, shape (..., 2)
        ``(x = col, y = row)`` in pixels, integer values at pixel centres.

    Examples
    --------
    >>> project_points([[0.5, 0.5, 0.5]], "lateral", (4, 3, 2), (1, 1, 1)).tolist()
    [[0.0, 3.0]]
    """
    spec = VIEWS[_check_views(view)[0]]
    geometry = resolve_geometry(geometry)
    shape = tuple(int(n) for n in volume_shape)[-3:]
    sp = np.asarray(_check_spacing(spacing))
    pts = np.asarray(points_mm, dtype=np.float64)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points_mm must have shape (..., 3) (z, y, x), got {pts.shape}")
    angles = _check_angles(angle, 1)
    angles = np.asarray(geometry.rotation) + (0.0 if angles is None else angles[0])
    centre = np.asarray(shape) * sp / 2
    rel = pts - centre  # from the isocentre, mm
    if angles.any():  # the rotation render_drr applies, about the centre of the volume
        rel = rel @ rotation_matrix(angles).T
    native = (shape[spec.rows], shape[spec.cols])
    h, w = _check_size(size) or native
    if isinstance(geometry, ConeBeam):
        pixel = _cone_detector_spacing(spec, shape, sp, geometry, (h, w))
        depth = -spec.source_side * rel[..., spec.axis]  # towards the detector
        scale = geometry.source_to_detector / (geometry.source_to_isocentre + depth)
    else:
        pixel = (sp[spec.rows] * native[0] / h, sp[spec.cols] * native[1] / w)
        scale = 1.0
    rows = rel[..., spec.rows] * scale / pixel[0] + (h - 1) / 2
    cols = rel[..., spec.cols] * scale / pixel[1] + (w - 1) / 2
    if spec.flip_rows:
        rows = h - 1 - rows
    return np.stack([cols, rows], -1)


def detector_rays(
    view: str,
    volume_shape: Sequence[int],
    spacing: Sequence[float],
    *,
    size: tuple[int, int] | None = None,
    geometry: str | ParallelBeam | ConeBeam | dict = "parallel",
) -> tuple[np.ndarray, np.ndarray]:
    """The ray of every pixel: where it starts (source side) and where it hits the detector.

    For checking the renderer against closed forms or other renderers (Siddon ray tracing):
    pixel ``(row, col)`` of :func:`render_drr` integrates attenuation along the segment from
    ``start[row, col]`` to ``end[row, col]``. Both ends lie outside the volume.

    Parameters
    ----------
    view, volume_shape, spacing, size, geometry
        As for :func:`render_drr`; the geometry's ``rotation`` turns the rays the other way,
        so they are where the pixels' rays run through the unrotated volume.

    Returns
    -------
    start, end : numpy.ndarray, shape (H, W, 3)
        Positions ``(z, y, x)`` in mm, in the volume's coordinates (voxel ``i``'s centre at
        ``(i + 0.5) * spacing``). For a cone beam every ``start`` is the source.

    Examples
    --------
    >>> start, end = detector_rays("frontal", (4, 4, 4), (1, 1, 1), geometry="cone")
    >>> start[0, 0].tolist(), end.shape
    ([2.0, 852.0, 2.0], (4, 4, 3))
    """
    spec = VIEWS[_check_views(view)[0]]
    geometry = resolve_geometry(geometry)
    shape = tuple(int(n) for n in volume_shape)[-3:]
    sp = np.asarray(_check_spacing(spacing))
    native = (shape[spec.rows], shape[spec.cols])
    h, w = _check_size(size) or native
    centre = np.asarray(shape) * sp / 2
    if isinstance(geometry, ConeBeam):
        pixel = _cone_detector_spacing(spec, shape, sp, geometry, (h, w))
        source_distance = geometry.source_to_isocentre
        detector_distance = geometry.source_to_detector - geometry.source_to_isocentre
    else:
        pixel = (sp[spec.rows] * native[0] / h, sp[spec.cols] * native[1] / w)
        source_distance = detector_distance = float(np.asarray(shape) @ sp)  # past the volume
    rows = (np.arange(h) - (h - 1) / 2) * pixel[0]
    if spec.flip_rows:
        rows = rows[::-1]
    cols = (np.arange(w) - (w - 1) / 2) * pixel[1]
    end = np.broadcast_to(centre, (h, w, 3)).copy()
    end[..., spec.rows] += rows[:, None]
    end[..., spec.cols] += cols[None, :]
    end[..., spec.axis] -= spec.source_side * detector_distance
    if isinstance(geometry, ConeBeam):
        start = np.broadcast_to(centre, (h, w, 3)).copy()
    else:
        start = end.copy()
    start[..., spec.axis] = centre[spec.axis] + spec.source_side * source_distance
    if any(geometry.rotation):  # the patient turns by R: the rays turn by R^T around it
        rotation = rotation_matrix(geometry.rotation)
        start = (start - centre) @ rotation + centre
        end = (end - centre) @ rotation + centre
    return start, end


def _as_volume_tensor(volume_hu) -> torch.Tensor:
    if isinstance(volume_hu, torch.Tensor):
        volume = volume_hu
    else:
        array = np.asarray(volume_hu)
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool
        ):
            raise ValueError(f"volume_hu must be numeric, got dtype {array.dtype}")
        if array.dtype.byteorder not in ("=", "|") or np.issubdtype(
            array.dtype, np.unsignedinteger
        ):
            array = array.astype(np.float32)
        volume = torch.from_numpy(np.ascontiguousarray(array))
    if volume.is_complex():
        raise ValueError("volume_hu must be real-valued, got a complex tensor")
    if volume.ndim not in (3, 4):
        raise ValueError(
            "volume_hu must have 3 (nz, ny, nx) or 4 (B, nz, ny, nx) dimensions, got shape "
            f"{tuple(volume.shape)}"
        )
    if min(volume.shape) == 0:
        raise ValueError(f"volume_hu must not be empty, got shape {tuple(volume.shape)}")
    return volume


def _check_angles(angles, batch: int) -> np.ndarray | None:
    """``(batch, 3)`` float64 ``(z, x, y)`` degrees, or None.

    Accepted: one angle (about z, for all), one per batch item (about z), a ``(batch, 3)`` or
    ``(1, 3)`` array, or, for one volume, a triple ``(z, x, y)``.
    """
    if angles is None:
        return None
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().numpy()
    try:
        values = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.full(1, np.nan)
    if values.ndim == 0 or (values.ndim == 1 and values.size in (1, batch) and values.size != 3):
        values = np.stack(
            [np.broadcast_to(values.reshape(-1), (batch,)), np.zeros(batch), np.zeros(batch)], -1
        )
    elif values.ndim == 1 and values.size == 3 and batch in (1, 3):
        # One volume: a triple (z, x, y). Three volumes: one angle about z each.
        values = values[None] if batch == 1 else np.stack([values, *np.zeros((2, 3))], -1)
    elif values.ndim == 2 and values.shape in ((1, 3), (batch, 3)):
        values = np.broadcast_to(values, (batch, 3))
    else:
        values = np.full(1, np.nan)
    if not np.isfinite(values).all():
        raise ValueError(
            f"angles must be finite degrees: one angle about z or one per batch item "
            f"({batch}), or (z, x, y) triples of shape ({batch}, 3); got {angles!r}"
        )
    return np.array(values)


def _rotate(mu: torch.Tensor, angles_deg: np.ndarray, spacing) -> torch.Tensor:
    r"""Rotate each volume of ``mu`` (B, nz, ny, nx) about its centre by ``(z, x, y)`` degrees.

    The rotation is :func:`fracrisk.imaging.geometry.rotation_matrix`'s: the output at
    physical position :math:`\mathbf{p}` (mm from the centre) is the input at
    :math:`R^\top \mathbf{p}`, sampled trilinearly; outside the field of view is air. A turn
    about z alone samples each axial slice bilinearly (one 2D ``grid_sample``, ~20x faster).
    """
    if not angles_deg[:, 1:].any():
        return _rotate_about_z(mu, torch.as_tensor(angles_deg[:, 0], device=mu.device), spacing)
    b, nz, ny, nx = mu.shape
    half = np.array([nx * spacing[2], ny * spacing[1], nz * spacing[0]]) / 2  # (x, y, z)
    flip = np.eye(3)[::-1]  # (z, y, x) <-> (x, y, z)
    rotation = flip @ rotation_matrix(angles_deg) @ flip  # in (x, y, z) order
    # affine_grid maps output normalised coordinates u = p / half to input ones.
    theta = np.swapaxes(rotation, -1, -2) * half[None, None, :] / half[None, :, None]
    affine = torch.zeros((b, 3, 4), dtype=mu.dtype, device=mu.device)
    affine[:, :, :3] = torch.as_tensor(theta, dtype=mu.dtype, device=mu.device)
    grid = F.affine_grid(affine, [b, 1, nz, ny, nx], align_corners=False)
    rotated = F.grid_sample(
        mu.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return rotated.squeeze(1)


def _rotate_about_z(mu: torch.Tensor, angles_deg: torch.Tensor, spacing) -> torch.Tensor:
    r"""Rotate each volume of ``mu`` (B, nz, ny, nx) about the z axis through its centre.

    A point at physical :math:`(x, y)` (mm, from the centre) moves to
    :math:`(x\cos\theta - y\sin\theta,\; x\sin\theta + y\cos\theta)`: a positive angle turns
    the patient's left (+x) towards anterior (+y). Each output voxel is sampled bilinearly in
    its axial slice (the z slices ride along as channels of one 2D ``grid_sample``); outside
    the field of view is air (zero attenuation).
    """
    b, nz, ny, nx = mu.shape
    theta = angles_deg.to(mu.dtype) * (math.pi / 180.0)
    c, s = torch.cos(theta), torch.sin(theta)
    ly, lx = ny * spacing[1], nx * spacing[2]
    # affine_grid maps output normalised (x_n, y_n) to input coordinates. Normalised and
    # physical coordinates differ by the half extents (align_corners=False): p = u * L / 2,
    # so the inverse rotation R(-theta) becomes the matrix below in normalised units.
    zero = torch.zeros_like(c)
    affine = torch.stack(
        [
            torch.stack([c, s * (ly / lx), zero], -1),
            torch.stack([-s * (lx / ly), c, zero], -1),
        ],
        -2,
    )
    grid = F.affine_grid(affine, [b, nz, ny, nx], align_corners=False)
    return F.grid_sample(mu, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _project_parallel(mu: torch.Tensor, spacing, view: str) -> torch.Tensor:
    """Parallel-beam line integrals of ``mu`` (B, nz, ny, nx) for one view: (B, H, W)."""
    spec = VIEWS[view]
    image = mu.sum(dim=spec.axis + 1, dtype=torch.float32) * spacing[spec.axis]
    # After the sum, the remaining volume axes keep their order: (rows, cols) already.
    if spec.flip_rows:
        image = image.flip(-2)
    return image


def _cone_detector_spacing(spec: _View, shape, spacing, geometry: ConeBeam, size):
    """Detector pixel size (row, col) in mm: the given one, or the magnified field of view."""
    if geometry.detector_spacing is not None:
        return geometry.detector_spacing
    m = geometry.magnification
    return (
        spacing[spec.rows] * shape[spec.rows] * m / size[0],
        spacing[spec.cols] * shape[spec.cols] * m / size[1],
    )


def _cone_sampling(spec: _View, shape, spacing, geometry: ConeBeam, size):
    """Where each slice across the beam is sampled, and each ray's length per slice.

    Returns ``row_pos`` (K, H) and ``col_pos`` (K, W), continuous voxel indices in slice ``k``
    (slices in ascending order along the view's axis, image rows in the volume's order before
    any flip), and ``path`` (H, W): the ray length through one slice in mm.
    """
    n_depth, n_rows, n_cols = shape[spec.axis], shape[spec.rows], shape[spec.cols]
    d_depth, d_rows, d_cols = spacing[spec.axis], spacing[spec.rows], spacing[spec.cols]
    sdd, sid = geometry.source_to_detector, geometry.source_to_isocentre
    half_depth = n_depth * d_depth / 2
    if sid <= half_depth:
        raise ValueError(
            f"source_to_isocentre ({sid:g} mm) puts the source inside the volume, which "
            f"extends {half_depth:g} mm from the isocentre along the {spec.axis}-axis of view"
        )
    h, w = size
    pixel_rows, pixel_cols = _cone_detector_spacing(spec, shape, spacing, geometry, size)
    depth = -spec.source_side * ((np.arange(n_depth) + 0.5) * d_depth - half_depth)
    scale = (sid + depth) / sdd  # detector offset -> offset in the slice
    v = (np.arange(h) - (h - 1) / 2) * pixel_rows  # detector offsets from the principal point
    u = (np.arange(w) - (w - 1) / 2) * pixel_cols
    row_pos = scale[:, None] * v[None, :] / d_rows + (n_rows - 1) / 2
    col_pos = scale[:, None] * u[None, :] / d_cols + (n_cols - 1) / 2
    path = d_depth * np.sqrt(1.0 + (v[:, None] ** 2 + u[None, :] ** 2) / sdd**2)
    return row_pos, col_pos, path


def _project_cone(mu: torch.Tensor, spacing, view: str, geometry: ConeBeam, size) -> torch.Tensor:
    """Cone-beam line integrals of ``mu`` (B, nz, ny, nx) for one view by shear-warp: (B, H, W)."""
    spec = VIEWS[view]
    shape = tuple(mu.shape[1:])
    row_pos, col_pos, path = _cone_sampling(spec, shape, spacing, geometry, size)
    # Slices across the beam, each with the view's (rows, cols): (B, K, R, C).
    slices = mu.permute(0, spec.axis + 1, spec.rows + 1, spec.cols + 1)
    n_batch, _, n_rows, n_cols = slices.shape
    compiled = mu.device.type == "cpu" and mu.dtype == torch.float32 and not mu.requires_grad
    if compiled and min(n_rows, n_cols) >= 2:
        if slices.stride(-1) != 1:  # the lateral view: make the slice rows contiguous
            slices = slices.contiguous()
        row_index, row_weight = linear_taps(row_pos, n_rows)
        col_index, col_weight = linear_taps(col_pos, n_cols)
        out = np.empty((n_batch, *size), dtype=np.float32)
        shear_warp_sum(slices.numpy(), row_index, row_weight, col_index, col_weight, out)
        image = torch.from_numpy(out)
    else:
        # The same bilinear samples with grid_sample: slices as the batch, patients as
        # channels (one grid per slice), normalised with align_corners=False. Positions and
        # sums stay in float32 (a bf16 grid would misplace samples by up to half a voxel);
        # a bf16 volume is upcast a chunk of slices at a time, which also bounds memory.
        grid_x = torch.as_tensor((2 * col_pos + 1) / n_cols - 1, dtype=torch.float32)
        grid_y = torch.as_tensor((2 * row_pos + 1) / n_rows - 1, dtype=torch.float32)
        k, h, w = grid_y.shape[0], *size
        grid = torch.stack(
            [grid_x[:, None, :].expand(k, h, w), grid_y[:, :, None].expand(k, h, w)], -1
        ).to(mu.device)
        by_slice = slices.transpose(0, 1)  # (K, B, R, C)
        chunk = max(1, _GRID_SAMPLE_ELEMENTS // (n_batch * h * w))
        image = torch.zeros((n_batch, h, w), dtype=torch.float32, device=mu.device)
        for start in range(0, k, chunk):
            sampled = F.grid_sample(
                by_slice[start : start + chunk].to(torch.float32),
                grid[start : start + chunk],
                mode="bilinear",
                padding_mode="zeros",
                align_corners=False,
            )
            image = image + sampled.sum(0)
    image = image * torch.as_tensor(path, dtype=torch.float32, device=image.device)
    if spec.flip_rows:
        image = image.flip(-2)
    return image


_DTYPES = (torch.float32, torch.bfloat16)
# Samples taken by one grid_sample call of the torch cone-beam path (128 MB of float32).
_GRID_SAMPLE_ELEMENTS = 32 * 1024 * 1024


def render_drr(
    volume_hu,
    spacing: Sequence[float],
    views: Sequence[str] | str = ("frontal", "lateral", "axial"),
    *,
    size: tuple[int, int] | None = None,
    geometry: str | ParallelBeam | ConeBeam | dict = "parallel",
    angles=None,
    window: tuple[float, float] | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Render digitally reconstructed radiographs of a CT volume.

    Each pixel is the line integral of linear attenuation along its ray,

    .. math::

        p(r, c) = \int \mu(\mathbf{x})\, d\ell,
        \qquad \mu = \mu_\text{water} \max(0, 1 + \text{HU}/1000),

    a dimensionless optical depth (the detected intensity would be
    :math:`I_0 e^{-p}`), so bone is bright.

    * Parallel beam: the ray is a voxel column and the integral is the sum of the voxels times
      the spacing along it (the midpoint rule, exact for the voxelised volume).
    * Cone beam (shear-warp): the ray to detector offset :math:`(u, v)` crosses slice
      :math:`k` (depth :math:`t_k` past the isocentre) at :math:`(u, v)(\mathrm{SID} +
      t_k)/\mathrm{SDD}`, where :math:`\mu` is sampled bilinearly within the slice, and

      .. math:: p(u, v) = \Delta \sqrt{1 + \frac{u^2 + v^2}{\mathrm{SDD}^2}}
                \sum_k \mu_k\!\left(\frac{(u, v)(\mathrm{SID} + t_k)}{\mathrm{SDD}}\right),

      with :math:`\Delta` the slice spacing and the square root the ray's obliquity.
      Outside the volume is air.

    Parameters
    ----------
    volume_hu : numpy.ndarray or torch.Tensor, shape (nz, ny, nx) or (B, nz, ny, nx)
        CT volume in Hounsfield units with axes z inferior -> superior, y posterior ->
        anterior, x right -> left. Any real dtype; a torch tensor keeps its device (CPU or
        CUDA) and, when floating, its autograd graph.
    spacing : sequence of 3 float
        Voxel size ``(dz, dy, dx)`` in mm.
    views : str or sequence of str, default ("frontal", "lateral", "axial")
        Views to render, in output order; see :data:`VIEWS` and the module docstring
        for their orientation.
    size : (H, W), optional
        Detector size in pixels. Parallel beam: every projection is resampled to it
        (bilinear, ``align_corners=False``, antialiased when shrinking). Cone beam: the
        detector grid is sampled directly. Required when the views' native shapes differ.
    geometry : {"parallel", "cone"}, ParallelBeam, ConeBeam or dict, default "parallel"
        Projection geometry: a name stands for the default object
        (:class:`~fracrisk.imaging.ConeBeam` has SDD 1020 mm, SID 850 mm); an object holds
        the distances, the detector pixel size and a rotation. See
        :mod:`fracrisk.imaging.geometry`.
    angles : float, sequence of float or array of shape (B, 3), optional
        Rotation of the patient in degrees, applied to the volume before projecting and
        added to the geometry's ``rotation``: one angle about the z axis for all, one per
        batch item, or ``(z, x, y)`` triples, one per item (``(B, 3)``, or a plain triple
        for one volume); directions in :mod:`fracrisk.imaging.geometry` (a positive turn
        about z brings the patient's left towards anterior). Trilinear resampling through
        ``torch.nn.functional.grid_sample`` (bilinear within axial slices for a turn about z
        alone); the field of view is kept, what leaves it is lost and what enters is air.
        Meant for augmentation and oblique views.
    window : (lo, hi), optional
        Map line integrals linearly so that ``lo -> 0`` and ``hi -> 1``, clipped to [0, 1]
        (network input). Default: physical line integrals.
    dtype : torch.float32 or torch.bfloat16, default float32
        Precision of the volume while it is sampled and of the result; sums are accumulated
        in float32. bfloat16 halves the memory traffic on a GPU.

    Returns
    -------
    torch.Tensor
        ``dtype`` on the input's device: ``(n_views, H, W)`` for one volume,
        ``(B, n_views, H, W)`` for a batch.

    Examples
    --------
    >>> import numpy as np
    >>> water = np.zeros((4, 5, 6), dtype=np.int16)  # 0 HU everywhere
    >>> render_drr(water, (1.0, 2.0, 1.0), views="lateral").shape
    torch.Size([1, 4, 5])
    >>> round(float(render_drr(water, (1.0, 2.0, 1.0), views="frontal")[0, 0, 0]), 4)
    0.206
    >>> render_drr(water, (1.0, 2.0, 1.0), geometry="cone", size=(32, 32)).shape
    torch.Size([3, 32, 32])
    """
    volume = _as_volume_tensor(volume_hu)
    spacing = _check_spacing(spacing)
    names = _check_views(views)
    size = _check_size(size)
    window = _check_window(window)
    geometry = resolve_geometry(geometry)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype!r}")
    batched = volume.ndim == 4
    if not batched:
        volume = volume.unsqueeze(0)
    if size is None:
        shapes = {name: view_geometry(name, volume.shape, spacing)[0] for name in names}
        if len(set(shapes.values())) > 1:
            raise ValueError(
                f"views have different native shapes {shapes}; pass size=(H, W) to resample "
                "them to one shape"
            )
    angle_values = _check_angles(angles, volume.shape[0])
    if any(geometry.rotation):
        angle_values = np.asarray(geometry.rotation) + (
            0.0 if angle_values is None else angle_values
        )
        angle_values = np.array(np.broadcast_to(angle_values, (volume.shape[0], 3)))

    if volume.requires_grad:
        mu = hu_to_attenuation(volume.to(torch.float32))
    else:
        # In place on a fresh tensor: saves two volume-sized temporaries.
        mu = volume.to(torch.float32) * (MU_WATER_PER_MM / 1000.0)
        mu = mu.add_(MU_WATER_PER_MM).clamp_min_(0.0)
    if angle_values is not None and angle_values.any():
        mu = _rotate(mu, angle_values, spacing)
    mu = mu.to(dtype)

    images = []
    for name in names:
        if isinstance(geometry, ConeBeam):
            out_size = size or view_geometry(name, mu.shape, spacing)[0]
            images.append(_project_cone(mu, spacing, name, geometry, out_size))
            continue
        image = _project_parallel(mu, spacing, name)
        if size is not None and tuple(image.shape[-2:]) != size:
            shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
            image = F.interpolate(
                image.unsqueeze(1),
                size=size,
                mode="bilinear",
                align_corners=False,
                antialias=shrink,
            ).squeeze(1)
        images.append(image)
    out = torch.stack(images, 1)
    if window is not None:
        lo, hi = window
        out = ((out - lo) / (hi - lo)).clamp(0.0, 1.0)
    out = out.to(dtype)
    return out if batched else out[0]
