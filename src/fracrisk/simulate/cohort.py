r"""The ground-truth cohort simulator, with presets for the published cohorts.

It draws FRAX risk factors, BMD, a hidden bone quality, prevalent vertebral fractures, hip
geometry, fracture sites and competing death.

:func:`cohort` extends :func:`~fracrisk.simulate.clinical_cohort` with what only images
show (the latent quality ``z``, undiagnosed vertebral fractures graded by Genant, hip
geometry) and with presets that reproduce the two published systems' cohorts. Images
(``images=("hip_ct", "spine")``) are generated per patient and written under ``out_dir``
in shards as the cohort is drawn, so memory does not grow with ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fracrisk.data.cohort import Cohort
from fracrisk.imaging.anatomy import VERTEBRAE
from fracrisk.simulate.clinical import (
    _LOG_RR,
    _LOG_RR_BMD_SD,
    _LOG_RR_BMI,
    _LOG_RR_Z_SD,
    _true_risks,
    _with_outcome,
    death_log_hazard,
    draw_patients,
    follow_up,
    fracture_log_relative_hazard,
)

__all__ = ["PRESETS", "Preset", "cohort", "draw_hidden_determinants"]


@dataclass(frozen=True)
class Preset:
    """A cohort design: who enters, how long they are followed, what the outcome is.

    Attributes
    ----------
    name : str
        Preset name.
    n : int
        Default cohort size.
    age_range : (float, float)
        Ages at entry, years.
    female_fraction : float
        Share of women.
    outcome : {"mof", "vertebral"}
        Event coded 1: any major osteoporotic fracture, or an incident vertebral fracture.
    max_follow_up, entry_window, loss_rate : float
        Years from the first entry to the end of study; years over which entry is spread;
        yearly hazard of loss to follow-up.
    fracture_scale, death_scale : float
        Multipliers of the outcome's and death's baseline hazards (the cohort's setting).
    all_prior_fracture : bool
        Every patient has had a fracture (e.g. a first hip fracture) at entry.
    images : tuple of str
        The images the published system used.
    source : str
        Where the design comes from.
    """

    name: str
    n: int
    age_range: tuple[float, float]
    female_fraction: float
    outcome: str
    max_follow_up: float
    entry_window: float
    loss_rate: float
    fracture_scale: float = 1.0
    death_scale: float = 1.0
    all_prior_fracture: bool = False
    images: tuple[str, ...] = ()
    source: str = ""
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "population": Preset(
        "population",
        10000,
        (50.0, 90.0),
        0.7,
        "mof",
        max_follow_up=12.0,
        entry_window=4.0,
        loss_rate=0.02,
        fracture_scale=0.62,
        source="A FRAX-like general population aged 50-90 (Kanis 2008).",
    ),
    # Kong et al. 2022 (Endocrinol Metab 37:674): 1,595 people aged 50-75, 74.4% women, mean
    # age 60.5, mean follow-up 40.7 months, 120 incident vertebral fractures (7.5%) [V].
    "kong2022": Preset(
        "kong2022",
        1595,
        (50.0, 75.0),
        0.744,
        "vertebral",
        max_follow_up=5.4,
        entry_window=3.0,
        loss_rate=0.04,
        fracture_scale=2.47,
        images=("spine",),
        source="Kong et al. 2022, Endocrinol Metab 37:674-683",
    ),
    # Kim et al. 2024 (Radiology, doi 10.1148/radiol.230614): 1,480 patients after a first
    # hip fracture, mean age ~75, ~9% subsequent fracture in ~3.4 years [V]; mortality after
    # hip fracture 20-30% in the first year in the elderly [R].
    "kim2024": Preset(
        "kim2024",
        1480,
        (62.0, 97.0),
        0.75,
        "mof",
        max_follow_up=7.5,
        entry_window=5.0,
        loss_rate=0.02,
        fracture_scale=0.62,
        death_scale=2.5,
        all_prior_fracture=True,
        images=("hip_ct",),
        source="Kim et al. 2024, Radiology 310:e230614",
    ),
}

# Share of MOF that is a hip fracture, by age: the ratio of FRAX UK hip to MOF 10-year
# probabilities in women without risk factors, 0.2/3.5, 0.7/6, 2.3/11, 7/17 at 50-80 [V];
# a clinical vertebral fracture ~25% of MOF [I]; the rest forearm and humerus.
_HIP_SHARE_AGES = np.array([50.0, 60.0, 70.0, 80.0, 90.0])
_HIP_SHARE = np.array([0.057, 0.117, 0.209, 0.41, 0.5])
_VERTEBRAL_SHARE = 0.25


def _hip_bmd_tilt(patients: pd.DataFrame, age_at_event: np.ndarray) -> np.ndarray:
    """How much more likely a fracture is to be a hip fracture at this BMD and age.

    The BMD gradient is steeper for hip than for MOF, and steeper at younger ages: ~3.68 per
    SD at 50 to ~2.28 at 80 for hip [R], ~1.4 for MOF (Johnell 2005 [V]). The hip share of a
    fracture therefore tilts by exp(-(ln g_hip(age) - ln g_mof) * d), d the T-score's
    deviation from its age mean, normalised so the average share is kept (d ~ N(0, 0.95^2)).
    """
    g_hip = np.log(3.68) + (np.log(2.28) - np.log(3.68)) * np.clip(
        (age_at_event - 50.0) / 30.0, 0.0, 1.0
    )
    excess = g_hip - np.log(1.4)
    female = (patients["sex"] == "F").to_numpy()
    age = patients["age"].to_numpy()
    mean_t = -0.6 - 0.05 * (age - 55) + 0.5 * ~female - 0.4 * patients["prior_fracture"].to_numpy()
    deviation = patients["true_t_score"].to_numpy() - mean_t
    return np.exp(-excess * deviation - excess**2 * 0.95**2 / 2)


def draw_hidden_determinants(patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Prevalent vertebral fractures (Genant grade and type per L1-L5) and hip geometry.

    Per vertebra, the chance of a prevalent fracture rises with age and with low BMD and
    bone quality (prevalence ~10% at 50-60 to ~35% at 80 [R]); grades 1/2/3 with
    probabilities 0.5/0.35/0.15 and types wedge/biconcave/crush 0.6/0.3/0.1 [I]. Most are
    not clinically known [V]: a third set the clinical prior-fracture flag [I].
    Hip axis length ~ N(104, 6) mm in women, N(118, 7) in men; neck-shaft angle
    ~ N(129, 5) degrees [R]. A propensity to fall, ~N(0, 1), visible neither in FRAX's inputs
    nor in the images (falls history raises fracture risk ~2x [I]): it keeps a
    FRAX-variable model's C-index in the range seen in real cohorts.
    """
    n = len(patients)
    age = patients["age"].to_numpy()
    deviation = patients["true_t_score"].to_numpy() + 1.0
    logit = -4.1 + 0.055 * (age - 65) - 0.45 * deviation - 0.3 * patients["z"].to_numpy()
    p_each = 1 / (1 + np.exp(-logit))
    fractured = rng.random((n, len(VERTEBRAE))) < p_each[:, None]
    grade = np.where(fractured, rng.choice([1, 2, 3], size=fractured.shape, p=[0.5, 0.35, 0.15]), 0)
    kind = np.where(
        fractured,
        rng.choice(["wedge", "biconcave", "crush"], size=fractured.shape, p=[0.6, 0.3, 0.1]),
        "none",
    )
    male = (patients["sex"] == "M").to_numpy()
    hidden = pd.DataFrame(
        {
            "hip_axis_length": np.where(male, rng.normal(118, 7, n), rng.normal(104, 6, n)),
            "neck_shaft_angle": rng.normal(129, 5, n),
            "falls_propensity": rng.normal(0.0, 1.0, n),
        }
    )
    for k, name in enumerate(VERTEBRAE):
        hidden[f"genant_{name}"] = grade[:, k]
        hidden[f"deformity_{name}"] = kind[:, k]
    hidden["n_prevalent_vertebral"] = fractured.sum(axis=1)
    hidden["known_vertebral"] = (fractured.any(axis=1) & (rng.random(n) < 1 / 3)).astype(int)
    return hidden


def _log_hazard_terms(
    patients: pd.DataFrame, hidden: pd.DataFrame, baseline: np.ndarray, design: Preset
) -> pd.DataFrame:
    """The fracture log hazard's named terms (:mod:`fracrisk.simulate.truth`), per patient.

    ``baseline`` is the log baseline hazard at entry (sex, age); it joins the clinical term.
    """
    female = (patients["sex"] == "F").to_numpy()
    clinical = baseline + _LOG_RR_BMI * (patients["bmi"].to_numpy() - 27.3)
    for name, coef in _LOG_RR.items():
        clinical = clinical + coef * patients[name].to_numpy()
    any_vertebral = (hidden["n_prevalent_vertebral"] > 0).to_numpy()
    vertebral = np.log(4.0 if design.outcome == "vertebral" else 2.0) * any_vertebral
    hal_sd = (hidden["hip_axis_length"] - np.where(female, 104, 118)).to_numpy() / np.where(
        female, 6, 7
    )
    geometry = np.zeros(len(patients)) if design.outcome == "vertebral" else np.log(1.1) * hal_sd
    return pd.DataFrame(
        {
            "term_clinical": clinical,
            "term_bmd": -_LOG_RR_BMD_SD * (patients["true_t_score"].to_numpy() + 1.5),
            "term_bone_quality": -_LOG_RR_Z_SD * patients["z"].to_numpy(),
            "term_vertebral_deformities": vertebral,
            "term_hip_geometry": geometry,
            "term_falls": np.log(1.9) * hidden["falls_propensity"].to_numpy(),
        }
    )


def cohort(
    n: int | None = None,
    *,
    preset: str = "population",
    seed: int = 0,
    images: tuple[str, ...] | list[str] = (),
    out_dir=None,
    image_shape: tuple[int, int, int] | None = None,
    ct_format: str = "nii.gz",
    workers: int | None = None,
    progress: bool = False,
) -> Cohort:
    """Simulate a cohort with known truth, optionally with images written to ``out_dir``.

    Parameters
    ----------
    n : int, optional
        Number of patients; default: the preset's size.
    preset : {"population", "kong2022", "kim2024"}, default "population"
        The design (see :data:`PRESETS`).
    seed : int, default 0
        The same seed gives bit-identical output.
    images : sequence of {"hip_ct", "spine"}, default ()
        Images to generate (needs ``out_dir``): a hip CT volume (NIfTI) and a lumbar-spine
        volume with its lateral radiograph and 20 corner keypoints.
    out_dir : path-like, optional
        Where images go, in shards of 1,000 patients; the table gets path columns.
    image_shape : (int, int, int), optional
        Hip CT shape in voxels (1 mm); default the generator's.
    ct_format : {"nii.gz", "nii", "dicom"}, default "nii.gz"
        Hip CT files: compressed or plain NIfTI, or a DICOM series (a directory of slices).
    workers : int, optional
        Processes making images (default 1). More than one spawns processes, so call from
        a script with an ``if __name__ == "__main__"`` guard; the images do not depend on
        it.
    progress : bool, default False
        Progress bar over patients while writing images.

    Returns
    -------
    Cohort
        ``df``: canonical clinical columns, ``patient_id``, ``entry_date``, ``time``
        (years), ``event`` (0 censored, 1 the preset's outcome, 2 death),
        ``fracture_site`` (hip/vertebral/other for MOF events), image path columns.
        ``truth``: ``true_log_hazard``, ``risk_2y/5y/10y`` (outcome with death competing),
        ``z``, ``true_t_score``, the Genant grades and types, hip geometry, and the true
        log hazard term by term, ``term_clinical``, ``term_bmd``, ``term_bone_quality``,
        ``term_vertebral_deformities``, ``term_hip_geometry``, ``term_falls``, which add up
        to ``true_log_hazard`` (:mod:`fracrisk.simulate.truth`).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    design = PRESETS[preset]
    n = design.n if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    images = tuple(images)
    unknown = set(images) - {"hip_ct", "spine"}
    if unknown:
        raise ValueError(f"unknown image kind(s) {sorted(unknown)}; choose from hip_ct, spine")
    if images and out_dir is None:
        raise ValueError("images need out_dir= (they are written to disk as they are drawn)")
    rng = np.random.default_rng(seed)
    patients = draw_patients(
        n, rng, female_fraction=design.female_fraction, age_range=design.age_range
    )
    hidden = draw_hidden_determinants(patients, rng)
    if design.all_prior_fracture:
        patients["prior_fracture"] = 1
    else:
        patients["prior_fracture"] = np.maximum(
            patients["prior_fracture"], hidden["known_vertebral"]
        )
    female = (patients["sex"] == "F").to_numpy()
    age = patients["age"].to_numpy()
    any_vertebral = (hidden["n_prevalent_vertebral"] > 0).to_numpy()
    hal_sd = (hidden["hip_axis_length"] - np.where(female, 104, 118)).to_numpy() / np.where(
        female, 6, 7
    )

    # Outcome hazard: Gompertz in attained age times the published gradients of risk; a
    # prevalent vertebral fracture ~2x for MOF and ~4x for a new vertebral fracture [R];
    # a long hip axis ~1.1x per SD for MOF (through hip fractures) [I]; falls ~1.9x per SD [I].
    b_f = np.where(female, 0.038, 0.030)
    log_rr = (
        fracture_log_relative_hazard(patients, "frax")
        + np.log(1.9) * hidden["falls_propensity"].to_numpy()
    )
    if design.outcome == "vertebral":
        log_rr = log_rr + np.log(4.0) * any_vertebral
        base = np.where(female, 0.0060, 0.0035)
    else:
        log_rr = log_rr + np.log(2.0) * any_vertebral + np.log(1.1) * hal_sd
        base = np.where(female, 0.0085, 0.0052)
    log_h_f = np.log(base * design.fracture_scale) + b_f * (age - 65) + log_rr
    terms = _log_hazard_terms(
        patients, hidden, np.log(base * design.fracture_scale) + b_f * (age - 65), design
    )
    log_h_d, b_d = death_log_hazard(patients, design.death_scale)
    h_f, h_d = np.exp(log_h_f), np.exp(log_h_d)
    time, event, entry = follow_up(
        rng,
        h_f,
        b_f,
        h_d,
        b_d,
        max_follow_up=design.max_follow_up,
        entry_window=design.entry_window,
        loss_rate=design.loss_rate,
    )
    site = np.full(n, "", dtype=object)
    if design.outcome == "vertebral":
        site[event == 1] = "vertebral"
    else:
        age_at_event = age + time
        hip = np.interp(age_at_event, _HIP_SHARE_AGES, _HIP_SHARE) * _hip_bmd_tilt(
            patients, age_at_event
        )
        hip = np.clip(hip, 0.0, 1.0 - _VERTEBRAL_SHARE)
        u = rng.random(n)
        site = np.where(u < hip, "hip", np.where(u < hip + _VERTEBRAL_SHARE, "vertebral", "other"))
        site = np.where(event == 1, site, "").astype(object)

    clinical = _with_outcome(patients.drop(columns=["true_t_score", "z"]), time, event, entry)
    clinical["fracture_site"] = site
    risks = _true_risks(h_f, b_f, h_d, b_d, [2.0, 5.0, 10.0])
    truth = pd.concat(
        [
            pd.DataFrame(
                {
                    "true_log_hazard": log_h_f,
                    "risk_2y": risks[:, 0],
                    "risk_5y": risks[:, 1],
                    "risk_10y": risks[:, 2],
                    "z": patients["z"].to_numpy(),
                    "true_t_score": patients["true_t_score"].to_numpy(),
                }
            ),
            hidden,
            terms,
        ],
        axis=1,
    )
    image_cols: tuple[str, ...] = ()
    if images:
        from fracrisk.simulate._images import write_images

        paths = write_images(
            clinical,
            truth,
            images,
            out_dir,
            seed=seed,
            shape=image_shape,
            progress=progress,
            ct_format=ct_format,
            workers=workers,
        )
        for column, values in paths.items():
            clinical[column] = values
        image_cols = tuple(c for c in paths if c.endswith("_path"))
    return Cohort(
        clinical,
        truth=truth,
        image_cols=image_cols,
        source=f"simulate.cohort(n={n}, preset={preset!r}, seed={seed})",
    )
