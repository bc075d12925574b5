r"""A FRAX-style 10-year probability calculator from published gradients of risk.

FRAX (Kanis et al. 2008) models the hazards of fracture and of death as functions of age and
the clinical risk factors, and reports the probability of fracture within ten years with
death as a competing event:

.. math::
    P_k(\tau) = \int_0^{\tau} h_k(t) \exp\Big(-\int_0^t \big(h_k(u) + h_D(u)\big)\,du\Big)\,dt,

for outcome *k* (major osteoporotic fracture, MOF, or hip), with hazards in attained age
:math:`a_0 + t`:

.. math::
    h_k(t) = h^{0}_{k,\mathrm{sex}}(a_0 + t) \, \exp\Big(\sum_j \beta_{kj}(a_0 + t)\, x_j
             \;[-\, g_k(a_0 + t)(T - \bar T(a_0)) - g_k^2 / 2]\Big).

The bracket is the BMD term (with a T-score): :math:`g_k` is the gradient of risk per SD,
:math:`\bar T(a)` the mean T-score at that age, and :math:`-g_k^2/2` keeps the average over
the population equal to the model without BMD. The FRAX coefficients are not public, so this
is FRAX-*style*: same inputs and structure, published gradients (``frax_gradients``), and
population rates by age and sex (``data/frax_uk_rates.csv``: MOF and hip without risk
factors, death) with the prior-fracture gradient (``data/frax_uk.json``), both written with
their sources by ``scripts/calibrate_frax_uk.py``. What it is not: the official tool, whose
results for a cohort should be used through :class:`~fracrisk.baselines.FraxColumn` when
available.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._params import InstanceOf
from fracrisk.baselines.frax_gradients import (
    NO_BMD_LOG_RR,
    T_SCORE_MEAN,
    WITH_BMD_LOG_RR,
    bmd_log_gradient,
    log_rr_glucocorticoids,
)
from fracrisk.data.cohort import table_and_ids
from fracrisk.data.schema import BINARY_RISK_FACTORS
from fracrisk.exceptions import DataWarning, ValidationProblem
from fracrisk.models._base import SurvivalModel

__all__ = ["FraxStyleCalculator", "fracture_probability", "list_countries", "rates_from_table"]

_DATA = Path(__file__).parent / "data"
_OUTCOMES = ("mof", "hip")
_STEP = 0.05  # years per integration step
AGE_RANGE = (40.0, 90.0)
T_SCORE_RANGE = (-5.0, 3.0)


def list_countries() -> list[str]:
    """Countries with shipped calibration tables."""
    return sorted(p.stem.removeprefix("frax_").upper() for p in _DATA.glob("frax_*.json"))


def _load_country(country: str) -> dict:
    """The country's parameters (JSON) and its rate table (CSV), with their sources."""
    path = _DATA / f"frax_{country.lower()}.json"
    if not path.exists():
        raise ValueError(
            f"no FRAX-style tables for country {country!r}; available: "
            f"{', '.join(list_countries())}"
        )
    params = json.loads(path.read_text())
    table = pd.read_csv(_DATA / f"frax_{country.lower()}_rates.csv", comment="#")
    params["rates"] = rates_from_table(table)
    return params


def rates_from_table(table: pd.DataFrame) -> dict:
    """Rate table (columns age, sex, mof, hip, death per person-year) as log-rate arrays."""
    rates: dict = {}
    for sex, rows in table.groupby("sex"):
        rows = rows.sort_values("age")
        rates[sex] = {
            "age": rows["age"].to_numpy(dtype=np.float64),
            **{k: np.log(rows[k].to_numpy(dtype=np.float64)) for k in ("mof", "hip", "death")},
        }
    return rates


def _log_rate(params: dict, kind: str, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Log population rate of ``kind`` (mof, hip, death) at attained age, by sex.

    MOF and hip are the rates without risk factors; values are log-linearly interpolated in
    the table and held constant beyond its ends.
    """
    rates = params["rates"]
    women = np.interp(age, rates["F"]["age"], rates["F"][kind])
    men = np.interp(age, rates["M"]["age"], rates["M"][kind])
    return np.where(male, men, women)


def _log_relative_hazard(params, outcome, patients, age, with_bmd):
    table = (WITH_BMD_LOG_RR if with_bmd else NO_BMD_LOG_RR)[outcome]
    total = np.zeros_like(age)
    for name, beta in table.items():
        if name != "bmi_per_unit":
            total = total + beta * patients[name][:, None]
    total = total + table["bmi_per_unit"] * (patients["bmi"][:, None] - 25.0)
    total = total + log_rr_glucocorticoids(outcome, age) * patients["glucocorticoids"][:, None]
    at65, slope = params["prior_fracture"][outcome]
    total = total + (at65 + slope * (age - 65.0)) * patients["prior_fracture"][:, None]
    if with_bmd:
        sex = np.broadcast_to(patients["sex"][:, None], age.shape)
        g = bmd_log_gradient(outcome, age, sex)
        total = total - g * patients["t_deviation"][:, None] - g**2 / 2
    return total


def fracture_probability(
    patients: dict[str, np.ndarray],
    params: dict,
    *,
    outcome: str,
    horizons,
    with_bmd: np.ndarray | bool = False,
) -> np.ndarray:
    """Probability of a first ``outcome`` fracture by each horizon, death competing.

    ``patients`` maps the canonical clinical columns (and ``t_deviation`` = T-score minus
    the mean T-score at that age and sex, when BMD is used) to arrays; returns an array of
    shape (n_patients, n_horizons). Integration: piecewise-constant hazards over steps of
    0.05 years evaluated at the step midpoints.
    """
    _check_outcome(outcome)
    horizons = np.atleast_1d(np.asarray(horizons, dtype=np.float64))
    if np.any(horizons < 0) or not np.all(np.isfinite(horizons)):
        raise ValueError("horizons must be finite, non-negative numbers of years")
    n_steps = max(1, int(np.ceil(horizons.max() / _STEP)))
    mid = (np.arange(n_steps) + 0.5) * _STEP
    age = patients["age"][:, None] + mid[None, :]
    male = (patients["sex"] == "M")[:, None]
    with_bmd = np.broadcast_to(np.asarray(with_bmd), patients["age"].shape)[:, None]

    def log_hazard(kind: str) -> np.ndarray:
        return _log_rate(params, kind, age, male) + np.where(
            with_bmd,
            _log_relative_hazard(params, kind, patients, age, True),
            _log_relative_hazard(params, kind, patients, age, False),
        )

    log_h = log_hazard(outcome)
    if outcome == "mof":
        # MOF includes hip: its hazard can never be below the hip hazard (the two are
        # modelled separately and the hip one rises faster with age and low BMD)
        log_h = np.maximum(log_h, log_hazard("hip"))
    h_frac = np.exp(log_h)
    h_all = h_frac + np.exp(_log_rate(params, "death", age, male))
    survive_step = np.exp(-h_all * _STEP)
    alive_before = np.concatenate(
        [np.ones((len(age), 1)), np.cumprod(survive_step, axis=1)[:, :-1]], axis=1
    )
    step_prob = alive_before * (h_frac / h_all) * (1.0 - survive_step)
    cumulative = np.concatenate([np.zeros((len(age), 1)), np.cumsum(step_prob, axis=1)], axis=1)
    index = np.clip(np.round(horizons / _STEP).astype(int), 0, n_steps)
    return cumulative[:, index]


def _check_outcome(outcome: str) -> None:
    if outcome not in _OUTCOMES:
        raise ValueError(f"outcome must be one of {_OUTCOMES}, got {outcome!r}")


def _validate(df: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Check the calculator's inputs; returns the arrays and which rows use BMD."""
    problems: list[ValidationProblem] = []
    required = ["age", "sex", "bmi", *BINARY_RISK_FACTORS]
    absent = [c for c in required if c not in df.columns]
    if absent:
        raise ValueError(
            f"missing column(s) {absent}; the FRAX-style calculator needs "
            f"{required} (femoral_neck_t_score optional)"
        )
    age = pd.to_numeric(df["age"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(age)
    if bad.any():
        problems.append(
            ValidationProblem(
                "age", tuple(df.index[bad]), "age must be a number", tuple(df["age"][bad])
            )
        )
    outside = np.isfinite(age) & ((age < AGE_RANGE[0]) | (age > AGE_RANGE[1]))
    sex = df["sex"].astype(object).to_numpy()
    bad = ~np.isin(sex, ["F", "M"])
    if bad.any():
        problems.append(
            ValidationProblem(
                "sex",
                tuple(df.index[bad]),
                "unknown sex code; allowed codes are F, M",
                tuple(sex[bad]),
            )
        )
    arrays: dict[str, np.ndarray] = {"sex": sex}
    for name in ["bmi", *BINARY_RISK_FACTORS]:
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
        # FRAX: a blank answer counts as "no" [V]; BMI must be given
        if name != "bmi":
            values = np.where(df[name].isna().to_numpy(), 0.0, values)
            bad = ~np.isin(values, [0.0, 1.0])
            reason = "must be 0 or 1"
        else:
            bad = ~np.isfinite(values) | (values < 10) | (values > 80)
            reason = "BMI must be a number in [10, 80] kg/m2"
        if bad.any():
            problems.append(
                ValidationProblem(name, tuple(df.index[bad]), reason, tuple(df[name][bad]))
            )
        arrays[name] = values
    has_bmd = np.zeros(len(df), dtype=bool)
    t_score = np.zeros(len(df))
    if "femoral_neck_t_score" in df.columns:
        raw = pd.to_numeric(df["femoral_neck_t_score"], errors="coerce").to_numpy(np.float64)
        has_bmd = np.isfinite(raw)
        out = has_bmd & ((raw < T_SCORE_RANGE[0]) | (raw > T_SCORE_RANGE[1]))
        if out.any():
            problems.append(
                ValidationProblem(
                    "femoral_neck_t_score",
                    tuple(df.index[out]),
                    f"T-score must lie within [{T_SCORE_RANGE[0]:g}, {T_SCORE_RANGE[1]:g}]",
                    tuple(raw[out]),
                )
            )
        t_score = np.where(has_bmd, raw, 0.0)
    if problems:
        raise ValueError(
            "\n".join(["invalid FRAX input:", *[f"  - {p.describe()}" for p in problems]])
        )
    if outside.any():
        rows = df.index[outside].tolist()
        warnings.warn(
            f"age outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} in rows {rows[:5]}"
            f"{' and more' if len(rows) > 5 else ''}: computed at "
            f"{AGE_RANGE[0]:g} or {AGE_RANGE[1]:g}, as FRAX does",
            DataWarning,
            stacklevel=3,
        )
    arrays["age"] = np.clip(age, *AGE_RANGE)
    at55, slope = (
        np.where(sex == "M", T_SCORE_MEAN["M"][0], T_SCORE_MEAN["F"][0]),
        np.where(sex == "M", T_SCORE_MEAN["M"][1], T_SCORE_MEAN["F"][1]),
    )
    arrays["t_deviation"] = t_score - (at55 + slope * (arrays["age"] - 55.0))
    return arrays, has_bmd


class FraxStyleCalculator(SurvivalModel, name="frax_calculator"):
    """10-year MOF and hip fracture probabilities from published gradients (no training).

    Parameters
    ----------
    country : str, default "UK"
        Which calibration tables to use (:func:`list_countries`).

    Notes
    -----
    Rows with a ``femoral_neck_t_score`` use the model with BMD; rows without (column
    absent or value missing) the model without BMD. Ages outside 40-90 are computed at 40
    or 90 with a warning, as FRAX does. Sources of every number: ``frax_gradients`` and
    ``data/frax_<country>.json``.

    Examples
    --------
    >>> import pandas as pd
    >>> patient = pd.DataFrame({"age": [70], "sex": ["F"], "bmi": [25.0],
    ...     "prior_fracture": [1], "parental_hip_fracture": [0], "current_smoking": [0],
    ...     "glucocorticoids": [0], "rheumatoid_arthritis": [0],
    ...     "secondary_osteoporosis": [0], "alcohol_3_or_more_units": [0]})
    >>> out = FraxStyleCalculator().predict(patient)
    >>> bool(0.15 < out.loc[0, "mof_10y"] < 0.25)
    True
    """

    risk_type = "absolute"
    _parameter_constraints = {"country": [InstanceOf(str, description="a country name")]}

    def __init__(self, country: str = "UK") -> None:
        self.country = country

    def _requires_fit(self) -> bool:
        return False

    @property
    def params_(self) -> dict:
        """The country's calibration: hazards of fracture and death, gradients of risk."""
        cached = getattr(self, "_tables", None)
        if cached is None or cached[0] != self.country:
            self._validate_params()
            cached = self._tables = (self.country, _load_country(self.country))
        return cached[1]

    def fit(self, data=None, covariates=None) -> FraxStyleCalculator:
        """Check the settings; nothing is learned (the calculator needs no training data)."""
        self._validate_params()
        _ = self.params_  # an unknown country fails here
        self.n_train_ = 0
        return self

    def predict(self, data) -> pd.DataFrame:
        """The input table with ``mof_10y`` and ``hip_10y`` probabilities added."""
        df, _ = table_and_ids(data)
        arrays, has_bmd = _validate(df)
        out = df.copy()
        for outcome in _OUTCOMES:
            out[f"{outcome}_10y"] = fracture_probability(
                arrays, self.params_, outcome=outcome, horizons=[10.0], with_bmd=has_bmd
            )[:, 0]
        return out

    def predict_risk(self, data, horizon: float = 10.0, *, outcome: str = "mof") -> pd.Series:
        """Probability of ``outcome`` by ``horizon`` years, death competing."""
        _check_outcome(outcome)
        df, _ = table_and_ids(data)
        arrays, has_bmd = _validate(df)
        risk = fracture_probability(
            arrays, self.params_, outcome=outcome, horizons=[horizon], with_bmd=has_bmd
        )[:, 0]
        out = pd.Series(risk, index=table_and_ids(data)[1], name=f"{outcome}_{horizon:g}y")
        out.attrs["risk_type"] = self.risk_type
        return out

    def predict_cumulative_incidence(self, data, times, *, outcome: str = "mof") -> pd.DataFrame:
        """Probability of an ``outcome`` fracture by each time (years), death competing."""
        surv = self.predict_survival(data, times, outcome=outcome)
        return self._survival_frame(1.0 - surv.to_numpy(), surv.index, surv.columns)

    def predict_survival(self, data, times, *, outcome: str = "mof") -> pd.DataFrame:
        """Probability of no ``outcome`` fracture by each time, death competing (1 - P)."""
        _check_outcome(outcome)
        df, _ = table_and_ids(data)
        arrays, has_bmd = _validate(df)
        grid = np.asarray(times, dtype=np.float64)
        risk = fracture_probability(
            arrays, self.params_, outcome=outcome, horizons=grid, with_bmd=has_bmd
        )
        return self._survival_frame(1.0 - risk, table_and_ids(data)[1], grid)

    def predict_score(self, data) -> np.ndarray:
        """Ranking score: the 10-year MOF probability."""
        return self.predict_risk(data, 10.0).to_numpy()

    def _state(self) -> tuple[dict, dict]:
        return {"n_train": getattr(self, "n_train_", 0)}, {}

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict) -> FraxStyleCalculator:
        model = cls(**params).fit()
        return model
