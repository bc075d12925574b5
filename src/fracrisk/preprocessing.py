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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fracrisk.data.schema import COLUMN_SPECS
from fracrisk.exceptions import NotFittedError, ValidationProblem

__all__ = ["TabularPreprocessor"]


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
                self.fill_[name] = (
                    float(numbers.mode().sort_values().iloc[0])
                    if kind == "binary"
                    else float(np.median(numbers))
                )
        raw = self._encode(df)
        self.mean_ = raw.mean(axis=0)
        self.scale_ = raw.std(axis=0)
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

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Standardised design matrix, float64, shape (n_rows, n_features)."""
        self._check_fitted()
        self._check_columns(df)
        return (self._encode(df) - self.mean_) / self.scale_

    def fit_transform(self, df: pd.DataFrame) -> np.ndarray:
        """:meth:`fit` then :meth:`transform` on the same rows."""
        return self.fit(df).transform(df)

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
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict) -> TabularPreprocessor:
        """Rebuild from :meth:`to_dict`. Floats round-trip exactly through JSON."""
        pre = cls(state["columns"])
        pre.kinds_, pre.levels_, pre.fill_ = state["kinds"], state["levels"], state["fill"]
        pre.mean_ = np.asarray(state["mean"], dtype=np.float64)
        pre.scale_ = np.asarray(state["scale"], dtype=np.float64)
        return pre
