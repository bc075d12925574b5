r"""A clinical-only ground-truth cohort with death as a competing event.

It holds FRAX risk factors, BMD, a hidden bone quality, fracture and death.

Figures come from ``shared/reference/epidemiology.md`` (sources cited inline). This is the
simple generator behind the first demo and the estimator tests; the full simulator with
physically generated images builds on :func:`draw_patients` and the hazards here.

Model (times in years, age in years at baseline :math:`a_0`, attained age :math:`a_0 + t`):

* fracture (MOF) hazard :math:`h_F(t) = h_{F,65} \exp(b_F (a_0 + t - 65) + \ell_F(x, z))`,
  Gompertz in attained age with log relative hazard :math:`\ell_F` from the published
  gradients of risk (``effects="frax"``) or a non-linear variant (``effects="nonlinear"``);
* death hazard :math:`h_D(t) = h_{D,50} \exp(b_D (a_0 + t - 50) + \ell_D(x, z))`;
* censoring by administrative end of study (staggered entry) and by loss to follow-up;
* times recorded in whole days (so there are ties), reported in years.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fracrisk.data.cohort import Cohort

__all__ = [
    "clinical_cohort",
    "death_log_hazard",
    "draw_patients",
    "follow_up",
    "fracture_log_relative_hazard",
]

_DAYS_PER_YEAR = 365.25
_EFFECTS = ("frax", "nonlinear")

# NHANES III white women 20-29, femoral neck: mean 0.858, SD 0.120 g/cm2 (Looker 1997) [R].
_BMD_REF_MEAN, _BMD_REF_SD = 0.858, 0.120
# Prevalences, Manitoba BMD registry (Leslie et al.) [V]; alcohol raised from 0.4% to 2% so
# that the flag is not constant in small simulated cohorts [I].
_PREVALENCE = {
    "parental_hip_fracture": 0.075,
    "current_smoking": 0.092,
    "glucocorticoids": 0.058,
    "rheumatoid_arthritis": 0.029,
    "secondary_osteoporosis": 0.146,
    "alcohol_3_or_more_units": 0.02,
}
# MOF relative risks: prior fracture 1.83 (Kanis 2023 update), parental 1.54 (Kanis 2004),
# smoking 1.29 (Kanis 2005), glucocorticoids ~2.0 (Kanis 2004, BMD-adjusted, mid-age),
# RA 1.56 (Kanis 2007), alcohol 1.38 (Kanis 2005), BMI 0.99/unit after BMD (De Laet 2005),
# BMD 1.4 per SD decrease (Johnell 2005), hidden quality 1.3 per SD (TBS/MrOS) [V/R].
_LOG_RR = {
    "prior_fracture": np.log(1.83),
    "parental_hip_fracture": np.log(1.54),
    "current_smoking": np.log(1.29),
    "glucocorticoids": np.log(2.0),
    "rheumatoid_arthritis": np.log(1.56),
    "secondary_osteoporosis": np.log(1.1),
    "alcohol_3_or_more_units": np.log(1.38),
}
_LOG_RR_BMI = np.log(0.99)
_LOG_RR_BMD_SD = np.log(1.4)
_LOG_RR_Z_SD = np.log(1.3)


def draw_patients(
    n: int,
    rng: np.random.Generator,
    *,
    female_fraction: float = 0.7,
    age_range: tuple[float, float] = (50.0, 90.0),
) -> pd.DataFrame:
    """Draw FRAX inputs, true BMD and the hidden bone quality ``z`` for ``n`` patients.

    Returns a DataFrame with the canonical clinical columns plus ``true_t_score`` and ``z``
    (hidden: never put in the clinical table).
    """
    lo, hi = age_range
    age = lo + (hi - lo) * rng.beta(1.3, 2.2, n)  # more patients in their 50s-60s than 80s
    female = rng.random(n) < female_fraction
    bmi = np.clip(rng.normal(27.3, 4.8, n), 15.0, 50.0)
    # Prior fracture more common with age (18.4% overall in Manitoba [V]).
    prior = rng.random(n) < 1 / (1 + np.exp(-(-1.55 + 0.04 * (age - 64))))
    # Mean femoral-neck T-score ~ -0.6/-1.1/-1.6/-2.1 in women's 50s..80s, men 0.5 higher,
    # SD ~1 [R/I]; lower with prior fracture (-1.7 vs -1.3 in Manitoba [V]), higher with BMI.
    t_mean = -0.6 - 0.05 * (age - 55) + 0.5 * ~female - 0.4 * prior + 0.05 * (bmi - 27.3)
    true_t = t_mean + rng.normal(0.0, 0.95, n)
    # Hidden bone quality (microarchitecture, cortical thickness): correlation ~0.4 with BMD.
    rho = 0.4
    z = rho * (true_t - t_mean) / 0.95 + np.sqrt(1 - rho**2) * rng.normal(size=n)
    # DXA precision error ~0.015 g/cm2 (1.5-2% CV) [I]; kept within FRAX's T-score range
    # [-5, +3] (FRAX rejects values outside it).
    bmd = np.clip(
        _BMD_REF_MEAN + _BMD_REF_SD * true_t + rng.normal(0.0, 0.015, n),
        _BMD_REF_MEAN - 4.99 * _BMD_REF_SD,
        _BMD_REF_MEAN + 2.99 * _BMD_REF_SD,
    )
    df = pd.DataFrame(
        {
            "age": np.round(age, 1),
            "sex": np.where(female, "F", "M"),
            "bmi": np.round(bmi, 1),
            "prior_fracture": prior.astype(np.int64),
        }
    )
    for name, p in _PREVALENCE.items():
        df[name] = (rng.random(n) < p).astype(np.int64)
    df["femoral_neck_bmd"] = np.round(bmd, 3)
    df["femoral_neck_t_score"] = np.round((df["femoral_neck_bmd"] - _BMD_REF_MEAN) / _BMD_REF_SD, 2)
    df["true_t_score"] = true_t
    df["z"] = z
    return df


def fracture_log_relative_hazard(patients: pd.DataFrame, effects: str = "frax") -> np.ndarray:
    r"""Log relative fracture hazard :math:`\ell_F(x, z)` (without the age term).

    ``"frax"``: log-linear in the published gradients of risk. ``"nonlinear"``: the same
    factors, but BMD acts through a threshold (flat above T = -1, steep below) whose
    gradient is steeper at younger ages (as for hip, Johnell 2005), and BMI is U-shaped.
    """
    if effects not in _EFFECTS:
        raise ValueError(f"effects must be one of {_EFFECTS}, got {effects!r}")
    lin = sum(coef * patients[name].to_numpy() for name, coef in _LOG_RR.items())
    lin = lin - _LOG_RR_Z_SD * patients["z"].to_numpy()
    t = patients["true_t_score"].to_numpy()
    bmi = patients["bmi"].to_numpy()
    age = patients["age"].to_numpy()
    if effects == "frax":
        return lin - _LOG_RR_BMD_SD * (t + 1.5) + _LOG_RR_BMI * (bmi - 27.3)
    deficit = np.clip(-1.0 - t, 0.0, 3.0)  # T-score below -1, saturating at -4
    steepness = 0.9 * (1.0 + 0.5 * (70.0 - age) / 20.0)
    u_bmi = 0.015 * (bmi - 26.0) ** 2 - 0.3
    return lin + steepness * deficit - 0.7 + u_bmi


def _gompertz_time(rng, scale, slope, n):
    """Draw T with hazard scale * exp(slope * t) by inverting the cumulative hazard."""
    return np.log1p(slope * rng.exponential(size=n) / scale) / slope


def _gompertz_cumhaz(scale, slope, t):
    return scale * np.expm1(slope * t) / slope


def _true_risks(h_f, b_f, h_d, b_d, horizons, steps: int = 400, chunk: int = 20000) -> np.ndarray:
    r"""Cumulative incidence of fracture with competing death at ``horizons``, shape (n, k).

    :math:`F(\tau) = \int_0^\tau h_F(u) \exp(-H_F(u) - H_D(u))\,du` by the trapezoid rule
    on ``steps`` intervals (error far below 1e-4 for these smooth integrands).
    """
    horizons = np.asarray(horizons, dtype=np.float64)
    grid = np.linspace(0.0, horizons.max(), steps + 1)
    out = np.empty((len(h_f), len(horizons)))
    for start in range(0, len(h_f), chunk):
        part = slice(start, start + chunk)
        f, bf = h_f[part, None], b_f[part, None]
        d, bd = h_d[part, None], b_d[part, None]
        dens = (
            f
            * np.exp(bf * grid)
            * np.exp(-_gompertz_cumhaz(f, bf, grid) - _gompertz_cumhaz(d, bd, grid))
        )
        cif = np.concatenate(
            [
                np.zeros((dens.shape[0], 1)),
                np.cumsum((dens[:, 1:] + dens[:, :-1]) / 2 * np.diff(grid), 1),
            ],
            1,
        )
        for k, horizon in enumerate(horizons):
            out[part, k] = (
                np.array([np.interp(horizon, grid, row) for row in cif])
                if horizon not in grid
                else cif[:, int(np.flatnonzero(grid == horizon)[0])]
            )
    return out


def death_log_hazard(patients: pd.DataFrame, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Log death hazard at baseline and its Gompertz slope per year of attained age.

    Gompertz h50 0.003 (women) / 0.005 (men), slope 0.09 / 0.085 [I], times ``scale``;
    smoking (1.8x), glucocorticoids (1.5x) and poor bone quality (TBS: HR 1.20 per SD for
    death [V]) raise it.
    """
    female = (patients["sex"] == "F").to_numpy()
    b_d = np.where(female, 0.09, 0.085)
    log_h_d = (
        np.log(np.where(female, 0.003, 0.005) * scale)
        + b_d * (patients["age"].to_numpy() - 50)
        + np.log(1.8) * patients["current_smoking"].to_numpy()
        + np.log(1.5) * patients["glucocorticoids"].to_numpy()
        - np.log(1.2) * patients["z"].to_numpy()
    )
    return log_h_d, b_d


def follow_up(
    rng: np.random.Generator,
    h_f,
    b_f,
    h_d,
    b_d,
    *,
    max_follow_up: float,
    entry_window: float,
    loss_rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw event times (Gompertz fracture and death), staggered entry and censoring.

    Entry is uniform over ``entry_window`` years; administrative censoring at
    ``max_follow_up`` years after the first entry; loss to follow-up at rate ``loss_rate``
    per year. Times are recorded in whole days (so there are ties) and returned in years.
    Returns ``(time, event, entry)`` with event 0 censored, 1 fracture, 2 death.
    """
    n = len(h_f)
    t_fracture = _gompertz_time(rng, h_f, b_f, n)
    t_death = _gompertz_time(rng, h_d, b_d, n)
    entry = rng.uniform(0.0, entry_window, n)
    t_admin = max_follow_up - entry
    t_lost = rng.exponential(1.0 / loss_rate, n) if loss_rate > 0 else np.full(n, np.inf)
    times = np.stack([t_admin, t_fracture, t_death, t_lost], 1)
    first = times.argmin(1)
    event = np.select([first == 1, first == 2], [1, 2], 0)
    days = np.maximum(np.ceil(times.min(1) * _DAYS_PER_YEAR), 1.0)
    return days / _DAYS_PER_YEAR, event, entry


def _with_outcome(clinical: pd.DataFrame, time, event, entry) -> pd.DataFrame:
    """Add patient ids, entry dates and the outcome columns to a clinical table."""
    n = len(clinical)
    clinical.insert(0, "patient_id", [f"P{i:06d}" for i in range(n)])
    clinical.insert(
        1,
        "entry_date",
        pd.Timestamp("2010-01-01") + pd.to_timedelta(np.floor(entry * _DAYS_PER_YEAR), unit="D"),
    )
    clinical["time"] = time
    clinical["event"] = event
    return clinical


def clinical_cohort(
    n: int = 5000,
    *,
    seed: int = 0,
    effects: str = "frax",
    female_fraction: float = 0.7,
    max_follow_up: float = 10.0,
    loss_rate: float = 0.03,
) -> Cohort:
    """Simulate a clinical fracture cohort with known truth.

    Parameters
    ----------
    n : int, default 5000
        Number of patients.
    seed : int, default 0
        Random seed; the same seed gives identical output.
    effects : {"frax", "nonlinear"}, default "frax"
        Shape of the covariate effects on fracture (see
        :func:`fracture_log_relative_hazard`).
    female_fraction : float, default 0.7
        Share of women.
    max_follow_up : float, default 10.0
        Years from the first entry to the end of study; entry is staggered uniformly over
        the first half, so administrative follow-up is between half and all of it.
    loss_rate : float, default 0.03
        Yearly hazard of loss to follow-up.

    Returns
    -------
    Cohort
        Clinical table (canonical columns, ``patient_id``, ``entry_date``, ``time`` in years,
        ``event`` 0/1/2) and ``truth`` with ``true_log_hazard`` (fracture, at baseline),
        ``risk_2y``/``risk_5y``/``risk_10y`` (fracture with competing death), ``z`` and
        ``true_t_score``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    rng = np.random.default_rng(seed)
    patients = draw_patients(n, rng, female_fraction=female_fraction)
    female = (patients["sex"] == "F").to_numpy()
    age = patients["age"].to_numpy()

    # Fracture: FRAX UK implies MOF hazard ~3.6/1,000 at 50 rising to ~19/1,000 at 80 in
    # women [I]; part of the rise comes through falling BMD, so the age slope is smaller.
    b_f = np.where(female, 0.038, 0.030)
    log_h_f = (
        np.log(np.where(female, 0.0085, 0.0052))
        + b_f * (age - 65)
        + fracture_log_relative_hazard(patients, effects)
    )
    log_h_d, b_d = death_log_hazard(patients)
    h_f, h_d = np.exp(log_h_f), np.exp(log_h_d)

    time, event, entry = follow_up(
        rng,
        h_f,
        b_f,
        h_d,
        b_d,
        max_follow_up=max_follow_up,
        entry_window=max_follow_up / 2,
        loss_rate=loss_rate,
    )
    clinical = patients.drop(columns=["true_t_score", "z"])
    clinical = _with_outcome(clinical, time, event, entry)
    risks = _true_risks(h_f, b_f, h_d, b_d, [2.0, 5.0, 10.0])
    truth = pd.DataFrame(
        {
            "true_log_hazard": log_h_f,
            "risk_2y": risks[:, 0],
            "risk_5y": risks[:, 1],
            "risk_10y": risks[:, 2],
            "z": patients["z"].to_numpy(),
            "true_t_score": patients["true_t_score"].to_numpy(),
        }
    )
    return Cohort(clinical, truth=truth, source=f"clinical_cohort(n={n}, seed={seed})")
