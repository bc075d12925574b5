r"""The simulator's true fracture log hazard, term by term, and what each modality can show.

:func:`fracrisk.simulate.cohort` draws the fracture hazard as a sum of named terms
(columns ``term_<name>`` of ``cohort.truth``, which add up to ``true_log_hazard``):

=========================  ================================================================
term                       what it is
=========================  ================================================================
``clinical``               baseline by sex, age (Gompertz), the FRAX clinical risk factors
                           and BMI (their published gradients)
``bmd``                    femoral-neck BMD, 1.4x per SD decrease (Johnell 2005)
``bone_quality``           the hidden quality ``z`` (microarchitecture; 1.3x per SD, as TBS)
``vertebral_deformities``  any prevalent vertebral fracture: 2x for MOF, 4x for a new
                           vertebral fracture
``hip_geometry``           hip axis length, 1.1x per SD for MOF (zero for vertebral outcomes)
``falls``                  a falls propensity, 1.9x per SD, that no input shows
=========================  ================================================================

A **modality ceiling** is the concordance of the terms a model's inputs could show
(:data:`MODALITY_TERMS`): the best a model of those inputs could rank, in the sample at
hand. The **oracle** uses every term; no model can reach it, because of the falls term.
Both are Harrell's C of the cause-specific fracture hazard (death censors), the same
definition as the models they bound.

The image-visible sets follow what the simulated images hold: a hip CT shows density
(BMD), trabecular texture (``z``) and the hip's shape; a lateral spine radiograph shows
density, texture and the vertebral deformities. Neither shows the falls propensity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "MODALITY_TERMS",
    "TERMS",
    "ceiling_log_hazard",
    "modality_ceiling",
    "oracle_c",
    "with_labels",
]

TERMS = (
    "clinical",
    "bmd",
    "bone_quality",
    "vertebral_deformities",
    "hip_geometry",
    "falls",
)

MODALITY_TERMS: dict[str, tuple[str, ...]] = {
    "clinical": ("clinical",),
    "clinical_bmd": ("clinical", "bmd"),
    "hip_ct": ("clinical", "bmd", "bone_quality", "hip_geometry"),
    "spine_xray": ("clinical", "bmd", "bone_quality", "vertebral_deformities"),
    "oracle": TERMS,
}


def _truth_of(cohort) -> pd.DataFrame:
    truth = getattr(cohort, "truth", None)
    if truth is None:
        raise ValueError("a modality ceiling needs a simulated cohort (cohort.truth is None)")
    missing = [f"term_{t}" for t in TERMS if f"term_{t}" not in truth.columns]
    if missing:
        raise ValueError(
            f"cohort.truth has no {missing}: simulate it with fracrisk.simulate.cohort, which "
            "states the true log hazard term by term"
        )
    return truth


def ceiling_log_hazard(cohort, terms: str | Sequence[str]) -> np.ndarray:
    """The sum of the named true terms (a modality name, or term names), per patient."""
    names = MODALITY_TERMS[terms] if isinstance(terms, str) else tuple(terms)
    unknown = sorted(set(names) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown term(s) {unknown}; the terms are {', '.join(TERMS)}")
    truth = _truth_of(cohort)
    return truth[[f"term_{t}" for t in names]].to_numpy(dtype=np.float64).sum(axis=1)


def modality_ceiling(cohort, modality: str) -> float:
    """Harrell's C of the true terms that ``modality`` can show, fracture vs. death-censored.

    ``modality`` is a key of :data:`MODALITY_TERMS` (``"hip_ct"``, ``"spine_xray"``,
    ``"clinical"``, ``"clinical_bmd"``, ``"oracle"``).
    """
    from fracrisk.metrics import harrell_c

    if modality not in MODALITY_TERMS:
        raise ValueError(f"unknown modality {modality!r}; choose from {', '.join(MODALITY_TERMS)}")
    score = ceiling_log_hazard(cohort, modality)
    return float(harrell_c(cohort.time, cohort.event == 1, score))


def oracle_c(cohort) -> float:
    """Harrell's C of the whole true log hazard (every term, the falls included)."""
    return modality_ceiling(cohort, "oracle")


def with_labels(cohort, columns: Sequence[str]):
    """The cohort with the truth's ``columns`` (e.g. Genant grades) joined as table columns.

    The simulator keeps what a radiologist or a DXA scan would report (``genant_L1``...,
    the true T-score) in ``cohort.truth``; a real cohort carries such labels as columns of
    its table. Use it on training patients only: prediction must read the images alone.
    Columns already in the table are left as they are.
    """
    from fracrisk.data.cohort import Cohort

    truth = cohort.truth
    if truth is None:
        raise ValueError("labels from the truth need a simulated cohort (cohort.truth is None)")
    labels = [c for c in columns if c not in cohort.df.columns]
    missing = [c for c in labels if c not in truth.columns]
    if missing:
        raise ValueError(f"{missing} are neither cohort columns nor in the simulator's truth")
    if not labels:
        return cohort
    return Cohort(
        cohort.df.join(truth[labels]),
        **cohort.roles(),  # with its missing policy
        truth=cohort.truth,
        image_root=cohort.image_root,
    )
