r"""Digitally reconstructed radiographs (DRRs): parallel-beam line integrals through a CT volume.

Conventions shared by every image module of the package:

* a volume has axes ``(z, y, x)``: z inferior -> superior, y posterior -> anterior, x the
  patient's right -> left; a batch adds a leading axis ``(B, z, y, x)``;
* ``spacing`` is the voxel size ``(dz, dy, dx)`` in mm;
* a point's position in mm is measured from the volume's corner, with the centre of voxel
  ``i`` at ``(i + 0.5) * spacing`` (the volume spans ``[0, n * spacing]`` on each axis);
* image pixel ``(row, col)`` has its centre at integer coordinates.

Views (parallel beam, one line integral per pixel):

==========  ==============  =================================  ===============================
view        integrated axis  rows (top -> bottom)               columns (left -> right)
==========  ==============  =================================  ===============================
frontal     y               z, superior at the top             x, patient's right on the left
lateral     x               z, superior at the top             y, posterior on the left
axial       z               y, posterior at the top            x, patient's right on the left
==========  ==============  =================================  ===============================

The renderer is written in PyTorch so that it runs on the input's device, batches, and is
differentiable in the volume; the per-view work goes through :data:`VIEWS` and
:func:`_project_parallel`, the place where other geometries (cone beam) plug in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MU_WATER_PER_MM",
    "VIEWS",
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
    """How one parallel-beam view is read off a ``(..., z, y, x)`` volume."""

    axis: int  # volume axis (0 = z, 1 = y, 2 = x) integrated along
    rows: int  # volume axis along the image rows
    cols: int  # volume axis along the image columns
    flip_rows: bool  # True when the first row is the last slice (superior at the top)


#: The supported views; see the module docstring for the orientation of each.
VIEWS: dict[str, _View] = {
    "frontal": _View(axis=1, rows=0, cols=2, flip_rows=True),
    "lateral": _View(axis=2, rows=0, cols=1, flip_rows=True),
    "axial": _View(axis=0, rows=1, cols=2, flip_rows=False),
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
    angle: float = 0.0,
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
    angle : float, default 0
        The rotation (degrees) passed to :func:`render_drr` for this volume.

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
    shape = tuple(int(n) for n in volume_shape)[-3:]
    sp = np.asarray(_check_spacing(spacing))
    pts = np.asarray(points_mm, dtype=np.float64)
    if pts.shape[-1:] != (3,):
        raise ValueError(f"points_mm must have shape (..., 3) (z, y, x), got {pts.shape}")
    if angle:
        # Same rotation as render_drr: about the z axis through the centre of the volume.
        theta = math.radians(angle)
        cy, cx = shape[1] * sp[1] / 2, shape[2] * sp[2] / 2
        x, y = pts[..., 2] - cx, pts[..., 1] - cy
        pts = pts.copy()
        pts[..., 2] = math.cos(theta) * x - math.sin(theta) * y + cx
        pts[..., 1] = math.sin(theta) * x + math.cos(theta) * y + cy
    index = pts / sp - 0.5  # continuous voxel index
    rows = index[..., spec.rows]
    if spec.flip_rows:
        rows = shape[spec.rows] - 1 - rows
    cols = index[..., spec.cols]
    if size is not None:
        h, w = _check_size(size)
        rows = (rows + 0.5) * h / shape[spec.rows] - 0.5
        cols = (cols + 0.5) * w / shape[spec.cols] - 0.5
    return np.stack([cols, rows], -1)


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


def _check_angles(angles, batch: int, device) -> torch.Tensor | None:
    if angles is None:
        return None
    values = torch.as_tensor(angles, dtype=torch.float32).reshape(-1)
    if values.numel() == 1:
        values = values.expand(batch)
    if values.numel() != batch or not torch.isfinite(values).all():
        raise ValueError(
            f"angles must be one finite angle in degrees or one per batch item ({batch}), "
            f"got {angles!r}"
        )
    return values.to(device)


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
    image = mu.sum(dim=spec.axis + 1) * spacing[spec.axis]
    # After the sum, the remaining volume axes keep their order: (rows, cols) already.
    if spec.flip_rows:
        image = image.flip(-2)
    return image


def render_drr(
    volume_hu,
    spacing: Sequence[float],
    views: Sequence[str] | str = ("frontal", "lateral", "axial"),
    *,
    size: tuple[int, int] | None = None,
    angles=None,
    window: tuple[float, float] | None = None,
) -> torch.Tensor:
    r"""Render parallel-beam digitally reconstructed radiographs of a CT volume.

    Each pixel is the line integral of linear attenuation along the view's axis,

    .. math::

        p(r, c) = \int \mu(\mathbf{x})\, d\ell \approx \sum_k \mu_k \,\Delta_\text{axis},
        \qquad \mu = \mu_\text{water} \max(0, 1 + \text{HU}/1000),

    a dimensionless optical depth (the detected intensity would be
    :math:`I_0 e^{-p}`), so bone is bright. The sum over voxel centres is the midpoint rule
    for the integral along each axis-aligned ray (exact for the voxelised volume).

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
        Resample every projection to this size (bilinear, ``align_corners=False``,
        antialiased when shrinking). Required when the views' native shapes differ.
    angles : float or sequence of float, optional
        Rotation about the z axis in degrees, applied to the volume before projecting (one
        angle for all, or one per batch item); a positive angle turns the patient's left
        towards anterior. Bilinear resampling through ``torch.nn.functional.grid_sample``;
        the field of view is kept, what leaves it is lost and what enters is air. Meant for
        augmentation.
    window : (lo, hi), optional
        Map line integrals linearly so that ``lo -> 0`` and ``hi -> 1``, clipped to [0, 1]
        (network input). Default: physical line integrals.

    Returns
    -------
    torch.Tensor
        float32 on the input's device: ``(n_views, H, W)`` for one volume,
        ``(B, n_views, H, W)`` for a batch.

    Examples
    --------
    >>> import numpy as np
    >>> water = np.zeros((4, 5, 6), dtype=np.int16)  # 0 HU everywhere
    >>> render_drr(water, (1.0, 2.0, 1.0), views="lateral").shape
    torch.Size([1, 4, 5])
    >>> round(float(render_drr(water, (1.0, 2.0, 1.0), views="frontal")[0, 0, 0]), 4)
    0.206
    """
    volume = _as_volume_tensor(volume_hu)
    spacing = _check_spacing(spacing)
    names = _check_views(views)
    size = _check_size(size)
    window = _check_window(window)
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
    angle_values = _check_angles(angles, volume.shape[0], volume.device)

    if volume.requires_grad:
        mu = hu_to_attenuation(volume.to(torch.float32))
    else:
        # In place on a fresh tensor: saves two volume-sized temporaries.
        mu = volume.to(torch.float32) * (MU_WATER_PER_MM / 1000.0)
        mu = mu.add_(MU_WATER_PER_MM).clamp_min_(0.0)
    if angle_values is not None and bool((angle_values != 0).any()):
        mu = _rotate_about_z(mu, angle_values, spacing)

    images = []
    for name in names:
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
    return out if batched else out[0]
