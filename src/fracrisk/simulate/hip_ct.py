r"""Procedural 3-D hip CT in Hounsfield units from a patient's parameters.

The phantom is built from implicit surfaces (spheres, round cones, ellipsoids and a carved
acetabular socket) combined by (smooth) unions of signed distances, each evaluated only on
its own bounding box, so one volume takes a few tens of milliseconds. Nothing is downloaded.

Anatomy and scale
    Both proximal femurs (spherical head, neck at the patient's neck-shaft angle, greater and
    lesser trochanters, intertrochanteric crest, shaft with a marrow canal) and the pelvis
    (acetabular sockets around the heads, iliac bodies and wings, pelvic brim, pubic rami and
    symphysis, ischia, sacrum, L5) inside a soft-tissue body (muscle ~45 HU, subcutaneous fat
    ~-100 HU whose thickness grows with BMI, a bladder) in air (-1000 HU). A real pelvis
    (~370 mm across the hips) does not fit a 128 mm field of view, so the gross anatomy is
    drawn in anatomical millimetres and scaled isotropically by ``anatomy_scale`` (0.340 for
    the default 128 x 128 x 96 mm field of view) to fit; cortical thickness, trabecular
    texture and noise stay in image (physical) units, as they are set by the scanner's
    resolution rather than by body size. The hip joint space is kept at least 2.5 voxels
    wide so that each femur is a separate bone from the pelvis in the image.

Bone model (BMD as femoral-neck g/cm2, :math:`T = (\mathrm{BMD} - 0.858) / 0.120`)
    * cortex: HU :math:`1450 + 100 T + 40 z` (clipped to 1100-1850), thickness
      :math:`1.6 + 0.25 T + 0.25 z` mm (clipped to 0.8-2.6 mm), porosity (small holes at
      ~40% of cortical density) in a fraction :math:`0.06 - 0.035 z - 0.01 T` of its voxels
      (clipped to 0.5-25%);
    * trabecular bone: mean HU :math:`250 + 420 (\mathrm{BMD} - 0.858)` (clipped to 60-450),
      modulated by a soft-thresholded band-pass Gaussian random field. Low ``z`` gives a
      coarser field (more weight on the low-frequency band) and a sparser network (bone
      fraction :math:`0.35 + 0.07 z`), high ``z`` a denser, finer one; the threshold is
      re-centred so the mean HU depends on BMD only. ``z`` is therefore visible in the
      texture and cortex at fixed BMD;
    * the femoral shaft below the lesser trochanter holds fatty marrow (-20 HU) and a cortex
      1 mm thicker.

Speed
    The band-pass fields are computed once per process into a small cached bank (periodic
    96^3 tiles, four per frequency band, fixed bank seed) and each patient draws one per band
    with a random circular shift and flips; the scanner noise (Gaussian, 10-20 HU rising
    with BMI, slightly correlated) likewise comes from a cached bank at the volume shape.
    Textures are therefore drawn from a bank, not generated independently per patient.

Positioning variation: a random rotation (SD 1.5 deg per axis, at most 4 deg) and shift
(SD 2 mm per axis, at most 5 mm) of the skeleton; the body outline follows the in-plane part.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import ndtri

__all__ = ["HipCT", "hip_ct_volume", "write_dicom_series", "write_nifti"]

# NHANES III femoral-neck reference, white women 20-29 (Looker 1997) [R]; as in clinical.py.
_BMD_REF_MEAN, _BMD_REF_SD = 0.858, 0.120
# Anatomical half-extent (mm) that the field of view covers (x, y, z), and the anatomical
# point at its centre (origin: midpoint between the femoral-head centres).
_REF_HALF_FOV = np.array([188.0, 188.0, 140.0])
_FOV_CENTRE = np.array([0.0, -10.0, 8.0])
_HU_MIN, _HU_MAX = -1024.0, 3071.0
_HEAD_HALF_DISTANCE = 0.76  # femoral-head centre to midline, in units of hip-axis length
_TILE = 96  # side of the periodic texture tiles (voxels)
_BANK_SIZE = 4
_BANK_SEED = 20_240_611
# Frequency bands (cycles / voxel): centre, width.
_BANDS = {"fine": (0.30, 0.06), "coarse": (0.12, 0.035), "pore": (0.40, 0.08)}


@dataclass(eq=False)
class HipCT:
    """A simulated hip CT.

    Attributes
    ----------
    volume_hu : numpy.ndarray
        int16 Hounsfield units, shape ``(nz, ny, nx)``; ``z`` runs inferior to superior,
        ``y`` posterior to anterior and ``x`` from the patient's right to left.
    spacing : tuple of float
        Voxel size in mm, ``(z, y, x)``.
    anatomy_scale : float
        Image millimetres per anatomical millimetre (gross anatomy is scaled to fit the
        field of view; see the module notes).
    landmarks : dict
        Ground-truth geometry in voxel coordinates ``(z, y, x)`` (float arrays):
        ``head_right``/``head_left`` (femoral-head centres), ``neck_axis_right``/
        ``neck_axis_left`` (unit vectors from the head centre towards the shaft, in voxel
        axes), ``greater_trochanter_right``/``_left`` (centre of the trochanter) and
        ``head_radius`` (voxels, a 1-element array).
    """

    volume_hu: np.ndarray
    spacing: tuple[float, float, float]
    anatomy_scale: float = 1.0
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)

    def affine(self) -> np.ndarray:
        """Voxel-to-world affine in RAS millimetres (nibabel convention).

        The voxel index is ``(i, j, k)`` into ``volume_hu`` as stored, ``(z, y, x)``;
        the world origin is the centre of the field of view.

        Returns
        -------
        numpy.ndarray
            4 x 4 float64 matrix.
        """
        nz, ny, nx = self.volume_hu.shape
        sz, sy, sx = (float(s) for s in self.spacing)
        aff = np.zeros((4, 4))
        aff[0, 2] = -sx  # x index runs right -> left: R decreases
        aff[1, 1] = sy  # y index runs posterior -> anterior
        aff[2, 0] = sz  # z index runs inferior -> superior
        aff[:3, 3] = [(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz]
        aff[3, 3] = 1.0
        return aff


# ----------------------------------------------------------------------------- banks


@functools.lru_cache(maxsize=2)
def _texture_bank(tile: int = _TILE, n: int = _BANK_SIZE, seed: int = _BANK_SEED) -> dict:
    """Unit-variance periodic band-pass Gaussian random fields, ``{band: (n, tile**3)}``."""
    import scipy.fft

    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(tile)
    fr = np.fft.rfftfreq(tile)
    radius = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fr[None, None, :] ** 2)
    bank = {}
    for name, (centre, width) in _BANDS.items():
        filt = np.exp(-0.5 * ((radius - centre) / width) ** 2).astype(np.float32)
        fields = np.empty((n, tile**3), np.float32)
        for i in range(n):
            white = rng.standard_normal((tile, tile, tile), dtype=np.float32)
            g = scipy.fft.irfftn(scipy.fft.rfftn(white, workers=2) * filt, s=white.shape, workers=2)
            fields[i] = ((g - g.mean()) / g.std()).ravel()
        fields.flags.writeable = False
        bank[name] = fields
    return bank


@functools.lru_cache(maxsize=2)
def _noise_bank(shape: tuple[int, int, int], n: int = 2, seed: int = _BANK_SEED + 1):
    """Unit-variance, slightly correlated (CT-like) noise fields at the volume shape."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty((n, *shape), np.float32)
    for i in range(n):
        g = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.6)
        out[i] = g / g.std()
    out.flags.writeable = False
    return out


def _add_rolled(dst: np.ndarray, src: np.ndarray, shifts, scale: float) -> None:
    """``dst += scale * roll(src, shifts)`` without building the rolled copy."""
    blocks = []
    for n, s in zip(dst.shape, shifts, strict=True):
        s = int(s) % n
        pieces = [(slice(s, n), slice(0, n - s))]
        if s:
            pieces.append((slice(0, s), slice(n - s, n)))
        blocks.append(pieces)
    for sz_src, sz_dst in blocks[0]:
        for sy_src, sy_dst in blocks[1]:
            for sx_src, sx_dst in blocks[2]:
                dst[sz_dst, sy_dst, sx_dst] += scale * src[sz_src, sy_src, sx_src]


@functools.lru_cache(maxsize=64)
def _soft_threshold_mean(thr: float, width: float) -> float:
    """E[clip((g - thr) / width + 1/2, 0, 1)] for g ~ N(0, 1)."""
    g = np.linspace(-7.0, 7.0, 4001)
    pdf = np.exp(-0.5 * g**2)
    return float(np.sum(np.clip((g - thr) / width + 0.5, 0.0, 1.0) * pdf) / np.sum(pdf))


# ------------------------------------------------------------------------ primitives
# Each primitive: (bbox_lo, bbox_hi, sdf(X, Y, Z)) in image mm relative to the FOV centre,
# with X, Y, Z open (broadcastable) float32 grids.

_Prim = tuple[np.ndarray, np.ndarray, Callable]


def _sphere(c, r) -> _Prim:
    cx, cy, cz = (float(v) for v in c)
    r = float(r)

    def sdf(x, y, z):
        return np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) - r

    c = np.asarray(c, float)
    return c - r, c + r, sdf


def _cone(a, b, ra, rb) -> _Prim:
    """Round cone (capsule with linearly varying radius) from ``a`` to ``b``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ax, ay, az = (float(v) for v in a)
    bx, by, bz = (float(v) for v in b - a)
    inv = 1.0 / max(bx * bx + by * by + bz * bz, 1e-9)
    ra, rb = float(ra), float(rb)

    def sdf(x, y, z):
        dx, dy, dz = x - ax, y - ay, z - az
        h = (dx * (bx * inv) + dy * (by * inv)) + dz * (bz * inv)
        np.clip(h, 0.0, 1.0, out=h)
        ex = dx - bx * h
        ex *= ex
        ey = dy - by * h
        ey *= ey
        ez = dz - bz * h
        ez *= ez
        ex += ey
        ex += ez
        np.sqrt(ex, out=ex)
        ex -= ra + (rb - ra) * h
        return ex

    r = max(ra, rb)
    return np.minimum(a, b) - r, np.maximum(a, b) + r, sdf


def _ellipsoid(c, axes, radii) -> _Prim:
    """Oriented ellipsoid; ``axes`` rows are orthonormal directions, ``radii`` the semi-axes."""
    c = np.asarray(c, float)
    axes = np.asarray(axes, float)
    radii = np.asarray(radii, float)
    cx, cy, cz = (float(v) for v in c)
    m = axes / radii[:, None]  # local coordinate / radius
    m2 = axes / radii[:, None] ** 2

    def sdf(x, y, z):
        dx, dy, dz = x - cx, y - cy, z - cz
        k0 = None
        k1 = None
        for row, row2 in zip(m, m2, strict=True):
            u = (dx * float(row[0]) + dy * float(row[1])) + dz * float(row[2])
            u2 = (dx * float(row2[0]) + dy * float(row2[1])) + dz * float(row2[2])
            u *= u
            u2 *= u2
            k0 = u if k0 is None else k0 + u
            k1 = u2 if k1 is None else k1 + u2
        np.sqrt(k0, out=k0)
        np.sqrt(k1, out=k1)
        np.maximum(k1, 1e-6, out=k1)
        return k0 * (k0 - 1.0) / k1

    half = np.sqrt(((axes * radii[:, None]) ** 2).sum(0))
    return c - half, c + half, sdf


def _disc(c, e1, e2, r1, r2, half) -> _Prim:
    """Elliptical slab: semi-axes ``r1``, ``r2`` along ``e1``, ``e2``; thickness ``2 * half``."""
    c, e1, e2 = (np.asarray(v, float) for v in (c, e1, e2))
    n = np.cross(e1, e2)
    cx, cy, cz = (float(v) for v in c)
    a1, a2 = e1 / r1, e2 / r2
    b1, b2 = e1 / r1**2, e2 / r2**2
    half = float(half)

    def dot(dx, dy, dz, v):
        return (dx * float(v[0]) + dy * float(v[1])) + dz * float(v[2])

    def sdf(x, y, z):
        dx, dy, dz = x - cx, y - cy, z - cz
        k0 = np.sqrt(dot(dx, dy, dz, a1) ** 2 + dot(dx, dy, dz, a2) ** 2)
        k1 = np.sqrt(dot(dx, dy, dz, b1) ** 2 + dot(dx, dy, dz, b2) ** 2)
        np.maximum(k1, 1e-6, out=k1)
        d2 = k0 * (k0 - 1.0) / k1
        w = np.abs(dot(dx, dy, dz, n)) - half
        inside = np.minimum(np.maximum(d2, w), 0.0)
        np.maximum(d2, 0.0, out=d2)
        np.maximum(w, 0.0, out=w)
        return np.sqrt(d2 * d2 + w * w) + inside

    ext = np.sqrt((r1 * e1) ** 2 + (r2 * e2) ** 2) + half * np.abs(n)
    return c - ext, c + ext, sdf


def _cup(c, r, apex, axis, cut) -> _Prim:
    """Ball ``|p - c| < r`` cut by the plane ``(p - apex) . axis = -cut`` (kept side: above)."""
    lo, hi, sph = _sphere(c, r)
    px, py, pz = (float(v) for v in apex)
    ax, ay, az = (float(v) for v in axis)
    cut = float(cut)

    def sdf(x, y, z):
        plane = ((x - px) * -ax + (y - py) * -ay) + (z - pz) * -az
        plane -= cut
        return np.maximum(sph(x, y, z), plane)

    return lo, hi, sdf


def _carve_sphere(c, r) -> _Prim:
    """Negative sphere: ``max(sdf, r - |p - c|)`` removes a ball (the acetabular socket)."""
    lo, hi, sph = _sphere(c, r)

    def sdf(x, y, z):
        return -sph(x, y, z)

    return lo, hi, sdf


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (Quilez) with blend radius ``k``."""
    h = (b - a) * (0.5 / k)
    h += 0.5
    np.clip(h, 0.0, 1.0, out=h)
    out = a - b
    out *= h
    out += b
    out -= k * h * (1.0 - h)
    return out


class _Canvas:
    """Signed distance of one bone group on the union of its primitives' bounding boxes."""

    def __init__(self, prims, shape, spacing: float, margin: float):
        lo = np.min([p[0] for p in prims], 0) - margin
        hi = np.max([p[1] for p in prims], 0) + margin
        n = np.array(shape[::-1])  # (x, y, z) counts
        centre = (n - 1) / 2
        self.ilo = np.clip(np.floor(lo / spacing + centre).astype(int), 0, n)
        self.ihi = np.clip(np.ceil(hi / spacing + centre).astype(int) + 1, 0, n)
        self.spacing, self.centre, self.margin = spacing, centre, margin
        self.empty = bool(np.any(self.ihi <= self.ilo))
        size = np.maximum(self.ihi - self.ilo, 0)
        self.sdf = np.full((size[2], size[1], size[0]), 1e3, np.float32)
        self.axes = [
            ((np.arange(self.ilo[a], self.ihi[a]) - centre[a]) * spacing).astype(np.float32)
            for a in range(3)
        ]

    def _slices(self, lo, hi):
        a = np.clip(np.floor(lo / self.spacing + self.centre).astype(int) - self.ilo, 0, None)
        b = np.ceil(hi / self.spacing + self.centre).astype(int) + 1 - self.ilo
        b = np.minimum(b, self.ihi - self.ilo)
        if np.any(b <= a):
            return None
        return a, b

    def add(self, prim: _Prim, k: float = 0.0, carve: bool = False) -> None:
        lo, hi, fn = prim
        m = self.margin if not carve else self.spacing
        ab = self._slices(lo - m, hi + m)
        if self.empty or ab is None:
            return
        a, b = ab
        x = self.axes[0][a[0] : b[0]][None, None, :]
        y = self.axes[1][a[1] : b[1]][None, :, None]
        z = self.axes[2][a[2] : b[2]][:, None, None]
        view = self.sdf[a[2] : b[2], a[1] : b[1], a[0] : b[0]]
        d = fn(x, y, z)
        if carve:
            np.maximum(view, d, out=view)
        elif k > 0:
            view[...] = _smin(view, d, k)
        else:
            np.minimum(view, d, out=view)


# -------------------------------------------------------------------------- anatomy


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def _femur(side: int, hal: float, nsa: float, female: bool) -> dict:
    """Proximal femur of one side in anatomical mm (x to the patient's left, y anterior, z up).

    ``side`` is -1 for the right femur (negative x) and +1 for the left. The head centre is
    at ``x = side * 0.76 * HAL``. The neck axis runs from the head centre at ``nsa`` degrees to
    the shaft (shaft 8 deg from vertical, anteversion 10 deg); the head-centre-to-shaft-axis
    distance along the neck axis is set so that the neck axis meets the lateral cortex
    ``HAL`` minus head radius and acetabular floor from the medial acetabular wall.
    """
    lat = np.array([side, 0.0, 0.0])
    ant = np.array([0.0, 1.0, 0.0])
    up = np.array([0.0, 0.0, 1.0])
    alpha, beta = np.radians(8.0), np.radians(10.0)
    theta = np.radians(nsa)
    r_h = 0.22 * hal * (0.95 if female else 1.0)
    head = _HEAD_HALF_DISTANCE * hal * lat
    up_s = np.sin(alpha) * lat + np.cos(alpha) * up  # proximal direction of the shaft
    down = -up_s
    lat_s = _unit(lat - (lat @ up_s) * up_s)
    phi = np.radians(270.0) - alpha - theta  # neck direction (shaft -> head), coronal plane
    n_lat, n_up = np.cos(phi), np.sin(phi)
    neck = _unit(n_lat * np.cos(beta) * lat + abs(n_lat) * np.sin(beta) * ant + n_up * up)
    r_top = 0.15 * hal
    l_hj = max(hal - r_h - 0.06 * hal - r_top / np.sin(np.pi - theta), 0.3 * hal)
    j = head - l_hj * neck  # neck-shaft junction on the shaft axis
    gt = j + 0.17 * hal * up_s + 0.05 * hal * lat - 0.03 * hal * ant
    lt = j + 0.30 * hal * down - 0.15 * hal * lat - 0.07 * hal * ant
    mid = head - 0.55 * l_hj * neck
    parts = [
        ("sphere", head, r_h),
        ("cone", head, mid, 0.70 * r_h, 0.60 * r_h),
        ("cone", mid, j, 0.60 * r_h, 0.16 * hal),
        ("cone", j + 0.10 * hal * up_s, j + 0.45 * hal * down, 0.18 * hal, 0.135 * hal),
        ("cone", j + 0.45 * hal * down, j + 2.6 * hal * down, 0.135 * hal, 0.125 * hal),
        ("ellipsoid", gt, np.array([lat_s, ant, up_s]), 0.01 * hal * np.array([11.0, 15.0, 17.0])),
        ("sphere", lt, 0.065 * hal),
        ("cone", gt - 0.06 * hal * ant, lt, 0.055 * hal, 0.045 * hal),
    ]
    return {
        "parts": parts,
        "head": head,
        "r_h": r_h,
        "neck": neck,
        "junction": j,
        "down": down,
        "gt": gt,
        "lt": lt,
    }


def _pelvis(hal: float, r_h: float, gap: float, female: bool) -> tuple[list, list]:
    """Pelvis parts (anatomical mm) and the two socket carvings; see :func:`_femur` axes."""
    d = _HEAD_HALF_DISTANCE * hal
    w = 1.06 if female else 1.0  # wider pelvic inlet and pubic arch in women
    up = np.array([0.0, 0.0, 1.0])
    ant = np.array([0.0, 1.0, 0.0])
    parts, carves = [], []
    for side in (-1, 1):
        lat = np.array([side, 0.0, 0.0])

        def p(lx, y, z, lat=lat):
            return lat * lx + np.array([0.0, y, z])

        head = p(d, 0, 0)
        into = _unit(0.60 * -lat + np.array([0.0, -0.20, 0.77]))  # acetabular axis, inwards
        r_hole = r_h + gap
        # acetabulum: a ball of bone around the socket, cut by the opening plane so that the
        # rim covers 100 deg from the acetabular axis, then carved by the socket itself
        cut = -r_hole * np.cos(np.radians(100.0))
        parts.append(("cup", head + 0.3 * r_h * into, r_hole + 0.45 * r_h, head, into, cut))
        carves.append(("sphere", head, r_hole))
        # ilium: thick body from the acetabular roof up to the wing (a thin slab) with a crest
        parts.append(("cone", head + 1.0 * r_h * into, p(d - 6, -6, 54), 0.85 * r_h, 0.55 * r_h))
        parts.append(
            (
                "disc",
                p(d - 8, -8, 40),
                _unit(lat - 0.25 * up),
                _unit(up + 0.25 * lat),
                22.0,
                30.0,
                9.0,
            )
        )
        e1 = _unit(0.55 * lat + 0.83 * ant)  # anterior superior iliac spine <-> SI joint
        e2 = _unit(0.30 * lat + 0.95 * up)  # flares laterally upwards
        e2 = _unit(e2 - e1 * (e1 @ e2))
        wing_c = p(d - 4, -18, 86)
        parts.append(("disc", wing_c, e1, e2, 62.0, 42.0, 3.5))
        rim = [
            wing_c + 60 * np.cos(t) * e1 + 40 * np.sin(t) * e2
            for t in np.radians([10, 55, 100, 150])
        ]
        for a, b in zip(rim[:-1], rim[1:], strict=True):
            parts.append(("cone", a, b, 6.0, 6.0))
        # medial acetabular wall (quadrilateral plate) and pelvic brim to the sacroiliac joint
        normal = _unit(lat + 0.2 * up)
        parts.append(
            ("disc", p(d - 28, -14, -4), ant, _unit(np.cross(normal, ant)), 20.0, 28.0, 4.5)
        )
        parts.append(("cone", p(d - 26, -6, 18), p(44 * w, -60, 66), 9.0, 8.0))
        parts.append(("cone", p(d - 8, -12, 46), p(46 * w, -68, 76), 12.0, 11.0))  # posterior
        # superior pubic ramus, pubic body (symphysis gap at the midline)
        parts.append(("cone", p(d - 16, 14, -6), p(20 * w, 50, -24), 10.0, 8.5))
        pub = p(15 * w, 50, -34)
        parts.append(("ellipsoid", pub, np.array([lat, ant, up]), [10.0, 9.0, 16.0]))
        # ischium down to the tuberosity, ischiopubic ramus back to the pubis
        tub = p(d - 24, -32, -62)
        parts.append(("cone", p(d - 20, -22, -20), tub, 12.0, 12.0))
        parts.append(("cone", tub + np.array([0, 6, -2]), p(17 * w, 44, -46), 7.0, 7.0))
    # sacrum (tilted: promontory anterior-superior), alae to the sacroiliac joints, L5 body
    axis = _unit([0.0, 0.45, 0.89])
    ap = np.cross([1.0, 0.0, 0.0], axis)
    parts.append(
        ("ellipsoid", np.array([0, -80, 80.0]), np.array([[1, 0, 0], axis, ap]), [44, 55, 20])
    )
    for side in (-1, 1):
        parts.append(
            ("cone", np.array([0, -64, 104.0]), np.array([side * 46 * w, -68, 92.0]), 18, 15)
        )
    parts.append(("ellipsoid", np.array([0, -48, 140.0]), np.eye(3), [26.0, 20.0, 13.0]))
    return parts, carves


def _place(part, rot: np.ndarray, shift: np.ndarray, scale: float) -> _Prim:
    """Map an anatomical-mm part to image mm (relative to the FOV centre) and build it."""

    def pt(v):
        return scale * (rot @ (np.asarray(v, float) - _FOV_CENTRE)) + shift

    kind = part[0]
    if kind == "sphere":
        return _sphere(pt(part[1]), scale * part[2])
    if kind == "cone":
        return _cone(pt(part[1]), pt(part[2]), scale * part[3], scale * part[4])
    if kind == "ellipsoid":
        axes = (rot @ np.asarray(part[2], float).T).T
        return _ellipsoid(pt(part[1]), axes, scale * np.asarray(part[3], float))
    if kind == "cup":
        _, c, r, apex, axis, cut = part
        return _cup(pt(c), scale * r, pt(apex), rot @ axis, scale * cut)
    if kind == "disc":
        _, c, e1, e2, r1, r2, half = part
        return _disc(pt(c), rot @ e1, rot @ e2, scale * r1, scale * r2, scale * half)
    raise ValueError(kind)


def _body_slice(shape, spacing, scale, bmi, female, yaw, shift, hu_fat, hu_muscle):
    """Axial soft-tissue slice (ny, nx) in HU: air, subcutaneous fat, muscle (float32)."""
    ny, nx = shape[1:]
    y = ((np.arange(ny) - (ny - 1) / 2) * spacing - shift[1])[:, None]
    x = ((np.arange(nx) - (nx - 1) / 2) * spacing - shift[0])[None, :]
    c, s = np.cos(yaw), np.sin(yaw)
    xa = (c * x + s * y) / scale + _FOV_CENTRE[0]
    ya = (-s * x + c * y) / scale + _FOV_CENTRE[1]
    yb = ya + 10.0  # body centre 10 mm posterior of the hip centres
    ax = float(np.clip(172 + 1.5 * (bmi - 22), 165, 185))
    ay = float(np.clip(112 + 3.4 * (bmi - 22), 95, 172))
    fat = float(np.clip(4.0 + 1.6 * (bmi - 18.0), 3.0, 45.0)) * (1.2 if female else 1.0)
    n = 2.6  # superellipse exponent: a boxier body than an ellipse

    def rho(a, b):
        return (np.abs(xa / a) ** n + np.abs(yb / b) ** n) ** (1 / n)

    edge = spacing / scale  # one voxel in anatomical mm
    outer = np.clip((1 - rho(ax, ay)) * min(ax, ay) / edge + 0.5, 0, 1)
    inner = np.clip((1 - rho(ax - fat, ay - 1.25 * fat)) * min(ax, ay) / edge + 0.5, 0, 1)
    hu = -1000.0 + outer * (hu_fat + 1000.0) + inner * (hu_muscle - hu_fat)
    return hu.astype(np.float32)


def _check_inputs(bmd, z, bmi, sex, hal, nsa, shape, spacing) -> bool:
    for name, v in (("femoral_neck_bmd", bmd), ("bmi", bmi), ("hip_axis_length", hal)):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if not np.isfinite(z):
        raise ValueError(f"z must be finite, got {z!r}")
    if not 90.0 < nsa < 170.0:
        raise ValueError(f"neck_shaft_angle must be in (90, 170) degrees, got {nsa!r}")
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be 3 sizes >= 16, got {shape!r}")
    if not np.isfinite(spacing) or spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    key = str(sex).strip().upper()[:1]
    if key not in ("F", "M"):
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")
    return key == "F"


def hip_ct_volume(
    *,
    femoral_neck_bmd: float,
    z: float,
    bmi: float,
    sex: str,
    hip_axis_length: float,
    neck_shaft_angle: float,
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (96, 128, 128),
    spacing: float = 1.0,
) -> HipCT:
    """Simulate a hip CT (both hips and the pelvis) in Hounsfield units.

    Parameters
    ----------
    femoral_neck_bmd : float
        Areal femoral-neck BMD in g/cm2 (young-adult reference 0.858 +/- 0.120); sets
        cortical and trabecular density and, with ``z``, cortical thickness.
    z : float
        Hidden bone quality (standard units, 0 = average); low ``z`` gives a sparser, coarser
        trabecular texture, a thinner and more porous cortex at the same BMD.
    bmi : float
        Body-mass index in kg/m2; sets body size, subcutaneous fat thickness and noise.
    sex : {"F", "M"}
        Patient sex ("female"/"male" also accepted): smaller heads, wider pelvis and more
        subcutaneous fat in women.
    hip_axis_length : float
        Hip-axis length in mm (typical 95-115; clipped to 80-130 for the geometry). Sets the
        head-to-trochanter distance along the neck axis, the size of the proximal femur and
        the distance between the femoral-head centres (``2 * 0.76 * HAL`` anatomical mm, i.e.
        ``1.52 * HAL * anatomy_scale`` image mm).
    neck_shaft_angle : float
        Femoral neck-shaft angle in degrees (typical 125-135; clipped to 110-150).
    rng : numpy.random.Generator
        Source of all patient-level randomness (positioning, texture draws, noise); the same
        generator state gives the same volume.
    shape : tuple of int, default (96, 128, 128)
        ``(nz, ny, nx)`` voxels.
    spacing : float, default 1.0
        Isotropic voxel size in mm.

    Returns
    -------
    HipCT
        int16 volume in HU (clipped to -1024..3071), spacing, anatomy scale and landmarks.
    """
    female = _check_inputs(
        femoral_neck_bmd, z, bmi, sex, hip_axis_length, neck_shaft_angle, shape, spacing
    )
    shape = tuple(int(n) for n in shape)
    sp = float(spacing)
    hal = float(np.clip(hip_axis_length, 80.0, 130.0))
    nsa = float(np.clip(neck_shaft_angle, 110.0, 150.0))
    t = (float(femoral_neck_bmd) - _BMD_REF_MEAN) / _BMD_REF_SD
    z = float(z)
    fov_half = np.array(shape[::-1], float) * sp / 2
    scale = float(np.min(fov_half / _REF_HALF_FOV))

    # --- patient-level random draws (fixed order) ---------------------------------------
    angles = np.radians(np.clip(rng.normal(0.0, 1.5, 3), -4.0, 4.0))
    shift = np.clip(rng.normal(0.0, 2.0, 3), -5.0, 5.0)
    nsa_lr = nsa + np.clip(rng.normal(0.0, 1.0, 2), -2.5, 2.5)
    hu_fat = float(rng.normal(-100.0, 5.0))
    hu_muscle = float(rng.normal(45.0, 4.0))
    tex_pick = rng.integers(0, _BANK_SIZE, 3)
    tex_off = rng.integers(0, _TILE, (3, 3))
    tex_flip = rng.random((3, 3)) < 0.5
    noise_pick = int(rng.integers(0, 2))
    noise_shift = rng.integers(0, np.array(shape))
    noise_sign = 1.0 if rng.random() < 0.5 else -1.0
    rot = _rotation(*angles)

    # --- soft tissue ----------------------------------------------------------------------
    body = _body_slice(shape, sp, scale, bmi, female, angles[2], shift, hu_fat, hu_muscle)
    vol = np.empty(shape, np.float32)
    vol[...] = body
    margin = 1.5 * sp
    bladder = _place(
        ("ellipsoid", np.array([0, 32.0, -14]), np.eye(3), [38.0, 26.0, 28.0]), rot, shift, scale
    )
    cb = _Canvas([bladder], shape, sp, margin)
    cb.add(bladder)
    if not cb.empty:
        sl = tuple(slice(cb.ilo[a], cb.ihi[a]) for a in (2, 1, 0))
        frac = np.clip(0.5 - cb.sdf / sp, 0.0, 1.0)
        vol[sl] += frac * (8.0 - vol[sl])

    # --- bone parameters --------------------------------------------------------------------
    cort_hu = float(np.clip(1450 + 100 * t + 40 * z, 1100, 1850))
    cort_mm = float(np.clip(1.6 + 0.25 * t + 0.25 * z, 0.8, 2.6))
    porosity = float(np.clip(0.06 - 0.035 * z - 0.01 * t, 0.005, 0.25))
    trab_mean = float(np.clip(250 + 420 * (femoral_neck_bmd - _BMD_REF_MEAN), 60, 450))
    bv = float(np.clip(0.35 + 0.07 * z, 0.10, 0.60))
    mix = float(np.clip((z + 3.0) / 6.0, 0.0, 1.0)) * np.pi / 2
    w_fine, w_coarse = float(np.sin(mix)), float(np.cos(mix))
    thr, soft = float(ndtri(1 - bv)), 0.5
    o_mean = _soft_threshold_mean(round(thr, 4), soft)
    amp = 330.0
    pore_thr = float(ndtri(1 - porosity))
    bank = _texture_bank()
    fields = [bank["fine"][tex_pick[0]], bank["coarse"][tex_pick[1]], bank["pore"][tex_pick[2]]]
    maps = []
    for f in range(3):
        per_axis = []
        for a, n in enumerate(shape):
            m = (np.arange(n) + tex_off[f, a]) % _TILE
            per_axis.append(m[::-1].copy() if tex_flip[f, a] else m)
        maps.append(per_axis)

    # --- skeleton ----------------------------------------------------------------------------
    gap = max(4.0 * scale, 2.5 * sp)  # joint space, image mm (kept visible at any resolution)
    femurs = [_femur(side, hal, a, female) for side, a in zip((-1, 1), nsa_lr, strict=True)]
    pelvis_parts, carves = _pelvis(hal, femurs[0]["r_h"], gap / scale, female)
    k_bone = 5.0 * scale

    def pt(v):
        return scale * (rot @ (np.asarray(v, float) - _FOV_CENTRE)) + shift

    groups = [("pelvis", pelvis_parts, None)] + [("femur", f["parts"], f) for f in femurs]
    for kind, parts, fem in groups:
        prims = [_place(p, rot, shift, scale) for p in parts]
        canvas = _Canvas(prims, shape, sp, margin + k_bone)
        if canvas.empty:
            continue
        for prim in prims:
            canvas.add(prim, k_bone)
        if kind == "pelvis":
            for _, centre_anat, radius in carves:
                canvas.add(_carve_sphere(pt(centre_anat), scale * radius), carve=True)
        flat = np.flatnonzero(canvas.sdf < 0.5 * sp)
        if flat.size == 0:
            continue
        kz, jy, ix = np.unravel_index(flat, canvas.sdf.shape)
        kz += canvas.ilo[2]
        jy += canvas.ilo[1]
        ix += canvas.ilo[0]
        sd = canvas.sdf.ravel()[flat]
        thick = np.full(sd.shape, cort_mm, np.float32)
        if fem is not None:
            # distance along the shaft below the neck junction; marrow canal in the diaphysis
            jv, dv = pt(fem["junction"]), rot @ fem["down"]
            px = canvas.axes[0][ix - canvas.ilo[0]] - float(jv[0])
            py = canvas.axes[1][jy - canvas.ilo[1]] - float(jv[1])
            pz = canvas.axes[2][kz - canvas.ilo[2]] - float(jv[2])
            u = px * float(dv[0]) + py * float(dv[1]) + pz * float(dv[2])
            diaph = np.clip((u - 0.36 * hal * scale) / (0.2 * hal * scale), 0.0, 1.0)
            thick += diaph
        else:
            diaph = None
        f_out = np.clip(0.5 - sd / sp, 0.0, 1.0)
        f_in = np.clip(0.5 - (sd + thick) / sp, 0.0, 1.0)
        lin = [(mz[kz] * _TILE + my[jy]) * _TILE + mx[ix] for mz, my, mx in maps]
        g = w_fine * fields[0][lin[0]] + w_coarse * fields[1][lin[1]]
        occ = np.clip((g - thr) * (1.0 / soft) + 0.5, 0.0, 1.0)
        trab = trab_mean + amp * (occ - o_mean)
        if diaph is not None:
            trab += diaph * (-20.0 - trab)
        cort = np.where(fields[2][lin[2]] > pore_thr, 0.4 * cort_hu, cort_hu)
        under = vol[kz, jy, ix]
        vol[kz, jy, ix] = under + f_out * (cort - under) + f_in * (trab - cort)

    # --- scanner noise, quantisation ---------------------------------------------------------
    sigma = float(np.clip(12.0 + 0.3 * (bmi - 25.0), 10.0, 20.0))
    _add_rolled(vol, _noise_bank(shape)[noise_pick], noise_shift, noise_sign * sigma)
    np.clip(vol, _HU_MIN, _HU_MAX, out=vol)
    np.rint(vol, out=vol)
    volume = vol.astype(np.int16)

    # --- landmarks (voxel coordinates z, y, x) ------------------------------------------------
    centre = (np.array(shape[::-1], float) - 1) / 2

    def vox(q):
        return (q / sp + centre)[::-1]

    landmarks = {"head_radius": np.array([femurs[0]["r_h"] * scale / sp])}
    for name, f in zip(("right", "left"), femurs, strict=True):
        landmarks[f"head_{name}"] = vox(pt(f["head"]))
        landmarks[f"neck_axis_{name}"] = (rot @ -f["neck"])[::-1]
        landmarks[f"greater_trochanter_{name}"] = vox(pt(f["gt"]))
    return HipCT(volume, (sp, sp, sp), anatomy_scale=scale, landmarks=landmarks)


# ---------------------------------------------------------------------------- writers


def write_nifti(ct: HipCT, path: str | os.PathLike) -> Path:
    """Write the volume as NIfTI-1 (int16 HU) with ``ct.affine()`` as qform and sform.

    The array is stored as ``(z, y, x)``, exactly as in ``ct.volume_hu``; the affine carries
    the orientation. The file is written to a temporary name in the same directory and
    moved into place, so readers never see a partial file.

    Parameters
    ----------
    ct : HipCT
        Volume to write.
    path : str or os.PathLike
        Target ending in ``.nii.gz`` (compressed) or ``.nii``.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name
    if not (name.endswith(".nii.gz") or name.endswith(".nii")):
        raise ValueError(f"path must end in .nii.gz or .nii, got {str(path)!r}")
    suffix = ".nii.gz" if name.endswith(".nii.gz") else ".nii"
    path.parent.mkdir(parents=True, exist_ok=True)
    aff = ct.affine()
    img = nib.Nifti1Image(np.asarray(ct.volume_hu, np.int16), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"fracrisk simulated hip CT (HU)"
    tmp = path.parent / f".{name}.{uuid.uuid4().hex}.tmp{suffix}"
    try:
        if suffix == ".nii.gz":
            # ISA-L's gzip is ~3.5x faster than zlib's at the same size; the stream is plain
            # gzip, readable by nibabel and every NIfTI reader.
            from isal import igzip

            tmp.write_bytes(igzip.compress(img.to_bytes(), compresslevel=1))
        else:
            nib.save(img, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_dicom_series(ct: HipCT, directory: str | os.PathLike, *, patient_id: str) -> Path:
    """Write the volume as a DICOM CT series, one axial slice per file.

    Stored values are unsigned 16-bit ``HU + 1024`` (RescaleSlope 1, RescaleIntercept
    -1024). Geometry is in DICOM LPS: rows of each file follow the array's ``y`` axis
    (posterior to anterior, so ImageOrientationPatient is ``[1, 0, 0, 0, -1, 0]``), columns
    its ``x`` axis (right to left), and ImagePositionPatient z increases with the slice
    index; positions agree with ``ct.affine()``. UIDs come from
    :func:`pydicom.uid.generate_uid` with ``patient_id`` as the entropy source, so
    rewriting the same patient gives the same UIDs. Nothing touches the network.

    Parameters
    ----------
    ct : HipCT
        Volume to write.
    directory : str or os.PathLike
        Output directory (created); files are ``CT0001.dcm``, ``CT0002.dcm``, ...
    patient_id : str
        PatientID and UID seed.

    Returns
    -------
    pathlib.Path
        The directory.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pid = str(patient_id)
    study_uid = generate_uid(entropy_srcs=[pid, "study"])
    series_uid = generate_uid(entropy_srcs=[pid, "series"])
    frame_uid = generate_uid(entropy_srcs=[pid, "frame"])
    vol = np.asarray(ct.volume_hu)
    nz, ny, nx = vol.shape
    sz, sy, sx = (float(s) for s in ct.spacing)
    aff = ct.affine()
    stored = (np.clip(vol.astype(np.int32), -1024, 64511) + 1024).astype("<u2")

    def ds_str(v: float) -> str:
        return f"{v:.6g}"

    for k in range(nz):
        ras = aff @ np.array([k, 0.0, 0.0, 1.0])
        lps = [-ras[0], -ras[1], ras[2]]
        sop_uid = generate_uid(entropy_srcs=[pid, "instance", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.Manufacturer = "fracrisk simulator"
        ds.PatientID = pid
        ds.PatientName = pid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.BodyPartExamined = "HIP"
        ds.PatientPosition = "FFS"
        ds.ImagePositionPatient = [ds_str(v) for v in lps]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "-1", "0"]
        ds.PixelSpacing = [ds_str(sy), ds_str(sx)]
        ds.SliceThickness = ds_str(sz)
        ds.SpacingBetweenSlices = ds_str(sz)
        ds.SliceLocation = ds_str(lps[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "400"
        ds.WindowWidth = "1800"
        ds.PixelData = stored[k].tobytes()
        target = directory / f"CT{k + 1:04d}.dcm"
        tmp = target.with_name(f".{target.name}.tmp")
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, target)
    return directory
