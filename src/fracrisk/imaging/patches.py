r"""Vertebral-body patches from a lateral radiograph and the four corners of each body.

Kong et al. (Endocrinol Metab 2022;37:674-683) detect keypoints of the vertebrae on a lateral
lumbar radiograph, cut one patch per vertebra L1..L5 and feed the patches, not masked, to a
CNN. This module cuts those patches reproducibly: each body is resampled from its four
corners into a fixed ``(size_h, size_w)`` frame in which it is upright.

Coordinates
-----------
* Image pixel ``(row, col)`` has its centre at integer coordinates; points are written
  ``(x = col, y = row)``, as :func:`fracrisk.simulate.spine.lateral_radiograph` returns them.
* Keypoints of a body are ordered anterior-superior (AS), posterior-superior (PS),
  posterior-inferior (PI), anterior-inferior (AI) (:mod:`fracrisk.imaging.anatomy`).
* The body frame ``(s, t)``: ``s`` runs anterior (0) -> posterior (1), ``t`` superior (0)
  -> inferior (1); the corners AS, PS, PI, AI are the unit square's corners ``(0, 0)``,
  ``(1, 0)``, ``(1, 1)``, ``(0, 1)``.
* A patch covers the unit square expanded by ``margin`` ``m`` on every side,
  ``[-m, 1 + m]^2``, so that the endplates and part of the discs show. Patch pixel
  ``(i, j)`` of an ``(h, w)`` patch has its centre at integer patch coordinates ``(x = j,
  y = i)`` and sits at

  .. math:: s = -m + (1 + 2m) \frac{j + 1/2}{w}, \qquad t = -m + (1 + 2m) \frac{i + 1/2}{h}.

  **Patch top = superior endplate, patch left = anterior**, whatever the orientation of the
  radiograph. On the package's lateral radiographs the anterior side is on the image's
  right, so patches are mirror images of the radiograph (every patch the same way).

Transforms
----------
The map from the body frame to the image, :math:`Q`, is one of (``transform=``):

``"affine"`` (default)
    The least-squares affine map of the unit square's corners onto the four keypoints (6
    unknowns, 8 equations). Exact for a parallelogram. The anterior and posterior walls keep
    their height ratio, so a **wedge** deformity shows as endplates converging anteriorly
    (a sloped top edge) and biconcave endplates show as dips; height and depth are each
    normalised, so a uniform (crush) height loss does not change the outline.
``"similarity"``
    The least-squares rotation, isotropic scale and translation (with a reflection when
    the corners wind the other way, see below): the body keeps its aspect ratio, so crush
    fractures also show (a flatter body), at the cost of a framing that varies with it.
``"homography"``
    The projective map that sends the four unit-square corners *exactly* onto the four
    keypoints (direct linear transform, DLT). The body then always fills the patch's
    interior: a wedge or crush outline is rectified back into a square (only the stretched
    texture and the dips of biconcave endplates remain), so shape deformity is largely
    removed from the patch. Useful when the shape is modelled separately (morphometry from
    the keypoints) and the CNN should see the bone texture only.

The DLT: with :math:`h_{33} = 1`, each correspondence :math:`(s, t) \mapsto (u, v)` of

.. math::
    u = \frac{h_{11} s + h_{12} t + h_{13}}{h_{31} s + h_{32} t + 1}, \qquad
    v = \frac{h_{21} s + h_{22} t + h_{23}}{h_{31} s + h_{32} t + 1}

gives two linear equations :math:`[s, t, 1, 0, 0, 0, -us, -ut]\, h = u` and
:math:`[0, 0, 0, s, t, 1, -vs, -vt]\, h = v`; the four corners give an 8 x 8 system solved
for every vertebra at once (:func:`torch.linalg.solve`, float64, after moving the corners'
centroid to the origin and scaling their RMS distance to :math:`\sqrt 2`, Hartley's
normalisation). The affine and similarity maps are the linear least-squares solutions of the
same equations with :math:`h_{31} = h_{32} = 0` (and :math:`h_{11} = \pm h_{22}`,
:math:`h_{12} = \mp h_{21}` for the similarity), through the fixed pseudo-inverse of the
unit square's design matrix.

The homography returned by :func:`patch_transform` maps *patch pixel* coordinates to *image
pixel* coordinates, :math:`H = Q\, N` with :math:`N` the affine map from ``(x = j, y = i)``
to ``(s, t)`` above. A patch is read with :func:`torch.nn.functional.grid_sample`
(``align_corners=False``, zero padding): image pixel ``(x, y)`` of an ``(H_img, W_img)``
image is the normalised grid point :math:`((2x + 1)/W_\text{img} - 1,\; (2y + 1)/H_\text{img}
- 1)`.

Keypoints must be in order and form a convex, non-degenerate quadrilateral. Either winding
is accepted: when AS, PS, PI, AI run the other way round on the image (anterior on the
image's right, as on the package's radiographs), the maps include the reflection that keeps
anterior on the patch's left.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fracrisk.imaging.anatomy import VERTEBRA_CORNERS, VERTEBRAE

__all__ = ["TRANSFORMS", "map_points", "patch_transform", "vertebral_patches"]

#: The body-frame -> image maps :func:`patch_transform` can fit (see the module docstring).
TRANSFORMS = ("affine", "similarity", "homography")
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
_N_VERTEBRAE = len(VERTEBRAE)
_N_CORNERS = len(VERTEBRA_CORNERS)

# Unit-square corners (s, t) in the keypoint order AS, PS, PI, AI.
_UNIT_SQUARE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))


# --------------------------------------------------------------------------- validation


def _check_size(size) -> tuple[int, int]:
    try:
        values = tuple(size)
    except TypeError:
        values = ()
    if len(values) != 2 or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)) and n > 0
        for n in values
    ):
        raise ValueError(f"size must be two positive integers (size_h, size_w), got {size!r}")
    return int(values[0]), int(values[1])


def _check_margin(margin) -> float:
    if isinstance(margin, (bool, np.bool_)) or not isinstance(
        margin, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    value = float(margin)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return value


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _as_float_tensor(name: str, values, device=None) -> torch.Tensor:
    """A real floating tensor (float32, or float64 when given float64) on ``device``."""
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        array = np.asarray(values)
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool
        ):
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
        if np.iscomplexobj(array):
            raise ValueError(f"{name} must be real-valued, got a complex array")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("=")))
    if tensor.is_complex():
        raise ValueError(f"{name} must be real-valued, got a complex tensor")
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    return tensor if device is None else tensor.to(device)


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _check_quads(name: str, quads: torch.Tensor) -> None:
    """Finite, ordered, convex and non-degenerate quadrilaterals ``(..., 4, 2)``."""
    if quads.ndim < 2 or tuple(quads.shape[-2:]) != (4, 2):
        raise ValueError(
            f"{name} must have shape (..., 4, 2): the (x, y) pixel positions of the corners "
            f"AS, PS, PI, AI; got {tuple(quads.shape)}"
        )
    q = quads.detach().to(_work_dtype(quads.device))
    finite = torch.isfinite(q).all(dim=(-1, -2))
    if not bool(finite.all()):
        where = torch.nonzero(~finite)[0].tolist()
        raise ValueError(f"{name} must be finite; quadrilateral {where} is not")
    edges = q.roll(-1, dims=-2) - q  # edge k: corner k -> corner k + 1
    nxt = edges.roll(-1, dims=-2)
    cross = edges[..., 0] * nxt[..., 1] - edges[..., 1] * nxt[..., 0]  # turn at corner k + 1
    scale = (edges**2).sum(-1).amax(-1, keepdim=True)
    tol = 1e-9 * scale
    convex = ((cross > tol).all(-1) | (cross < -tol).all(-1)) & (scale[..., 0] > 0)
    if not bool(convex.all()):
        where = torch.nonzero(~convex)[0].tolist()
        raise ValueError(
            f"{name} must be convex, non-degenerate quadrilaterals with corners in the order "
            f"AS, PS, PI, AI; quadrilateral {where} is not: {q[tuple(where)].tolist()}"
        )


# --------------------------------------------------------------------------- transforms


def _pixel_to_unit(size: tuple[int, int], margin: float, **kw) -> torch.Tensor:
    """``N``: patch pixel ``(x = j, y = i, 1)`` -> body frame ``(s, t, 1)``."""
    h, w = size
    span = 1.0 + 2.0 * margin
    ax, ay = span / w, span / h
    return torch.tensor(
        [[ax, 0.0, 0.5 * ax - margin], [0.0, ay, 0.5 * ay - margin], [0.0, 0.0, 1.0]], **kw
    )


def _dlt(quads: torch.Tensor) -> torch.Tensor:
    """Exact unit-square -> quadrilateral homographies ``(..., 3, 3)`` by the DLT."""
    kw = {"dtype": quads.dtype, "device": quads.device}
    # Hartley normalisation of the targets: centroid to 0, RMS distance sqrt(2).
    centre = quads.mean(-2, keepdim=True)
    rms = ((quads - centre) ** 2).sum(-1).mean(-1).sqrt()
    k = math.sqrt(2.0) / rms  # (...)
    uv = (quads - centre) * k[..., None, None]
    src = torch.tensor(_UNIT_SQUARE, **kw).expand_as(uv)
    s, t = src[..., 0], src[..., 1]
    u, v = uv[..., 0], uv[..., 1]
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    rows_u = torch.stack([s, t, one, zero, zero, zero, -u * s, -u * t], -1)
    rows_v = torch.stack([zero, zero, zero, s, t, one, -v * s, -v * t], -1)
    a = torch.cat([rows_u, rows_v], -2)  # (..., 8, 8)
    b = torch.cat([u, v], -1)  # (..., 8)
    h8 = torch.linalg.solve(a, b)
    h = torch.cat([h8, torch.ones_like(h8[..., :1])], -1).unflatten(-1, (3, 3))
    # Undo the normalisation: image = T^-1 (normalised), T^-1 = [[1/k, 0, cx], [0, 1/k, cy]].
    t_inv = torch.zeros(h.shape, **kw)
    t_inv[..., 0, 0] = 1.0 / k
    t_inv[..., 1, 1] = 1.0 / k
    t_inv[..., :2, 2] = centre[..., 0, :]
    t_inv[..., 2, 2] = 1.0
    return t_inv @ h


def _affine(quads: torch.Tensor) -> torch.Tensor:
    """Least-squares unit-square -> quadrilateral affine maps ``(..., 3, 3)``."""
    kw = {"dtype": quads.dtype, "device": quads.device}
    design = torch.tensor([[s, t, 1.0] for s, t in _UNIT_SQUARE], **kw)  # (4, 3)
    coef = torch.linalg.pinv(design) @ quads  # (..., 3, 2): rows for s, t, 1
    bottom = torch.tensor([0.0, 0.0, 1.0], **kw).expand(*quads.shape[:-2], 1, 3)
    return torch.cat([coef.transpose(-1, -2), bottom], -2)


def _similarity(quads: torch.Tensor) -> torch.Tensor:
    """Least-squares rotation + isotropic scale (+ reflection for the other winding)."""
    kw = {"dtype": quads.dtype, "device": quads.device}
    x, y = quads[..., 0], quads[..., 1]
    area2 = (x * y.roll(-1, -1) - x.roll(-1, -1) * y).sum(-1)  # twice the signed area
    # The unit square AS, PS, PI, AI has a positive signed area in (x right, y down); the
    # other winding is fitted on the mirrored square s -> 1 - s, then mirrored back.
    mirror = area2 < 0
    out = []
    for flip in (False, True):
        rows = []
        for s, t in _UNIT_SQUARE:
            s = 1.0 - s if flip else s
            rows += [[s, -t, 1.0, 0.0], [t, s, 0.0, 1.0]]  # x = a s - b t + tx, y = b s + a t + ty
        pinv = torch.linalg.pinv(torch.tensor(rows, **kw))  # (4, 8)
        a, b, tx, ty = (pinv @ quads.flatten(-2)[..., None])[..., 0].unbind(-1)
        zero, one = torch.zeros_like(a), torch.ones_like(a)
        m = torch.stack([a, -b, tx, b, a, ty, zero, zero, one], -1).unflatten(-1, (3, 3))
        if flip:
            m = m @ torch.tensor([[-1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], **kw)
        out.append(m)
    return torch.where(mirror[..., None, None], out[1], out[0])


def _transforms(
    name: str, quads, size, margin, transform: str, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(H, quads)``: patch-pixel -> image-pixel maps in the work dtype."""
    size = _check_size(size)
    margin = _check_margin(margin)
    transform = _check_choice("transform", transform, TRANSFORMS)
    q = _as_float_tensor(name, quads, device)
    _check_quads(name, q)
    q = q.to(_work_dtype(q.device))
    fit = {"affine": _affine, "similarity": _similarity, "homography": _dlt}[transform]
    return fit(q) @ _pixel_to_unit(size, margin, dtype=q.dtype, device=q.device), q


def patch_transform(
    quads, size: tuple[int, int], margin: float, *, transform: str = "affine"
) -> torch.Tensor:
    r"""Maps from patch pixel coordinates to image pixel coordinates, one per quadrilateral.

    .. math:: H = Q\, N, \qquad
        N = \begin{pmatrix} \frac{1+2m}{w} & 0 & \frac{1+2m}{2w} - m \\
        0 & \frac{1+2m}{h} & \frac{1+2m}{2h} - m \\ 0 & 0 & 1 \end{pmatrix}

    where :math:`N` takes patch pixel ``(x = j, y = i)`` to the body frame ``(s, t)`` and
    :math:`Q` takes the body frame to the image (see the module docstring for the three
    choices of :math:`Q` and the DLT). Image point :math:`(u, v)` of patch point
    :math:`(x, y)` is :math:`(u', v', w') = H (x, y, 1)^T`, :math:`(u, v) = (u'/w', v'/w')`:
    see :func:`map_points`.

    Parameters
    ----------
    quads : array-like or torch.Tensor, shape (..., 4, 2)
        Corners ``(x = col, y = row)`` in image pixels, ordered AS, PS, PI, AI; convex.
    size : (int, int)
        Patch size ``(size_h, size_w)`` in pixels.
    margin : float
        Expansion of the unit square on each side, as a fraction of the body's size
        (dimensionless, >= 0).
    transform : {"affine", "similarity", "homography"}, default "affine"
        The body-frame -> image map (exact projective map for ``"homography"``).

    Returns
    -------
    torch.Tensor, shape (..., 3, 3)
        float64 (float32 on MPS) homographies on the device of ``quads``; the last row is
        ``(0, 0, 1)`` for the affine and similarity maps.

    Examples
    --------
    >>> square = [[10.0, 20.0], [30.0, 20.0], [30.0, 40.0], [10.0, 40.0]]
    >>> H = patch_transform(square, (4, 4), 0.0, transform="homography")
    >>> map_points([[-0.5, -0.5], [3.5, 3.5]], H).tolist()
    [[10.0, 20.0], [30.0, 40.0]]
    """
    return _transforms("quads", quads, size, margin, transform)[0]


def map_points(points, homography) -> torch.Tensor:
    r"""Apply homographies to 2D points.

    .. math:: (u', v', w')^T = H\, (x, y, 1)^T, \qquad (u, v) = (u'/w', v'/w').

    Parameters
    ----------
    points : array-like or torch.Tensor, shape (..., N, 2)
        Points ``(x, y)`` (pixels).
    homography : array-like or torch.Tensor, shape (..., 3, 3)
        Homographies, e.g. from :func:`patch_transform` (patch -> image); use
        ``torch.linalg.inv(H)`` to map image points (keypoints) into a patch. Leading
        dimensions broadcast against those of ``points`` (without its ``N``).

    Returns
    -------
    torch.Tensor, shape (..., N, 2)
        Mapped points, float64 if either input is float64 else float32, on the device of
        ``homography``. Points sent to infinity (:math:`w' = 0`) give infinite values.

    Examples
    --------
    >>> shift = [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]]
    >>> map_points([[0.0, 0.0], [1.0, 1.0]], shift).tolist()
    [[2.0, -1.0], [3.0, 0.0]]
    """
    h = _as_float_tensor("homography", homography)
    p = _as_float_tensor("points", points, h.device)
    if p.ndim < 2 or p.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., N, 2), got {tuple(p.shape)}")
    if h.ndim < 2 or tuple(h.shape[-2:]) != (3, 3):
        raise ValueError(f"homography must have shape (..., 3, 3), got {tuple(h.shape)}")
    dtype = torch.promote_types(p.dtype, h.dtype)
    p, h = p.to(dtype), h.to(dtype)
    ph = torch.cat([p, torch.ones_like(p[..., :1])], -1)
    try:
        out = ph @ h.transpose(-1, -2)
    except RuntimeError as err:
        raise ValueError(
            f"points {tuple(p.shape)} and homography {tuple(h.shape)} have leading dimensions "
            "that do not broadcast"
        ) from err
    return out[..., :2] / out[..., 2:]


# --------------------------------------------------------------------------- patches


def _as_image_tensor(image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        tensor = image
        if tensor.is_complex():
            raise ValueError("image must be real-valued, got a complex tensor")
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        return tensor
    array = np.asarray(image)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"image must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError("image must be real-valued, got a complex array")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def vertebral_patches(
    image,
    keypoints,
    *,
    size: tuple[int, int] = (64, 64),
    margin: float = 0.15,
    interpolation: str = "bilinear",
    transform: str = "affine",
) -> torch.Tensor:
    r"""Cut one upright, unmasked patch per vertebral body L1..L5 from a lateral radiograph.

    Patch pixel ``(i, j)`` is the image sampled at :math:`H_v (j, i, 1)^T` for vertebra
    ``v``'s map :math:`H_v` from :func:`patch_transform`: the body's unit square (corners AS,
    PS, PI, AI) expanded by ``margin`` on each side. Patch top = superior endplate, patch
    left = anterior (on the package's radiographs, where anterior is on the image's right,
    patches are mirrored). Nothing is masked (Kong et al. 2022 found unmasked patches best);
    samples outside the image are 0.

    Parameters
    ----------
    image : array-like or torch.Tensor, shape (H, W) or (B, H, W)
        Radiograph(s) (e.g. line integrals from :func:`fracrisk.simulate.lateral_radiograph`).
    keypoints : array-like or torch.Tensor, shape (5, 4, 2) or (B, 5, 4, 2)
        ``(x = col, y = row)`` pixel coordinates of the corners AS, PS, PI, AI of L1..L5; each
        body's corners form a convex quadrilateral (either winding).
    size : (int, int), default (64, 64)
        Patch size ``(size_h, size_w)`` in pixels.
    margin : float, default 0.15
        Fraction of the body's height (rows) and depth (columns) added on each side, so that
        the endplates and some disc show; 0 crops the body's quadrilateral exactly.
    interpolation : {"bilinear", "nearest", "bicubic"}, default "bilinear"
        Sampling of :func:`torch.nn.functional.grid_sample` (``align_corners=False``,
        ``padding_mode="zeros"``).
    transform : {"affine", "similarity", "homography"}, default "affine"
        Body-frame -> image map (module docstring). ``"affine"`` keeps wedge and biconcave
        deformities visible; ``"similarity"`` also keeps the body's aspect ratio (crush);
        ``"homography"`` maps the four corners exactly onto the patch's unit square, which
        rectifies wedge and crush outlines away.

    Returns
    -------
    torch.Tensor, shape (5, 1, size_h, size_w) or (B, 5, 1, size_h, size_w)
        Patches on the image's device: float32, or the image's floating dtype for a floating
        torch image. Differentiable in the image.

    Examples
    --------
    >>> image = np.zeros((8, 60), dtype=np.float32)
    >>> boxes = [[[12 * v + 1, 1], [12 * v + 9, 1], [12 * v + 9, 5], [12 * v + 1, 5]]
    ...          for v in range(5)]
    >>> vertebral_patches(image, boxes, size=(16, 16)).shape
    torch.Size([5, 1, 16, 16])
    """
    size = _check_size(size)
    margin = _check_margin(margin)
    mode = _check_choice("interpolation", interpolation, _INTERPOLATIONS)
    transform = _check_choice("transform", transform, TRANSFORMS)
    img = _as_image_tensor(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (B, H, W), got {tuple(img.shape)}")
    batched = img.ndim == 3
    if min(img.shape[-2:]) < 1:
        raise ValueError(f"image must not be empty, got shape {tuple(img.shape)}")
    kp = _as_float_tensor("keypoints", keypoints, img.device)
    expected = ((img.shape[0],) if batched else ()) + (_N_VERTEBRAE, _N_CORNERS, 2)
    if tuple(kp.shape) != expected:
        raise ValueError(
            f"keypoints must have shape {expected} for an image of shape {tuple(img.shape)} "
            f"((x, y) of the corners AS, PS, PI, AI of L1..L5), got {tuple(kp.shape)}"
        )
    out_dtype = img.dtype
    sample_dtype = torch.float64 if img.dtype == torch.float64 else torch.float32
    img_b = (img if batched else img[None]).to(sample_dtype)
    kp_b = kp if batched else kp[None]
    n, height, width = img_b.shape
    h, w = size
    if n == 0:
        return torch.zeros((0, _N_VERTEBRAE, 1, h, w), dtype=out_dtype, device=img.device)

    hom, _ = _transforms("keypoints", kp_b, size, margin, transform)  # (n, 5, 3, 3)
    ii, jj = torch.meshgrid(
        torch.arange(h, dtype=hom.dtype, device=hom.device),
        torch.arange(w, dtype=hom.dtype, device=hom.device),
        indexing="ij",
    )
    pix = torch.stack([jj, ii, torch.ones_like(ii)], -1)  # (h, w, 3): (x, y, 1)
    uvw = torch.einsum("nvab,hwb->nvhwa", hom, pix)
    valid = uvw[..., 2] > 1e-12  # behind the homography's line at infinity: outside
    denom = torch.where(valid, uvw[..., 2], torch.ones_like(uvw[..., 2]))
    u, v = uvw[..., 0] / denom, uvw[..., 1] / denom
    gx = torch.where(valid, (2.0 * u + 1.0) / width - 1.0, torch.full_like(u, -2.0))
    gy = torch.where(valid, (2.0 * v + 1.0) / height - 1.0, torch.full_like(v, -2.0))
    grid = torch.stack([gx, gy], -1).to(sample_dtype).reshape(n, _N_VERTEBRAE * h, w, 2)
    out = F.grid_sample(
        img_b[:, None], grid, mode=mode, padding_mode="zeros", align_corners=False
    )  # (n, 1, 5 h, w)
    out = out.reshape(n, _N_VERTEBRAE, 1, h, w).to(out_dtype)
    return out if batched else out[0]
