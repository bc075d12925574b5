"""Published gradients of risk and population rates behind the FRAX-style baselines.

Every number is cited. [V] read in the published source, [R] a published figure quoted
from a secondary source, [I] an inference (see ``shared/reference/epidemiology.md``);
[fit] a parameter calibrated to the published UK FRAX rows by
``scripts/calibrate_frax_uk.py`` (its output is ``data/frax_uk.json``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MORTALITY_GOMPERTZ",
    "NO_BMD_LOG_RR",
    "T_SCORE_MEAN",
    "WITH_BMD_LOG_RR",
    "bmd_log_gradient",
    "log_rr_glucocorticoids",
]

#: Gompertz mortality h(a) = h50 * exp(b (a - 50)) by sex [I].
MORTALITY_GOMPERTZ = {"F": (0.003, 0.09), "M": (0.005, 0.085)}

#: Mean femoral-neck T-score by age: ~ -0.6/-1.1/-1.6/-2.1 in women's 50s..80s, men 0.5
#: higher, SD ~1 [R/I].
T_SCORE_MEAN = {"F": (-0.6, -0.05), "M": (-0.1, -0.05)}  # (value at 55, slope per year)

_ln = np.log

#: Log relative risks without BMD, per outcome. Prior fracture is age-dependent for both
#: outcomes ([V] Kanis 2004 Bone 35:375: the RR for hip "decreased significantly with age");
#: its (log RR at 65, slope per year) are [fit] and live in data/frax_uk.json.
NO_BMD_LOG_RR = {
    "mof": {
        "parental_hip_fracture": _ln(1.54),  # Kanis 2004 Bone 35:1029 [R]
        "current_smoking": _ln(1.29),  # Kanis 2005 OI 16:155 [V]
        "rheumatoid_arthritis": _ln(1.56),  # Kanis 2007 [R]
        "secondary_osteoporosis": _ln(1.56),  # FRAX: weighted as RA [R]
        "alcohol_3_or_more_units": _ln(1.38),  # Kanis 2005 OI 16:737 [V]
        "bmi_per_unit": _ln(0.97),
    },  # De Laet 2005 OI 16:1330 [V]
    "hip": {
        "parental_hip_fracture": _ln(2.27),
        "current_smoking": _ln(1.84),
        "rheumatoid_arthritis": _ln(1.95),
        "secondary_osteoporosis": _ln(1.95),
        "alcohol_3_or_more_units": _ln(1.68),
        "bmi_per_unit": _ln(0.93),
    },
}

#: With BMD: BMI nearly drops out, smoking's hip RR falls to 1.60, secondary osteoporosis no
#: longer counts (FRAX tool page [V]); others as without BMD.
WITH_BMD_LOG_RR = {
    "mof": {
        **NO_BMD_LOG_RR["mof"],
        "secondary_osteoporosis": 0.0,
        "bmi_per_unit": _ln(1.0),
    },  # De Laet 2005 [V]
    "hip": {
        **NO_BMD_LOG_RR["hip"],
        "secondary_osteoporosis": 0.0,
        "current_smoking": _ln(1.60),  # Kanis 2005 [V]
        "bmi_per_unit": _ln(0.98),
    },  # De Laet 2005 [V]
}


def log_rr_glucocorticoids(outcome: str, age: np.ndarray) -> np.ndarray:
    """Glucocorticoids: log RR interpolated in age, between 50 and 85 years.

    Osteoporotic fracture 2.63 at 50 to 1.71 at 85, hip 4.42 to 2.48 (Kanis 2004 JBMR
    19:893, BMD-adjusted [V]).
    """
    lo, hi = {"mof": (2.63, 1.71), "hip": (4.42, 2.48)}[outcome]
    frac = np.clip((np.asarray(age, dtype=np.float64) - 50.0) / 35.0, 0.0, 1.0)
    return np.log(lo) + frac * (np.log(hi) - np.log(lo))


def bmd_log_gradient(outcome: str, age: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Log RR per SD decrease of femoral-neck BMD (Johnell 2005 JBMR 20:1185).

    Osteoporotic fracture: 1.38 (women) / 1.41 (men) at 65 [V], taken as constant in age.
    Hip: 2.88 (women) / 2.94 (men) at 65 [V]; ~3.68 at 50 and ~2.28 at 80 [R], log-linear.
    """
    age = np.asarray(age, dtype=np.float64)
    male = np.asarray(sex) == "M"
    if outcome == "mof":
        return np.where(male, np.log(1.41), np.log(1.38)) + 0.0 * age
    slope = (np.log(2.28) - np.log(3.68)) / 30.0
    at65 = np.where(male, np.log(2.94), np.log(2.88))
    return at65 + slope * (age - 65.0)
