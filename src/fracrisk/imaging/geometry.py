r"""Projection geometries of a DRR: parallel beam and cone beam.

Both geometries put the isocentre at the centre of the CT volume and keep the image
orientation of :data:`fracrisk.imaging.VIEWS` (rows and columns of each view); they differ in
where the rays go.

* :class:`ParallelBeam`: every ray runs along the view's axis; a detector pixel is one voxel
  column, so the image has the volume's in-plane pixel size.
* :class:`ConeBeam`: rays diverge from a point source at ``source_to_isocentre`` mm in front
  of the isocentre to a flat detector at ``source_to_detector`` mm from the source,
  perpendicular to the view's axis, its centre (the principal point) on the central ray. A
  point at depth :math:`t` past the isocentre (towards the detector) and lateral offset
  :math:`\mathbf{a}` from the central ray lands on the detector at

  .. math:: \mathbf{u} = \mathbf{a}\,\frac{\mathrm{SDD}}{\mathrm{SID} + t},

  so anatomy near the source is magnified more, as on a real radiograph; at the isocentre
  the magnification is :math:`M = \mathrm{SDD}/\mathrm{SID}`.

Where the source sits for each view (the detector is opposite):

=======  ==========================================================================
view     source
=======  ==========================================================================
frontal  anterior (+y): an antero-posterior (AP) projection, as a pelvic radiograph
lateral  patient's right (-x): a left-lateral projection, left side on the detector
axial    inferior (-z): looking up from the feet
=======  ==========================================================================

A ``rotation`` turns the patient before projecting (a C-arm orbiting the other way gives the
same image). It is one angle in degrees about the long (z) axis, or three, ``(z, x, y)``:

* **z** (turn): the patient's left (+x) towards anterior (+y), as a left anterior oblique;
* **x** (tilt): anterior (+y) towards superior (+z), a cranio-caudal tilt;
* **y** (roll): superior (+z) towards the patient's left (+x).

The roll is applied first, then the tilt, then the turn: :math:`R = R_z R_x R_y`
(:func:`rotation_matrix`). :func:`fracrisk.imaging.render_drr`'s ``angles`` (augmentation) add
to the geometry's rotation, angle by angle.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["GEOMETRIES", "ConeBeam", "ParallelBeam", "resolve_geometry", "rotation_matrix"]


def _check_positive(name: str, value) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of mm, got {value!r}")
    return float(value)


def _check_rotation(value) -> tuple[float, float, float]:
    """``(z, x, y)`` degrees from one angle (about z) or three."""
    values = (value, 0.0, 0.0) if isinstance(value, (int, float)) else tuple(value)
    ok = len(values) == 3 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    if not ok:
        raise ValueError(
            f"rotation must be a finite angle in degrees (about z) or three (z, x, y), got "
            f"{value!r}"
        )
    return tuple(float(v) for v in values)


def rotation_matrix(angles_deg) -> np.ndarray:
    r"""Rotation matrices :math:`R = R_z R_x R_y` acting on ``(z, y, x)`` column vectors.

    Parameters
    ----------
    angles_deg : array-like, shape (..., 3)
        ``(z, x, y)`` angles in degrees (see the module docstring for their directions).

    Returns
    -------
    numpy.ndarray, shape (..., 3, 3)
        float64; a point ``p`` (mm from the isocentre, ``(z, y, x)``) moves to ``R @ p``.

    Examples
    --------
    >>> np.round(rotation_matrix([90.0, 0.0, 0.0]) @ [0.0, 0.0, 1.0], 6).tolist()  # left
    [0.0, 1.0, 0.0]
    """
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    (cz, cx, cy), (sz, sx, sy) = np.cos(np.moveaxis(a, -1, 0)), np.sin(np.moveaxis(a, -1, 0))
    one, zero = np.ones_like(cz), np.zeros_like(cz)

    def matrix(rows):
        return np.stack([np.stack(r, -1) for r in rows], -2)

    # Rows and columns in (z, y, x) order.
    turn = matrix([[one, zero, zero], [zero, cz, sz], [zero, -sz, cz]])  # x -> y
    tilt = matrix([[cx, sx, zero], [-sx, cx, zero], [zero, zero, one]])  # y -> z
    roll = matrix([[cy, zero, -sy], [zero, one, zero], [sy, zero, cy]])  # z -> x
    return turn @ tilt @ roll


@dataclass(frozen=True)
class ParallelBeam:
    """Parallel rays along each view's axis (the detector pixel is the voxel size).

    Parameters
    ----------
    rotation : float or (float, float, float), default 0
        Rotation of the patient before projecting, in degrees: about z, or ``(z, x, y)``;
        stored as the triple.
    """

    rotation: float | tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rotation", _check_rotation(self.rotation))

    def to_dict(self) -> dict:
        """JSON-serialisable description (a cache key, a run's config)."""
        return {"type": "parallel", "rotation": list(self.rotation)}


@dataclass(frozen=True)
class ConeBeam:
    """A point source and a flat detector, centred on the volume's centre.

    Parameters
    ----------
    source_to_detector : float, default 1020
        Source-to-detector distance (SDD) in mm.
    source_to_isocentre : float, default 850
        Source-to-isocentre distance (SID) in mm; the magnification at the isocentre is
        SDD / SID (1.2 by default, that of a pelvic or lumbar radiograph taken with the
        patient close to a detector about 1 m from the tube).
    detector_spacing : float or (float, float), optional
        Detector pixel size ``(row, col)`` in mm. By default the detector spans the volume's
        cross-section magnified to the detector plane: the native voxel size times SDD / SID,
        scaled by ``native size / size`` when :func:`~fracrisk.imaging.render_drr` is given a
        ``size``. Then the isocentre plane maps onto the image exactly as in
        :class:`ParallelBeam`.
    rotation : float or (float, float, float), default 0
        Rotation of the patient before projecting, in degrees: about z, or ``(z, x, y)``;
        stored as the triple.

    Examples
    --------
    >>> ConeBeam().magnification
    1.2
    """

    source_to_detector: float = 1020.0
    source_to_isocentre: float = 850.0
    detector_spacing: float | tuple[float, float] | None = None
    rotation: float | tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        sdd = _check_positive("source_to_detector", self.source_to_detector)
        sid = _check_positive("source_to_isocentre", self.source_to_isocentre)
        if sid >= sdd:
            raise ValueError(
                f"source_to_isocentre ({sid:g} mm) must be shorter than source_to_detector "
                f"({sdd:g} mm): the isocentre lies between the source and the detector"
            )
        spacing = self.detector_spacing
        if spacing is not None:
            pair = (spacing, spacing) if isinstance(spacing, (int, float)) else tuple(spacing)
            if len(pair) != 2:
                raise ValueError(
                    f"detector_spacing must be one or two pixel sizes (row, col) in mm, got "
                    f"{spacing!r}"
                )
            spacing = tuple(_check_positive("detector_spacing", s) for s in pair)
        object.__setattr__(self, "source_to_detector", sdd)
        object.__setattr__(self, "source_to_isocentre", sid)
        object.__setattr__(self, "detector_spacing", spacing)
        object.__setattr__(self, "rotation", _check_rotation(self.rotation))

    @property
    def magnification(self) -> float:
        """SDD / SID: how much larger than life the isocentre plane appears."""
        return self.source_to_detector / self.source_to_isocentre

    def to_dict(self) -> dict:
        """JSON-serialisable description (a cache key, a run's config)."""
        out = {"type": "cone", **asdict(self), "rotation": list(self.rotation)}
        if self.detector_spacing is not None:
            out["detector_spacing"] = list(self.detector_spacing)
        return out


#: Geometry names accepted by ``render_drr(geometry=...)`` and the defaults they stand for.
GEOMETRIES = {"parallel": ParallelBeam, "cone": ConeBeam}


def resolve_geometry(geometry) -> ParallelBeam | ConeBeam:
    """A geometry object from a name (``"parallel"``, ``"cone"``), an object or a dict.

    A dict is what :meth:`ConeBeam.to_dict` / :meth:`ParallelBeam.to_dict` wrote (a run's
    JSON config).

    Examples
    --------
    >>> resolve_geometry("cone").source_to_detector
    1020.0
    >>> resolve_geometry({"type": "cone", "source_to_isocentre": 700}).magnification
    1.457142857142857
    """
    if isinstance(geometry, (ParallelBeam, ConeBeam)):
        return geometry
    if isinstance(geometry, str) and geometry in GEOMETRIES:
        return GEOMETRIES[geometry]()
    if isinstance(geometry, dict) and geometry.get("type") in GEOMETRIES:
        fields = {k: v for k, v in geometry.items() if k != "type"}
        try:
            return GEOMETRIES[geometry["type"]](**fields)
        except TypeError as err:
            raise ValueError(f"invalid {geometry['type']} geometry {geometry!r}: {err}") from err
    raise ValueError(
        f"geometry must be 'parallel', 'cone', a ParallelBeam or ConeBeam, or a dict with a "
        f"'type' key; got {geometry!r}"
    )
