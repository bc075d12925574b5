r"""Quantitative vertebral morphometry of L1-L5: shape features from the corners and patches.

A prevalent vertebral fracture is a loss of height of a vertebral body (Genant et al.,
J Bone Miner Res 1993;8:1137-1148): anterior (wedge), middle (biconcave) or the whole body
(crush). Quantitative morphometry measures the heights and compares them within the body
and with its neighbours (McCloskey et al., Osteoporos Int 1993;3:138-147). Texture features
of a patch cut at the corners (:mod:`fracrisk.encoders.texture`) cannot see most of it: the
patch is mapped onto the corners, so the body's outline is normalised away.

For each vertebra, from its corners AS, PS, PI, AI (:mod:`fracrisk.imaging.anatomy`), with
:math:`H_a = |AS - AI|`, :math:`H_p = |PS - PI|` and the depth
:math:`D = (|AS - PS| + |AI - PI|) / 2`:

* ``ha_hp`` :math:`= H_a / H_p`, the wedge ratio;
* ``hp_neighbours`` :math:`= H_p / \bar H_p^{\,adj}`, the posterior height over the mean
  posterior height of the adjacent vertebrae (L1: L2 only; L5: L4 only), the crush ratio;
* ``height_depth`` :math:`= (H_a + H_p) / (2 D)`, the body's height over its own depth;
* ``hm_h``, the middle height over the walls' height, measured on the patch (the corners
  do not show a biconcave endplate, which dips between the walls): the patch maps the
  corners onto its frame (:mod:`fracrisk.imaging.patches`: anterior to posterior from
  left to right, superior to inferior from top to bottom), so the walls span the frame's
  height; in the central fifth of the columns the middle height is the distance between
  the endplates, the steepest rise and fall of the mean row profile.

And for the patient: the smallest of each ratio over L1-L5 (``min_*``), and ``n_deformed``,
the number of vertebrae with any of ``ha_hp``, ``hm_h``, ``hp_neighbours`` below
``threshold`` (0.80: Genant's 20% height reduction, the grade-1 boundary).

All ratios are unit-free (pixel distances over pixel distances), so the radiograph's pixel
spacing does not matter.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RATIOS", "VertebralMorphometry"]

#: Per-vertebra ratios, in column order.
RATIOS = ("ha_hp", "hm_h", "hp_neighbours", "height_depth")
_HEIGHT_RATIOS = ("ha_hp", "hm_h", "hp_neighbours")


class VertebralMorphometry:
    """Morphometric features of L1-L5 from ``(N, 5, 4, 2)`` corners and ``(N, 5, h, w)`` patches.

    Parameters
    ----------
    margin : float, default 0.15
        The patches' margin around the body (as :func:`fracrisk.imaging.vertebral_patches`).
    threshold : float, default 0.80
        Height ratio below which a vertebra counts as deformed in ``n_deformed``.

    Attributes
    ----------
    feature_names_ : list of str
        ``"<vertebra>_<ratio>"`` for L1..L5, then ``"min_<ratio>"`` and ``"n_deformed"``.
    """

    def __init__(self, *, margin: float = 0.15, threshold: float = 0.80) -> None:
        from fracrisk.imaging.anatomy import VERTEBRAE

        if not (np.isfinite(margin) and margin >= 0):
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        if not (np.isfinite(threshold) and 0 < threshold < 1):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.margin, self.threshold = float(margin), float(threshold)
        self.vertebrae = list(VERTEBRAE)
        self.feature_names_ = [
            *(f"{v}_{r}" for v in self.vertebrae for r in RATIOS),
            *(f"min_{r}" for r in RATIOS),
            "n_deformed",
        ]

    def transform(self, corners, patches) -> np.ndarray:
        """Features ``(N, n_features)`` float64, columns as :attr:`feature_names_`."""
        kp = _array(corners, "corners")
        img = _array(patches, "patches")
        if kp.ndim != 4 or kp.shape[1:] != (5, 4, 2):
            raise ValueError(f"corners must be (N, 5, 4, 2) (x, y) pixels; got {kp.shape}")
        if img.ndim != 4 or img.shape[:2] != (len(kp), 5):
            raise ValueError(
                f"patches must be (N, 5, h, w) with N = {len(kp)} (one per corner set); "
                f"got {img.shape}"
            )
        ratios = {name: value for name, value in zip(RATIOS, self._ratios(kp, img), strict=True)}
        per_vertebra = np.stack([ratios[r] for r in RATIOS], axis=-1).reshape(len(kp), -1)
        minima = np.stack([ratios[r].min(axis=1) for r in RATIOS], axis=1)
        low = np.stack([ratios[r] for r in _HEIGHT_RATIOS], axis=-1).min(axis=-1)
        deformed = (low < self.threshold).sum(axis=1, keepdims=True).astype(np.float64)
        return np.concatenate([per_vertebra, minima, deformed], axis=1)

    def _ratios(self, kp: np.ndarray, img: np.ndarray) -> tuple[np.ndarray, ...]:
        AS, PS, PI, AI = (kp[:, :, k] for k in range(4))
        h_a = np.linalg.norm(AS - AI, axis=-1)
        h_p = np.linalg.norm(PS - PI, axis=-1)
        depth = (np.linalg.norm(AS - PS, axis=-1) + np.linalg.norm(AI - PI, axis=-1)) / 2
        if (np.minimum(np.minimum(h_a, h_p), depth) <= 0).any():
            rows = sorted({int(i) for i in np.argwhere(np.minimum(h_a, h_p) <= 0)[:, 0]})
            raise ValueError(f"corners of items {rows[:5]} give a body of zero height or depth")
        neighbours = np.empty_like(h_p)
        neighbours[:, 0] = h_p[:, 1]
        neighbours[:, -1] = h_p[:, -2]
        neighbours[:, 1:-1] = (h_p[:, :-2] + h_p[:, 2:]) / 2
        return h_a / h_p, self._middle_height(img), h_p / neighbours, (h_a + h_p) / (2 * depth)

    def _middle_height(self, img: np.ndarray) -> np.ndarray:
        """``hm_h`` from the patches: the middle endplate distance over the frame's height.

        In the central columns, the mean intensity per row is the body's vertical profile;
        the superior endplate is its steepest rise in the upper half of the body frame
        (disc -> bone), the inferior endplate its steepest fall in the lower half. The
        patch maps the corners onto the frame, so the frame's height is the walls' height.
        """
        n, k, h, w = img.shape
        span = 1.0 + 2.0 * self.margin
        s = -self.margin + span * (np.arange(w) + 0.5) / w  # anterior 0 -> posterior 1
        t = -self.margin + span * (np.arange(h - 1) + 1.0) / h  # between rows i and i + 1
        middle = (s >= 0.4) & (s <= 0.6)
        if not middle.any() or h < 8:
            raise ValueError(f"patches of size {(h, w)} are too small for the morphometry bands")
        upper, lower = (t > -self.margin / 2) & (t < 0.5), (t >= 0.5) & (t < 1 + self.margin / 2)

        def height(band: np.ndarray) -> np.ndarray:
            slope = np.diff(img[:, :, :, band].mean(axis=-1), axis=-1)  # (n, k, h - 1)
            top = np.where(upper, slope, -np.inf).argmax(axis=-1)
            bottom = np.where(lower, slope, np.inf).argmin(axis=-1)
            return (bottom - top).astype(np.float64)

        return height(middle) / (h / span)

    def to_dict(self) -> dict:
        """Settings as JSON values."""
        return {"margin": self.margin, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, state: dict) -> VertebralMorphometry:
        """Rebuild from :meth:`to_dict`."""
        return cls(margin=state["margin"], threshold=state["threshold"])


def _array(values, name: str) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return array
