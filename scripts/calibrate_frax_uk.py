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
import pandas as pd
from scipy.optimize import least_squares

from fracrisk.baselines.frax_calculator import fracture_probability, rates_from_table
from fracrisk.baselines.frax_gradients import MORTALITY_GOMPERTZ
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


AGES_TABLE = np.arange(40.0, 101.0)


def rate_table(theta: np.ndarray) -> pd.DataFrame:
    """Rates per person-year by age and sex: MOF and hip without risk factors, and death."""
    rows = []
    for sex in ("F", "M"):
        for outcome, (log_h50, slope) in (("mof", theta[0:2]), ("hip", theta[2:4])):
            ratio = MEN_RATIO[outcome]
            log_men = np.log(ratio["at50"]) + (np.log(ratio["at80"]) - np.log(ratio["at50"])) * (
                np.clip((AGES_TABLE - 50.0) / 30.0, 0.0, 1.0)
            )
            rate = np.exp(log_h50 + slope * (AGES_TABLE - 50.0) + (log_men if sex == "M" else 0))
            rows.append(
                pd.DataFrame({"age": AGES_TABLE, "sex": sex, "outcome": outcome, "rate": rate})
            )
        h50, b = MORTALITY_GOMPERTZ[sex]
        rows.append(
            pd.DataFrame(
                {
                    "age": AGES_TABLE,
                    "sex": sex,
                    "outcome": "death",
                    "rate": h50 * np.exp(b * (AGES_TABLE - 50.0)),
                }
            )
        )
    long = pd.concat(rows)
    return long.pivot_table(index=["age", "sex"], columns="outcome", values="rate").reset_index()


def to_params(theta: np.ndarray) -> dict:
    """The parameter vector as the calculator's parameters (rates as arrays)."""
    return {"rates": rates_from_table(rate_table(theta)), **_prior(theta)}


def _prior(theta: np.ndarray) -> dict:
    return {
        "prior_fracture": {"mof": [theta[4], theta[5]], "hip": [theta[6], theta[7]]},
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
    """Fit, then write the rate table (CSV) and the parameters with their sources (JSON)."""
    start = np.array(
        [np.log(0.0036), 0.055, np.log(0.0001), 0.12, np.log(1.83), 0.0, np.log(1.82), 0.0]
    )
    fit = least_squares(residuals, start)
    data = Path(__file__).parent.parent / "src/fracrisk/baselines/data"
    table = rate_table(fit.x)
    header = (
        "# FRAX-style UK rates per person-year, by age and sex: MOF and hip without clinical\n"
        "# risk factors (BMI 25, no BMD), and death. Women's MOF and hip: Gompertz fitted to\n"
        "# Kanis 2008 (Osteoporos Int 19:385) Tables 2-3, UK women, no BMD, ages 50-80 [fit].\n"
        "# Men: women's rates times the men/women ratio of epidemiology.md [I] (MOF 3.6->19 vs\n"
        "# 2.8->7.5 per 1,000 at 50->80; hip ~0.55, Harstad and New England incidence).\n"
        "# Death: Gompertz h50 0.003 (F) / 0.005 (M), slope 0.09 / 0.085 per year [I].\n"
        "# Written by scripts/calibrate_frax_uk.py.\n"
    )
    (data / "frax_uk_rates.csv").write_text(header + table.to_csv(index=False, float_format="%.6g"))
    params = _prior(fit.x)
    params["sources"] = {
        "rates": "frax_uk_rates.csv (its header gives the sources)",
        "prior_fracture": "[fit] (log RR at 65, slope/year) to the prior-fracture rows of Kanis "
        "2008 Tables 2-3; Kanis 2004 Bone 35:375 reports an RR decreasing with age for hip [V]",
        "max_abs_log_residual": float(np.abs(fit.fun).max()),
    }
    (data / "frax_uk.json").write_text(json.dumps(params, indent=2) + "\n")
    print(
        f"wrote {data}/frax_uk.json and frax_uk_rates.csv; max |log residual| "
        f"{np.abs(fit.fun).max():.3f}"
    )
    print(
        f"prior-fracture RR at 65: MOF {np.exp(fit.x[4]):.2f} (slope {fit.x[5]:.4f}/y), "
        f"hip {np.exp(fit.x[6]):.2f} (slope {fit.x[7]:.4f}/y)"
    )


if __name__ == "__main__":
    main()
