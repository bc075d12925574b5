"""Simulated lateral radiographs with exact corners: the keypoint detector's training set.

The detector (:mod:`fracrisk.imaging.keypoints`) knows nothing of the simulator; this
module makes the images it is trained on (``fracrisk train-keypoints``) and the held-out
radiographs its accuracy is checked on.
"""

from __future__ import annotations

import numpy as np
import torch

from fracrisk.imaging.anatomy import N_KEYPOINTS, VERTEBRAE
from fracrisk.imaging.keypoints import normalise_radiographs
from fracrisk.simulate.clinical import _BMD_REF_MEAN, _BMD_REF_SD
from fracrisk.simulate.spine import (
    DEFORMITY_TYPES,
    LateralRadiograph,
    lateral_radiograph,
    spine_volume,
)

__all__ = ["simulate_training_set", "training_radiograph"]

#: Salt of the radiographs' random streams, so they differ from the cohort simulator's.
_STREAM = 0x6B70
#: Deformities a fractured body may have (uniformly): every Genant type but "none".
_FRACTURE_TYPES = tuple(k for k in DEFORMITY_TYPES if k != "none")


def _check_count(name: str, value, *, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    if value < low:
        kind = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)


def training_radiograph(seed: int, index: int) -> LateralRadiograph:
    """Radiograph ``index`` of the training set of ``seed``: a random simulated patient.

    The patient is drawn as :func:`simulate_training_set` describes, from its own random
    stream ``(seed, index)``, so any radiograph of a set can be made alone.

    Parameters
    ----------
    seed : int
        Seed of the set (non-negative).
    index : int
        Position in the set (non-negative).

    Returns
    -------
    LateralRadiograph
        Raw image (line integrals), its exact corners ``(5, 4, 2)`` and pixel spacing
        (1 mm).
    """
    seed = _check_count("seed", seed, low=0)
    index = _check_count("index", index, low=0)
    rng = np.random.default_rng([seed, index, _STREAM])
    n_levels = len(VERTEBRAE)
    grades = np.where(rng.random(n_levels) < 0.55, 0, rng.integers(1, 4, n_levels))
    kinds = rng.choice(list(_FRACTURE_TYPES), n_levels)
    t_score = float(np.clip(rng.normal(-1.5, 1.3), -4.5, 2.0))
    spine = spine_volume(
        femoral_neck_bmd=float(max(_BMD_REF_MEAN + _BMD_REF_SD * t_score, 0.3)),
        z=float(rng.normal()),
        genant_grades=[int(g) for g in grades],
        deformity_types=[str(k) if g else "none" for g, k in zip(grades, kinds, strict=True)],
        bmi=float(np.clip(rng.normal(27.0, 4.5), 17.0, 45.0)),
        sex="M" if rng.random() < 0.3 else "F",
        rng=rng,
    )
    return lateral_radiograph(spine)


def simulate_training_set(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated lateral radiographs with their exact corners, for training or testing.

    Each image is a random patient: femoral-neck T-score ~ N(-1.5, 1.3), bone quality
    ``z`` ~ N(0, 1), BMI ~ N(27, 4.5), 30% men, and each of L1..L5 fractured with
    probability 0.45 (Genant grade 1-3, uniformly a wedge, biconcave or crush deformity).
    Image ``i`` of seed ``s`` is drawn from its own random stream ``(s, i)``
    (:func:`training_radiograph`): the first ``n`` images of a seed do not depend on
    ``n``, and different seeds give different images.

    Parameters
    ----------
    n : int
        Number of radiographs.
    seed : int, default 0
        Seed of the set.

    Returns
    -------
    images : torch.Tensor
        float32 ``(n, 1, H, W)``, normalised
        (:func:`fracrisk.imaging.keypoints.normalise_radiographs`, as the detector expects).
    keypoints : torch.Tensor
        float32 ``(n, 20, 2)``: ``(x = col, y = row)`` pixels, L1..L5 x (AS, PS, PI, AI).
        The pixel spacing is 1 mm.
    """
    n = _check_count("n", n, low=1)
    seed = _check_count("seed", seed, low=0)
    images, points = [], []
    for i in range(n):
        radiograph = training_radiograph(seed, i)
        images.append(radiograph.image)
        points.append(radiograph.keypoints.reshape(N_KEYPOINTS, 2))
    x = normalise_radiographs(torch.from_numpy(np.stack(images))[:, None])
    return x, torch.from_numpy(np.stack(points)).float()
