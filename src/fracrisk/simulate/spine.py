r"""A lumbar spine (L1-L5) phantom volume and its lateral radiograph with ground-truth keypoints.

Coarse but recognisable anatomy, built in mm in each vertebra's own frame (``u`` antero-
posterior, ``v`` along the spine's axis, ``x`` left-right) and voxelised with soft
(partial-volume) edges:

* five vertebral bodies stacked along a gentle lordotic arc (a circular arc turning by
  ~28 degrees, SD 5, from L5 to L1, upright on average: tilt ~+16 degrees at L5 and ~-12 at
  L1, so that L3 is the most anterior);
  heights ~25-28 mm, AP depth ~30-35 mm, width ~40-50 mm, increasing caudally (women;
  men 8% larger), scaled down as a whole when the field of view is too small for them;
* a rounded cross-section (superellipse: round anteriorly, flat posteriorly), a 1 mm
  cortical shell including the endplates, trabecular bone inside;
* intervertebral discs (~80 HU) of 7.5-10 mm;
* posterior elements behind each body: pedicles (upper half of the body), articular pillars
  (facets and pars), laminae, a spinous process and transverse processes;
* soft tissue (muscle 45 HU, a subcutaneous fat layer -90 HU, both thicker with BMI) in a
  rounded outline open anteriorly, air behind the back and beside a slim patient;
* CT-like noise (~10 HU).

Bone density: the mean trabecular HU follows the femoral-neck T-score
(``170 + 35 T``; QCT lumbar trabecular BMD is ~170 mg/cm3 in young adults and ~80 mg/cm3,
the ACR osteoporosis threshold, near a DXA T-score of -2.5 [R]), with a small spine-hip
discordance. The cortical shell and posterior elements brighten with BMD too.

Texture (the image signature of the hidden bone quality ``z``): trabecular HU is
``marrow + (mean - marrow) * (1 + beta F)^2 / (1 + beta^2)`` for a unit band-pass Gaussian
random field ``F`` (FFT, log-normal radial band around wavelength ``lambda``), so the mean is
fixed by BMD while ``z`` sets the structure: ``lambda = 4.5 exp(-0.22 z)`` mm (coarser for low
``z``) and ``beta = 0.75 - 0.15 z`` (sparser, more contrasted for low ``z``). Both make the
texture of the projected bodies rougher and coarser for low ``z`` at the same BMD. The
texture is drawn for ``z + N(0, 0.5^2)``: the image shows ``z`` up to individual variation.
Fields are drawn once per process into a small bank (five wavelengths, two variants each,
cached); each vertebra blends the two bank levels around its ``lambda`` and takes a random
crop with random flips.

Genant deformities (Genant et al., J Bone Miner Res 1993;8:1137-1148) reduce a body's
height by :data:`GENANT_HEIGHT_LOSS`: ``"wedge"`` lowers the anterior superior corner
(posterior height kept), ``"biconcave"`` depresses both endplates in the middle (corners
kept), ``"crush"`` lowers the whole superior endplate. The column above a deformed body
settles by its mean height loss. Fractured bodies are slightly denser (compaction).
The corners returned are those of this geometry, so they are exact ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fracrisk.imaging.anatomy import VERTEBRAE
from fracrisk.imaging.drr import project_points, render_drr

__all__ = [
    "DEFORMITY_TYPES",
    "GENANT_HEIGHT_LOSS",
    "LateralRadiograph",
    "SpineVolume",
    "lateral_radiograph",
    "spine_volume",
]

#: Genant semi-quantitative grade -> fractional vertebral height reduction used by the
#: phantom: grade 1 (mild) 20-25%, grade 2 (moderate) 25-40%, grade 3 (severe) > 40%
#: (Genant, Wu, van Kuijk, Nevitt, J Bone Miner Res 1993;8(9):1137-1148).
GENANT_HEIGHT_LOSS = {0: 0.0, 1: 0.22, 2: 0.32, 3: 0.45}
#: Genant deformity types of a vertebral body ("none" for an intact one).
DEFORMITY_TYPES = ("none", "wedge", "biconcave", "crush")

# Femoral-neck reference (NHANES III white women 20-29), as in simulate.clinical [R].
_BMD_REF_MEAN, _BMD_REF_SD = 0.858, 0.120

_HU_AIR, _HU_FAT, _HU_MUSCLE, _HU_DISC, _HU_MARROW = -1000.0, -90.0, 45.0, 80.0, 20.0
_NOISE_HU = 10.0
# The texture shows z up to individual variation: it is drawn for z + N(0, 0.5^2) [I].
_TEXTURE_Z_SD = 0.5
_CORTEX_MM = 1.0

# Nominal female L1..L5 dimensions in mm (men x1.08) [I, close to published morphometry].
_HEIGHT = np.array([25.5, 26.5, 27.0, 27.5, 27.0])
_DEPTH = np.array([30.5, 31.5, 32.5, 33.5, 34.5])
_WIDTH = np.array([40.0, 42.0, 44.5, 47.0, 49.5])
# Discs T12-L1, L1-L2, ..., L4-L5, L5-S1 (mm).
_DISC = np.array([7.5, 8.5, 9.0, 9.5, 10.0, 9.0])

# Texture bank: z levels, wavelength and sparsity as functions of z.
_BANK_Z = np.array([-3.0, -1.5, 0.0, 1.5, 3.0])
_BANK_VARIANTS = 2


def _wavelength_mm(z):
    return 4.5 * np.exp(-0.22 * np.asarray(z, dtype=np.float64))


def _sparsity(z: float) -> float:
    return float(np.clip(0.75 - 0.15 * z, 0.3, 1.3))


@dataclass
class SpineVolume:
    """A simulated lumbar spine CT volume with the exact vertebral-body corners.

    Attributes
    ----------
    volume_hu : numpy.ndarray
        int16 ``(nz, ny, nx)`` in HU; z inferior -> superior, y posterior -> anterior,
        x right -> left.
    spacing : tuple of float
        Voxel size ``(dz, dy, dx)`` in mm; voxel ``i``'s centre is at ``(i + 0.5) * spacing``.
    corners : numpy.ndarray
        float ``(5, 4, 2)``: for L1..L5, the body's corners in the midsagittal ``(y, z)`` plane
        in mm, ordered anterior-superior, posterior-superior, posterior-inferior,
        anterior-inferior.
    """

    volume_hu: np.ndarray
    spacing: tuple[float, float, float]
    corners: np.ndarray


@dataclass
class LateralRadiograph:
    """A lateral lumbar radiograph (DRR) with ground-truth keypoints.

    Attributes
    ----------
    image : numpy.ndarray
        float32 ``(H, W)`` line integrals from :func:`fracrisk.imaging.render_drr` (view
        ``"lateral"``: rows z with superior at the top, columns y with posterior on the
        left); higher = more attenuation.
    pixel_spacing : tuple of float
        ``(row, col)`` pixel size in mm.
    keypoints : numpy.ndarray
        float ``(5, 4, 2)``: ``(x = col, y = row)`` pixel coordinates (integers at pixel
        centres) of the 20 body corners, in the order of :attr:`SpineVolume.corners`.
    """

    image: np.ndarray
    pixel_spacing: tuple[float, float]
    keypoints: np.ndarray


# --------------------------------------------------------------------------- random fields


def _band_pass_field(shape, wavelength_vox: float, seed: int) -> np.ndarray:
    """Periodic unit-variance Gaussian field, log-normal radial band around a wavelength."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(shape)
    spectrum = np.fft.rfftn(white)
    freqs = np.meshgrid(
        *[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij"
    )
    radius = np.sqrt(sum(f * f for f in freqs))
    radius[(0,) * len(shape)] = 1e-9
    gain = np.exp(-0.5 * (np.log(radius * wavelength_vox) / 0.35) ** 2)
    field = np.fft.irfftn(spectrum * gain, s=shape, axes=tuple(range(len(shape))))
    field -= field.mean()
    field /= field.std()
    return field.astype(np.float32)


@lru_cache(maxsize=4)
def _texture_bank(shape: tuple[int, int, int], spacing: float) -> tuple[np.ndarray, ...]:
    """Band-pass fields for every bank level: ``bank[level][variant]``, cached per process.

    Fixed seeds: the bank (hence every simulated image) is the same in every process.
    """
    levels = []
    for k, wavelength in enumerate(_wavelength_mm(_BANK_Z)):
        vox = max(float(wavelength) / spacing, 2.2)
        levels.append(
            np.stack(
                [_band_pass_field(shape, vox, 7919 * k + v + 1) for v in range(_BANK_VARIANTS)]
            )
        )
    for level in levels:
        level.flags.writeable = False
    return tuple(levels)


@lru_cache(maxsize=4)
def _noise_bank(shape: tuple[int, int, int]) -> np.ndarray:
    """White CT noise (HU) for one volume shape, cached; patients take shifted/flipped views."""
    rng = np.random.default_rng(104729)
    noise = rng.normal(0.0, _NOISE_HU, shape).astype(np.float32)
    noise.flags.writeable = False
    return noise


def _bank_shape(spacing: float) -> tuple[int, int, int]:
    # Larger than any vertebral-body box (at most ~52 x 52 x 62 mm) by a margin for offsets.
    def up(mm):
        return int(16 * math.ceil((mm / spacing + 10) / 16))

    return up(54.0), up(54.0), up(64.0)


def _crop(field: np.ndarray, start, size, flips) -> np.ndarray:
    """A (possibly flipped) crop of a periodic field, wrapping around if needed."""
    if all(o + b <= n for o, b, n in zip(start, size, field.shape, strict=True)):
        out = field[tuple(slice(o, o + b) for o, b in zip(start, size, strict=True))]
    else:  # a box larger than the bank (unusual shapes): wrap around the periodic field
        idx = np.ix_(
            *[(o + np.arange(b)) % n for o, b, n in zip(start, size, field.shape, strict=True)]
        )
        out = field[idx]
    return out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]


# --------------------------------------------------------------------------- geometry


@dataclass
class _Vertebra:
    cy: float  # centre of the nominal body box, mm
    cz: float
    phi: float  # tilt (rad): axis direction (sin phi, cos phi) in (y, z)
    height: float
    depth: float
    width: float
    loss: float
    kind: str
    disc_above: float
    disc_below: float
    k: float = 1.0  # scale of the column (1 = nominal size)

    def to_global(self, u, v):
        c, s = math.cos(self.phi), math.sin(self.phi)
        return self.cy + c * u + s * v, self.cz - s * u + c * v

    def to_local(self, y, z):
        c, s = math.cos(self.phi), math.sin(self.phi)
        dy, dz = y - self.cy, z - self.cz
        return dy * c - dz * s, dy * s + dz * c

    def endplates(self, u):
        """Superior and inferior endplate heights ``v`` at AP position ``u`` (arrays)."""
        h, d, f = self.height, self.depth, self.loss
        top = np.full_like(u, h / 2)
        bot = np.full_like(u, -h / 2)
        if self.kind == "wedge":
            top = top - f * h * np.clip(u / d + 0.5, 0.0, 1.0)
        elif self.kind == "biconcave":
            dip = (f * h / 2) * (1.0 - np.clip(2 * u / d, -1.0, 1.0) ** 2)
            top, bot = top - dip, bot + dip
        elif self.kind == "crush":
            top = top - f * h
        return top, bot

    def mean_top_loss(self) -> float:
        return {"wedge": 0.5, "crush": 1.0}.get(self.kind, 0.0) * self.loss * self.height

    def corners(self) -> np.ndarray:
        """AS, PS, PI, AI corners in (y, z) mm."""
        hd = self.depth / 2
        u = np.array([hd, -hd, -hd, hd])
        top, bot = self.endplates(u)
        v = np.array([top[0], top[1], bot[2], bot[3]])
        y, z = self.to_global(u, v)
        return np.stack([y, z], -1)

    def posterior_parts(self):
        """Posterior elements as rounded boxes in the vertebra's frame.

        Each is ``(u0, u1, v0, v1, x0, x1, roundness, cortex_mm, kind)``, mirrored in x when
        ``x0 > 0``; ``kind`` is ``"arch"`` (pedicles, articular processes, laminae, spinous
        process) or ``"process"`` (transverse processes). Lengths in mm at the nominal size
        are multiplied by the column's scale ``k``.
        """
        h, d, w, k = self.height, self.depth, self.width, self.k
        back = -d / 2
        arch = back - 0.45 * d  # behind the spinal canal (AP diameter ~15 mm)
        vp, xp, wp = 0.18 * h, 0.30 * w, 0.19 * w  # pedicle level, centre and width
        tp = back - 0.25 * d  # transverse processes
        # fmt: off
        return [
            # pedicles: from the posterior wall back across the canal
            (arch - k, back + 2.5 * k, vp - 0.26 * h, vp + 0.26 * h,
             xp - wp / 2, xp + wp / 2, 2.5, 1.5, "arch"),
            # superior articular processes, rising from the pedicles (in front of the joint)
            (arch - 3 * k, arch + 4 * k, vp - 0.1 * h, vp + 0.48 * h,
             xp - 3.5 * k, xp + 5.5 * k, 2.5, 1.0, "arch"),
            # inferior articular processes, hanging from the laminae (behind the joint)
            (arch - 9.5 * k, arch - 2 * k, vp - 0.98 * h, vp - 0.05 * h,
             xp - 4.5 * k, xp + 4.5 * k, 2.5, 1.0, "arch"),
            # laminae: the roof of the canal
            (arch - 6.5 * k, arch + 0.5 * k, vp - 0.62 * h, vp + 0.22 * h,
             -xp, xp, 4.0, 1.0, "arch"),
            # spinous process: a hatchet pointing backwards
            (arch - 27 * k, arch - 3 * k, vp - 0.72 * h, vp + 0.02 * h,
             -3.2 * k, 3.2 * k, 3.0, 1.0, "arch"),
            # transverse processes: thin, mostly cancellous, superimposed on the pedicles
            (tp - 3 * k, tp + 3 * k, vp - 3.5 * k, vp + 3.5 * k,
             xp + wp / 2 - k, w / 2 + 10 * k, 2.5, 0.6, "process"),
        ]
        # fmt: on


def _layout(rng, *, sex: str, genant_grades, deformity_types) -> list[_Vertebra]:
    """L1..L5 in a nominal frame (mm, unscaled): bodies stacked bottom-up along an arc."""
    size = (1.08 if sex == "M" else 1.0) * math.exp(rng.normal(0.0, 0.04))
    heights = _HEIGHT * size * np.exp(rng.normal(0.0, 0.02, 5))
    depths = _DEPTH * size * np.exp(rng.normal(0.0, 0.02, 5))
    widths = _WIDTH * size * np.exp(rng.normal(0.0, 0.02, 5))
    discs = _DISC * size * np.exp(rng.normal(0.0, 0.06, 6))
    # Tilt of the column's middle (L3) and the lordosis from L5 to L1 (degrees) [I].
    phi_middle = math.radians(rng.normal(2.0, 3.0))
    lordosis = math.radians(float(np.clip(rng.normal(28.0, 5.0), 15.0, 40.0)))
    arc = float(heights.sum() + discs[1:5].sum() + (discs[0] + discs[5]) / 2)
    kappa = lordosis / arc  # rad per mm of arc length
    phi_bottom = phi_middle + kappa * arc / 2

    def point(s):  # position on the arc (y, z) and tilt at arc length s from the bottom
        phi = phi_bottom - kappa * s
        y = (math.cos(phi) - math.cos(phi_bottom)) / kappa
        z = -(math.sin(phi) - math.sin(phi_bottom)) / kappa
        return y, z, phi

    vertebrae: list[_Vertebra] = [None] * 5  # type: ignore[list-item]
    s = discs[5] / 2
    for i in range(4, -1, -1):  # L5 first
        s_centre = s + heights[i] / 2
        y, z, phi = point(s_centre)
        grade = int(genant_grades[i])
        vertebrae[i] = _Vertebra(
            cy=y,
            cz=z,
            phi=phi,
            height=heights[i],
            depth=depths[i],
            width=widths[i],
            loss=GENANT_HEIGHT_LOSS[grade],
            kind=deformity_types[i] if grade else "none",
            disc_above=discs[i],
            disc_below=discs[i + 1],
        )
        s = s_centre + heights[i] / 2 - vertebrae[i].mean_top_loss() + discs[i]
    return vertebrae


def _scale_and_place(vertebrae, fov_yz, spacing) -> list[_Vertebra]:
    """Scale the column down if needed and place it in the field of view (y, z) in mm."""
    points = []
    for vb in vertebrae:
        hd = vb.depth / 2
        for u, v in (
            (hd, vb.height / 2 + vb.disc_above / 2),
            (hd, -vb.height / 2 - vb.disc_below / 2),
        ):
            points.append(vb.to_global(u, v))
        for u0, _u1, v0, v1, *_ in vb.posterior_parts()[:5]:
            points += [vb.to_global(u0, v0), vb.to_global(u0, v1)]
    pts = np.array(points)
    lo, hi = pts.min(0), pts.max(0)
    margin_post, margin_ant, margin_z = 5.0, 8.0, spacing
    room = np.array([fov_yz[0] - margin_post - margin_ant, fov_yz[1] - 2 * margin_z])
    k = float(min(1.0, *(room / (hi - lo))))
    centre_in = (lo + hi) / 2
    centre_out = np.array([margin_post + room[0] / 2, fov_yz[1] / 2])
    placed = []
    for vb in vertebrae:
        cy, cz = centre_out + k * (np.array([vb.cy, vb.cz]) - centre_in)
        placed.append(
            _Vertebra(
                cy=float(cy),
                cz=float(cz),
                phi=vb.phi,
                height=k * vb.height,
                depth=k * vb.depth,
                width=k * vb.width,
                loss=vb.loss,
                kind=vb.kind,
                disc_above=k * vb.disc_above,
                disc_below=k * vb.disc_below,
                k=k,
            )
        )
    return placed


# --------------------------------------------------------------------------- voxelisation


class _Grid:
    def __init__(self, shape, spacing):
        self.shape, self.s, self.inv = shape, spacing, 1.0 / spacing
        self.z = ((np.arange(shape[0]) + 0.5) * spacing).astype(np.float32)
        self.y = ((np.arange(shape[1]) + 0.5) * spacing).astype(np.float32)
        self.x = ((np.arange(shape[2]) + 0.5) * spacing - shape[2] * spacing / 2).astype(np.float32)

    def box(self, vb: _Vertebra, u0, u1, v0, v1, x0, x1):
        """Index slices covering a local (u, v) rectangle and an x range (1-voxel margin)."""
        y, z = vb.to_global(np.array([u0, u1, u1, u0]), np.array([v0, v0, v1, v1]))

        def span(lo, hi, n, offset=0.0):
            a = max(int(math.floor((lo - offset) * self.inv - 0.5)) - 1, 0)
            b = min(int(math.ceil((hi - offset) * self.inv - 0.5)) + 2, n)
            return slice(a, max(a, b))

        half_x = self.shape[2] * self.s / 2
        return (
            span(z.min(), z.max(), self.shape[0]),
            span(y.min(), y.max(), self.shape[1]),
            span(x0, x1, self.shape[2], -half_x),
        )

    def local(self, vb: _Vertebra, box):
        return vb.to_local(self.y[box[1]][None, :], self.z[box[0]][:, None])


def _soft(distance, inv):
    """Partial-volume occupancy from a signed distance to a surface (mm, > 0 inside)."""
    return np.clip(distance * inv + 0.5, 0.0, 1.0)


def _rounded_rect(u, v, u0, u1, v0, v1, p):
    """Approximate signed distance (mm, > 0 inside) to a superellipse inscribed in a box."""
    ru, rv = (u1 - u0) / 2, (v1 - v0) / 2
    r = (np.abs(u - (u0 + u1) / 2) / ru) ** p + (np.abs(v - (v0 + v1) / 2) / rv) ** p
    return (1.0 - r ** (1.0 / p)) * min(ru, rv)


def _half_width(vb: _Vertebra, u, scale=1.0):
    """Half width in x of the body's cross-section at AP position u (round front, flat back)."""
    a = np.clip(np.abs(u) / (vb.depth / 2), 0.0, 1.0)
    p = np.where(u > 0, 2.2, 5.0)
    return (scale * vb.width / 2) * (1.0 - a**p) ** (1.0 / p)


def _paint_disc(vol, grid: _Grid, vb: _Vertebra, v0, v1):
    hd = vb.depth / 2 * 1.02
    box = grid.box(vb, -hd, hd, v0, v1, -vb.width * 0.52, vb.width * 0.52)
    u, v = grid.local(vb, box)
    dsag = np.minimum(np.minimum(v - v0, v1 - v), hd - np.abs(u))
    d3 = np.minimum(dsag[:, :, None], _half_width(vb, u, 1.02)[:, :, None] - np.abs(grid.x[box[2]]))
    sub = vol[box]
    sub += _soft(d3, grid.inv) * (_HU_DISC - sub)


def _paint_body(vol, grid: _Grid, vb: _Vertebra, rng, *, trab_mean, cortex_hu, z_quality):
    hd = vb.depth / 2
    box = grid.box(vb, -hd, hd, -vb.height / 2, vb.height / 2, -vb.width / 2, vb.width / 2)
    u, v = grid.local(vb, box)
    top, bot = vb.endplates(u)
    # Anterior and posterior walls slightly concave (a 1 mm waist at mid-height).
    wall = hd - 0.04 * vb.depth * (1.0 - np.clip(2.0 * v / vb.height, -1.0, 1.0) ** 2)
    dsag = np.minimum(np.minimum(v - bot, top - v), wall - np.abs(u)).astype(np.float32)
    xw = _half_width(vb, u).astype(np.float32)
    d3 = np.minimum(dsag[:, :, None], xw[:, :, None] - np.abs(grid.x[box[2]]))
    alpha = _soft(d3, grid.inv)
    cortex = np.clip((_CORTEX_MM - d3) * grid.inv + 0.5, 0.0, 1.0)

    # Texture: blend the two bank levels around this patient's wavelength.
    shape = tuple(b.stop - b.start for b in box)
    bank = _texture_bank(_bank_shape(grid.s), grid.s)
    pos = float(np.interp(z_quality, _BANK_Z, np.arange(len(_BANK_Z))))
    lower = min(int(pos), len(_BANK_Z) - 2)
    frac = pos - lower
    variants = rng.integers(0, _BANK_VARIANTS, 2)
    starts = [
        int(rng.integers(0, max(n - b, 0) + 1))
        for n, b in zip(bank[0].shape[1:], shape, strict=True)
    ]
    flips = rng.random(3) < 0.5
    field = _crop(bank[lower][variants[0]], starts, shape, flips) * np.float32(
        math.cos(math.pi / 2 * frac)
    )
    field += _crop(bank[lower + 1][variants[1]], starts, shape, flips) * np.float32(
        math.sin(math.pi / 2 * frac)
    )
    beta = _sparsity(z_quality)
    trab = field
    trab *= np.float32(beta)
    trab += 1.0
    np.square(trab, out=trab)
    trab *= np.float32((trab_mean - _HU_MARROW) / (1.0 + beta**2))
    trab += _HU_MARROW
    trab += cortex * (np.float32(cortex_hu) - trab)
    sub = vol[box]
    sub += alpha * (trab - sub)


def _paint_posterior(vol, grid: _Grid, vb: _Vertebra, *, core_hu, cortex_hu):
    for u0, u1, v0, v1, x0, x1, p, shell, kind in vb.posterior_parts():
        core = core_hu if kind == "arch" else 0.5 * (core_hu + _HU_MUSCLE)
        cortex = cortex_hu if kind == "arch" else 0.6 * cortex_hu
        sides = [(x0, x1), (-x1, -x0)] if x0 > 0 else [(x0, x1)]
        for a, b in sides:
            box = grid.box(vb, u0, u1, v0, v1, a, b)
            if any(s.stop <= s.start for s in box):
                continue
            u, v = grid.local(vb, box)
            d2 = _rounded_rect(u, v, u0, u1, v0, v1, p).astype(np.float32)
            x = grid.x[box[2]]
            d3 = np.minimum(d2[:, :, None], np.minimum(x - a, b - x)[None, None, :])
            hu = np.clip((shell - d3) * grid.inv + 0.5, 0.0, 1.0)
            hu *= np.float32(cortex - core)
            hu += np.float32(core)
            sub = vol[box]
            sub += _soft(d3, grid.inv) * (hu - sub)


def _soft_tissue(grid: _Grid, vertebrae, bmi: float) -> np.ndarray:
    """(ny, nx) HU of the trunk cross-section: muscle, subcutaneous fat, air."""
    tips = [vb.to_global(vb.posterior_parts()[4][0], 0.0)[0] for vb in vertebrae]
    back = min(tips) - float(np.clip(5.0 + 0.9 * (bmi - 18.0), 3.0, 30.0))  # skin, y in mm
    half_width = float(np.clip(24.0 + 1.8 * (bmi - 18.0), 20.0, 200.0))  # lateral, mm
    fat = float(np.clip(2.0 + 0.8 * (bmi - 18.0), 1.0, 25.0))
    radius = 18.0
    y, x = grid.y[:, None], grid.x[None, :]
    qx = np.abs(x) - (half_width - radius)
    qy = (back + radius) - y
    outside = (
        np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0) - radius
    )
    depth = -outside  # mm inside the skin
    base = _HU_AIR + (_HU_FAT - _HU_AIR) * _soft(depth, grid.inv)
    base += (_HU_MUSCLE - _HU_FAT) * _soft(depth - fat, grid.inv)
    return base.astype(np.float32)


def _check_inputs(
    femoral_neck_bmd, z, genant_grades, deformity_types, bmi, sex, rng, shape, spacing
):
    for name, value in (("femoral_neck_bmd", femoral_neck_bmd), ("z", z), ("bmi", bmi)):
        if not (isinstance(value, (int, float, np.number)) and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0.1 <= femoral_neck_bmd <= 2.0:
        raise ValueError(f"femoral_neck_bmd must be in g/cm2 (0.1-2.0), got {femoral_neck_bmd!r}")
    if not 10.0 <= bmi <= 70.0:
        raise ValueError(f"bmi must be between 10 and 70 kg/m2, got {bmi!r}")
    grades = list(genant_grades)
    kinds = [str(k) for k in deformity_types]
    if len(grades) != 5 or any(g not in GENANT_HEIGHT_LOSS for g in grades):
        raise ValueError(f"genant_grades must be 5 grades in 0-3 for L1..L5, got {genant_grades!r}")
    if len(kinds) != 5 or any(k not in DEFORMITY_TYPES for k in kinds):
        raise ValueError(
            f"deformity_types must be 5 of {DEFORMITY_TYPES} for L1..L5, got {deformity_types!r}"
        )
    for name, grade, kind in zip(VERTEBRAE, grades, kinds, strict=True):
        if grade > 0 and kind == "none":
            raise ValueError(
                f"deformity_types: {name} has Genant grade {grade} but type 'none'; choose one "
                "of 'wedge', 'biconcave', 'crush'"
            )
    sex_code = str(sex).upper()[:1]
    if str(sex).lower() not in ("f", "m", "female", "male"):
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be 3 sizes (nz, ny, nx) of at least 8, got {shape!r}")
    if not (isinstance(spacing, (int, float)) and math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive voxel size in mm, got {spacing!r}")
    return [int(g) for g in grades], kinds, sex_code, shape, float(spacing)


def spine_volume(
    *,
    femoral_neck_bmd: float,
    z: float,
    genant_grades: Sequence[int],
    deformity_types: Sequence[str],
    bmi: float,
    sex: str,
    rng: np.random.Generator,
    shape: tuple[int, int, int] = (176, 96, 80),
    spacing: float = 1.0,
) -> SpineVolume:
    """Simulate a lumbar spine (L1-L5) CT volume; see the module docstring for the model.

    Parameters
    ----------
    femoral_neck_bmd : float
        Femoral-neck BMD in g/cm2 (sets the trabecular and cortical density).
    z : float
        Hidden bone quality (standard normal): sets the trabecular texture at fixed BMD.
    genant_grades : sequence of 5 int
        Genant grade (0-3) of L1..L5.
    deformity_types : sequence of 5 str
        ``"wedge"``, ``"biconcave"`` or ``"crush"`` per vertebra (ignored for grade 0, where
        ``"none"`` is also accepted).
    bmi : float
        Body-mass index (kg/m2): thickness of the soft tissue and its fat layer.
    sex : {"F", "M"}
        Men have 8% larger vertebrae.
    rng : numpy.random.Generator
        Source of all randomness (anatomy, texture crops, noise); same state, same volume.
    shape : (nz, ny, nx), default (176, 96, 80)
        Volume size in voxels.
    spacing : float, default 1.0
        Isotropic voxel size in mm. The anatomy is scaled down when it does not fit.

    Returns
    -------
    SpineVolume
        int16 HU volume, spacing and the exact body corners (mm).
    """
    grades, kinds, sex, shape, s = _check_inputs(
        femoral_neck_bmd, z, genant_grades, deformity_types, bmi, sex, rng, shape, spacing
    )
    t_score = (femoral_neck_bmd - _BMD_REF_MEAN) / _BMD_REF_SD
    nominal = _layout(rng, sex=sex, genant_grades=grades, deformity_types=kinds)
    vertebrae = _scale_and_place(nominal, (shape[1] * s, shape[0] * s), s)
    grid = _Grid(shape, s)

    trab_mean = float(np.clip(170.0 + 35.0 * t_score + rng.normal(0.0, 10.0), 40.0, 330.0))
    level_jitter = np.exp(rng.normal(0.0, 0.03, 5))
    cortex_hu = float(np.clip(700.0 + 100.0 * t_score, 350.0, 1100.0))
    z_texture = float(z) + rng.normal(0.0, _TEXTURE_Z_SD)

    vol = np.empty(shape, dtype=np.float32)
    vol[...] = _soft_tissue(grid, vertebrae, bmi)[None]
    for i, vb in enumerate(vertebrae):  # discs above each body, and below L5
        top = float(vb.endplates(np.array([0.0, -vb.depth / 2, vb.depth / 2]))[0].min())
        _paint_disc(vol, grid, vb, top - 1.0, vb.height / 2 + vb.disc_above + 3.0)
        if i == 4:
            _paint_disc(vol, grid, vb, -vb.height / 2 - vb.disc_below, -vb.height / 2 + 1.0)
    for i, vb in enumerate(vertebrae):
        _paint_body(
            vol,
            grid,
            vb,
            rng,
            trab_mean=trab_mean * level_jitter[i] * (1.0 + 0.3 * vb.loss),
            cortex_hu=cortex_hu,
            z_quality=z_texture,
        )
    for vb in vertebrae:
        _paint_posterior(vol, grid, vb, core_hu=1.3 * trab_mean, cortex_hu=cortex_hu)

    noise = _noise_bank(shape)
    shift = int(rng.integers(0, shape[0]))
    flip_y, flip_x = (-1 if f else 1 for f in rng.random(2) < 0.5)
    vol[: shape[0] - shift] += noise[shift:, ::flip_y, ::flip_x]
    vol[shape[0] - shift :] += noise[:shift, ::flip_y, ::flip_x]
    np.rint(vol, out=vol)
    corners = np.stack([vb.corners() for vb in vertebrae])
    return SpineVolume(vol.astype(np.int16), (s, s, s), corners)


def lateral_radiograph(
    spine: SpineVolume, *, size: tuple[int, int] | None = None
) -> LateralRadiograph:
    """Render the lateral radiograph of a spine volume and project its keypoints.

    Parameters
    ----------
    spine : SpineVolume
        From :func:`spine_volume`.
    size : (H, W), optional
        Resample the image (bilinear); default: one pixel per voxel, ``(nz, ny)``.

    Returns
    -------
    LateralRadiograph
        The image (line integrals), its pixel spacing and the body corners in pixels.
    """
    volume = np.asarray(spine.volume_hu)
    corners = np.asarray(spine.corners, dtype=np.float64)
    if volume.ndim != 3 or corners.shape != (5, 4, 2):
        raise ValueError(
            "spine must hold a (nz, ny, nx) volume_hu and (5, 4, 2) corners, got shapes "
            f"{volume.shape} and {corners.shape}"
        )
    image = render_drr(volume, spine.spacing, views=("lateral",), size=size)[0]
    h, w = image.shape
    nz, ny = volume.shape[0], volume.shape[1]
    pixel_spacing = (nz * spine.spacing[0] / h, ny * spine.spacing[1] / w)
    points = np.stack([corners[..., 1], corners[..., 0], np.zeros(corners.shape[:-1])], -1)
    keypoints = project_points(points, "lateral", volume.shape, spine.spacing, size=size)
    return LateralRadiograph(image.numpy(), pixel_spacing, keypoints)
