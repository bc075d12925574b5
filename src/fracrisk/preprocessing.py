"""Covariate preprocessing fitted on training data only: imputation, encoding, standardisation.

:class:`TabularPreprocessor` turns cohort columns into a float design matrix:

* numeric columns (age, BMI, BMD, T-score, extra numeric covariates) are kept as numbers;
* 0/1 risk-factor flags are kept as 0/1;
* categorical columns (``sex`` and any text column) are one-hot encoded against a reference
  level, the first in sorted order (so ``sex`` gives one feature, ``sex[M]``, with women as
  reference);
* every resulting feature is then centred and scaled by its training mean and standard
  deviation, so that a log hazard of 0 means "a patient with the average training features"
  (lifelines' convention for the baseline hazard).

Missing values: when the training data hold some (the cohort's ``missing="impute"``
policy), they are replaced by the training median (numbers) or the most frequent training
value (flags and categories), and the same values are used at prediction time. The state
is plain JSON, saved with the model.

Prediction is checked against training (:meth:`TabularPreprocessor.transform`):

* a missing value in a column that had none in training (a model fitted under
  ``missing="error"``) is an error naming the rows; where training imputed the column, the
  fill is announced by a :class:`~fracrisk.exceptions.PredictionImputationWarning`;
* a value outside the column's plausible range (:data:`fracrisk.data.COLUMN_SPECS`, e.g.
  age 300) or a flag other than 0/1 is an error naming the rows;
* a plausible value beyond the training range by more than 10% of that range is an
  :class:`~fracrisk.exceptions.OutOfRangeWarning` (an extrapolation), which
  ``warnings.simplefilter("error", OutOfRangeWarning)`` turns into an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fracrisk.data.schema import COLUMN_SPECS
from fracrisk.exceptions import (
    NotFittedError,
    OutOfRangeWarning,
    PredictionImputationWarning,
    ValidationProblem,
)

__all__ = ["TabularPreprocessor"]

#: A value counts as an extrapolation beyond the training range [lo, hi] by more than this
#: share of hi - lo (a test set's tails often pass the training extremes by a little).
_EXTRAPOLATION_MARGIN = 0.1


def _kind_of(name: str, series: pd.Series) -> str:
    if name in COLUMN_SPECS:
        return COLUMN_SPECS[name].kind
    if pd.api.types.is_bool_dtype(series):
        return "binary"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "category"


def _as_numbers(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as float64 (NaN kept); text that is not a number raises, naming rows."""
    series = df[name]
    values = pd.to_numeric(series, errors="coerce").astype(np.float64)
    bad = values.isna() & series.notna()
    if bad.any():
        problem = ValidationProblem(
            name,
            tuple(df.index[bad.to_numpy()].tolist()),
            "expected numbers",
            tuple(series[bad].tolist()),
        )
        raise ValueError(problem.describe())
    return values


class TabularPreprocessor:
    """Fit-on-train preprocessing of tabular covariates into a standardised float matrix.

    Parameters
    ----------
    columns : sequence of str
        Covariate columns, in the order of the output features.

    Attributes
    ----------
    feature_names_ : list of str
        Names of the output features (``"sex[M]"`` for a one-hot level).
    mean_, scale_ : ndarray, shape = (n_features,)
        Training mean and standard deviation (ddof 0) of each feature.
    """

    def __init__(self, columns: Sequence[str]) -> None:
        if len(columns) == 0:
            raise ValueError("at least one covariate column is needed")
        self.columns = list(columns)
        self.kinds_: dict[str, str] | None = None

    def fit(self, df: pd.DataFrame) -> TabularPreprocessor:
        """Learn kinds, levels, imputation values, means and scales from training rows."""
        self._check_columns(df)
        self.kinds_, self.levels_, self.fill_ = {}, {}, {}
        self.range_: dict[str, list[float]] = {}
        self.imputed_: list[str] = [c for c in self.columns if df[c].isna().any()]
        for name in self.columns:
            series = df[name]
            kind = _kind_of(name, series)
            observed = series.dropna()
            if observed.empty:
                raise ValueError(f"column {name!r} has no observed value in the training data")
            self.kinds_[name] = kind
            if kind == "category":
                levels = sorted(observed.astype(str).unique().tolist())
                if len(levels) < 2:
                    raise ValueError(
                        f"column {name!r} has a single level {levels[0]!r} in the "
                        "training data; it cannot be a covariate"
                    )
                self.levels_[name] = levels
                self.fill_[name] = str(observed.astype(str).mode().sort_values().iloc[0])
            else:
                numbers = _as_numbers(df, name).dropna()
                self.range_[name] = [float(numbers.min()), float(numbers.max())]
                self.fill_[name] = (
                    float(numbers.mode().sort_values().iloc[0])
                    if kind == "binary"
                    else float(np.median(numbers))
                )
        raw = self._encode(df)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is the error below
            self.mean_ = raw.mean(axis=0)
            self.scale_ = raw.std(axis=0)
        overflow = [
            f
            for f, m, sd in zip(self.feature_names_, self.mean_, self.scale_, strict=True)
            if not (np.isfinite(m) and np.isfinite(sd))
        ]
        if overflow:
            raise ValueError(
                f"feature(s) {overflow} hold values too large to standardise in float64 "
                "(the mean or the standard deviation overflows); check their units"
            )
        constant = [f for f, s in zip(self.feature_names_, self.scale_, strict=True) if s == 0]
        if constant:
            raise ValueError(
                f"feature(s) {constant} are constant in the training data; "
                "drop them from the covariates"
            )
        return self

    @property
    def feature_names_(self) -> list[str]:
        """Output feature names, one per design-matrix column."""
        self._check_fitted()
        names: list[str] = []
        for name in self.columns:
            if self.kinds_[name] == "category":
                names += [f"{name}[{level}]" for level in self.levels_[name][1:]]
            else:
                names.append(name)
        return names

    def transform(self, df: pd.DataFrame, *, warn: bool = True) -> np.ndarray:
        """Standardised design matrix, float64, shape (n_rows, n_features).

        The rows are checked against training first (see the module notes): errors for
        missing values training never had and for impossible values; with ``warn``,
        warnings for imputed values and for values outside the training range.
        """
        self._check_fitted()
        self._check_columns(df)
        self._check_against_training(df, warn=warn)
        return (self._encode(df) - self.mean_) / self.scale_

    def _check_against_training(self, df: pd.DataFrame, *, warn: bool) -> None:
        # Preprocessors saved before these checks carry no ranges: nothing to check.
        ranges = getattr(self, "range_", None)
        imputed = getattr(self, "imputed_", None)
        for name in self.columns:
            series = df[name]
            missing = series.isna().to_numpy()
            if missing.any() and imputed is not None:
                rows = tuple(df.index[missing].tolist())
                if name not in imputed:
                    problem = ValidationProblem(
                        name,
                        rows,
                        "missing, and the model was fitted without missing values here "
                        "(missing='error'); supply the value, or refit on data with the "
                        "cohort's missing='impute'",
                        (),
                    )
                    raise ValueError(problem.describe())
                if warn:
                    warnings.warn(
                        f"{len(rows)} missing value(s) of {name!r} filled with the training "
                        f"value {self.fill_[name]!r} (rows {list(rows[:5])})",
                        PredictionImputationWarning,
                        stacklevel=4,
                    )
            if ranges is None or self.kinds_[name] == "category":
                continue
            values = _as_numbers(df, name)
            observed = values.notna().to_numpy()
            v = values.to_numpy()
            spec = COLUMN_SPECS.get(name)
            if self.kinds_[name] == "binary":
                bad = observed & ~np.isin(v, (0.0, 1.0))
                reason = "a flag must be 0 or 1"
            else:
                low = spec.low if spec is not None and spec.low is not None else -np.inf
                high = spec.high if spec is not None and spec.high is not None else np.inf
                bad = observed & (~np.isfinite(v) | (v < low) | (v > high))
                unit = f" {spec.unit}" if spec is not None and spec.unit else ""
                reason = f"outside the plausible range [{low:g}, {high:g}]{unit}"
            if bad.any():
                problem = ValidationProblem(
                    name, tuple(df.index[bad].tolist()), reason, tuple(v[bad].tolist())
                )
                raise ValueError(problem.describe())
            low, high = ranges.get(name, (-np.inf, np.inf))
            margin = _EXTRAPOLATION_MARGIN * (high - low)
            beyond = observed & ((v < low - margin) | (v > high + margin))
            if warn and beyond.any() and self.kinds_[name] != "binary":
                rows = df.index[beyond].tolist()
                warnings.warn(
                    f"{int(beyond.sum())} value(s) of {name!r} beyond the training range "
                    f"[{low:g}, {high:g}] by more than {_EXTRAPOLATION_MARGIN:.0%} of it "
                    f"(rows {rows[:5]}): the model extrapolates there",
                    OutOfRangeWarning,
                    stacklevel=4,
                )

    def fit_transform(self, df: pd.DataFrame) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same rows."""
        return self.fit(df).transform(df, warn=False)

    def _encode(self, df: pd.DataFrame) -> np.ndarray:
        blocks: list[np.ndarray] = []
        for name in self.columns:
            series = df[name]
            if self.kinds_[name] == "category":
                values = series.astype(object).where(series.notna(), self.fill_[name]).astype(str)
                unknown = ~values.isin(self.levels_[name])
                if unknown.any():
                    problem = ValidationProblem(
                        name,
                        tuple(df.index[unknown.to_numpy()].tolist()),
                        f"level not seen in training; known levels: {self.levels_[name]}",
                        tuple(values[unknown].tolist()),
                    )
                    raise ValueError(problem.describe())
                for level in self.levels_[name][1:]:
                    blocks.append((values == level).to_numpy(dtype=np.float64))
            else:
                values = _as_numbers(df, name)
                blocks.append(values.fillna(self.fill_[name]).to_numpy())
        return np.column_stack(blocks)

    def _check_columns(self, df: pd.DataFrame) -> None:
        absent = [c for c in self.columns if c not in df.columns]
        if absent:
            raise ValueError(
                f"covariate column(s) {absent} are missing from the data; "
                f"it has: {list(df.columns)}"
            )

    def _check_fitted(self) -> None:
        if self.kinds_ is None:
            raise NotFittedError("TabularPreprocessor is not fitted; call fit() first")

    # ----------------------------------------------------------------- state
    def to_dict(self) -> dict:
        """JSON-serialisable state."""
        self._check_fitted()
        return {
            "columns": self.columns,
            "kinds": self.kinds_,
            "levels": self.levels_,
            "fill": self.fill_,
            "range": getattr(self, "range_", None),
            "imputed": getattr(self, "imputed_", None),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict) -> TabularPreprocessor:
        """Rebuild from :meth:`to_dict`. Floats round-trip exactly through JSON."""
        pre = cls(state["columns"])
        pre.kinds_, pre.levels_, pre.fill_ = state["kinds"], state["levels"], state["fill"]
        if state.get("range") is not None:
            pre.range_ = {k: list(v) for k, v in state["range"].items()}
        if state.get("imputed") is not None:
            pre.imputed_ = list(state["imputed"])
        pre.mean_ = np.asarray(state["mean"], dtype=np.float64)
        pre.scale_ = np.asarray(state["scale"], dtype=np.float64)
        return pre
