"""Calibrate the FRAX-style UK tables to published UK FRAX probabilities.

Writes ``src/fracrisk/baselines/data/frax_uk.json``. Fitted: the women's Gompertz baseline
hazards of MOF and hip without risk factors (log hazard at 50 and slope per year), and the
age-dependent log RR of a prior fracture for each outcome (value at 65 and slope per year):
8 parameters, by least squares on the log of the 16 published probabilities below. Every
other number is a published gradient (``fracrisk/baselines/frax_gradients.py``).

Targets: UK FRAX 10-year probability (%), women, BMI 25, no BMD, ages 50/60/70/80
(Kanis et al. 2008, Osteoporos Int 19:385, Tables 2-3 [V], via
shared/reference/epidemiology.md). Other rows of these tables (men, other risk factors,
BMD) are NOT used here; they check the calculator independently.

Run: ``.venv/bin/python scripts/calibrate_frax_uk.py``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from fracrisk.baselines.frax_calculator import fracture_probability
from fracrisk.data.schema import BINARY_RISK_FACTORS

AGES = np.array([50.0, 60.0, 70.0, 80.0])
PUBLISHED = {  # percent
    ("mof", 0): [3.5, 6.0, 11.0, 17.0],
    ("mof", 1): [7.4, 12.0, 20.0, 28.0],
    ("hip", 0): [0.2, 0.7, 2.3, 7.0],
    ("hip", 1): [0.8, 2.1, 4.9, 11.0],
}
# Men / women baseline hazard ratios [I]: MOF from "FRAX UK implies MOF hazards of about
# 3.6/1,000 at 50 and 19/1,000 at 80 in women, 2.8 -> 7.5/1,000 in men"; hip ~0.55, the
# mean of the Harstad (0.67 at 50-54, 0.60 at 90+) and New England (0.41 at 65-69, 0.65 at
# 90-94) incidence ratios.
MEN_RATIO = {"mof": {"at50": 2.8 / 3.6, "at80": 7.5 / 19.0}, "hip": {"at50": 0.55, "at80": 0.55}}


def patients(prior: int) -> dict[str, np.ndarray]:
    """The published profile: women aged 50-80, BMI 25, with or without a prior fracture."""
    n = len(AGES)
    arrays = {name: np.zeros(n) for name in BINARY_RISK_FACTORS}
    arrays.update(
        age=AGES.copy(),
        sex=np.array(["F"] * n, dtype=object),
        bmi=np.full(n, 25.0),
        t_deviation=np.zeros(n),
    )
    arrays["prior_fracture"] = np.full(n, float(prior))
    return arrays


def to_params(theta: np.ndarray) -> dict:
    """The parameter vector as the calculator's table."""
    return {
        "women": {"mof": [theta[0], theta[1]], "hip": [theta[2], theta[3]]},
        "prior_fracture": {"mof": [theta[4], theta[5]], "hip": [theta[6], theta[7]]},
        "men_ratio": MEN_RATIO,
    }


def residuals(theta: np.ndarray) -> np.ndarray:
    """Log of predicted over published probability, for the 16 rows."""
    params = to_params(theta)
    out = []
    for (outcome, prior), target in PUBLISHED.items():
        p = fracture_probability(patients(prior), params, outcome=outcome, horizons=[10.0])[:, 0]
        out.append(np.log(p) - np.log(np.array(target) / 100))
    return np.concatenate(out)


def main() -> None:
    """Fit and write the table."""
    start = np.array(
        [np.log(0.0036), 0.055, np.log(0.0001), 0.12, np.log(1.83), 0.0, np.log(1.82), 0.0]
    )
    fit = least_squares(residuals, start)
    params = to_params(fit.x)
    params["sources"] = {
        "women": "[fit] Gompertz (log hazard at 50, slope/year) to Kanis 2008 Tables 2-3, "
        "UK women, BMI 25, no BMD, no clinical risk factor, ages 50-80",
        "prior_fracture": "[fit] (log RR at 65, slope/year) to the same tables' prior-fracture "
        "rows; Kanis 2004 Bone 35:375 reports an RR decreasing with age for "
        "hip [V]",
        "men_ratio": "[I] epidemiology.md: FRAX UK MOF hazards (women 3.6 -> 19, men 2.8 -> "
        "7.5 per 1,000 at 50 -> 80); hip: Harstad and New England incidence",
        "mortality": "[I] Gompertz, frax_gradients.MORTALITY_GOMPERTZ",
        "max_abs_log_residual": float(np.abs(fit.fun).max()),
    }
    path = Path(__file__).parent.parent / "src/fracrisk/baselines/data/frax_uk.json"
    path.write_text(json.dumps(params, indent=2) + "\n")
    print(f"wrote {path}; max |log residual| {np.abs(fit.fun).max():.3f}")
    print(
        "prior-fracture RR: MOF",
        np.exp(fit.x[4]),
        "slope",
        fit.x[5],
        "hip",
        np.exp(fit.x[6]),
        "slope",
        fit.x[7],
    )


if __name__ == "__main__":
    main()
