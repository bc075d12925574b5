"""Classical survival baselines behind the fracrisk interface.

scikit-survival's random survival forest and gradient boosting are wrapped, not rewritten;
the Kaplan-Meier null model predicts the same curve for everyone (C-index 0.5 by design).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fracrisk.data.cohort import Cohort, as_cohort, table_and_ids
from fracrisk.exceptions import NotFittedError
from fracrisk.models._base import RiskFromSurvival
from fracrisk.nonparametric import kaplan_meier
from fracrisk.preprocessing import TabularPreprocessor

__all__ = ["GradientBoostingSurvival", "KaplanMeierNull", "RandomSurvivalForest"]


class _SksurvModel(RiskFromSurvival):
    """Common code of the scikit-survival wrappers: preprocessing and prediction."""

    def _make(self):
        raise NotImplementedError

    def fit(self, data: Cohort | pd.DataFrame, covariates: Sequence[str] | None = None):
        """Fit on the clinical columns (or ``covariates``); competing death is censoring."""
        from sksurv.util import Surv

        cohort = as_cohort(data)
        self.covariates_ = list(covariates) if covariates is not None else cohort.default_covariates
        cohort.check_covariates(self.covariates_)
        self.preprocessor_ = TabularPreprocessor(self.covariates_).fit(cohort.df)
        x = self.preprocessor_.transform(cohort.df)
        y = Surv.from_arrays(cohort.event == 1, cohort.time)
        self.estimator_ = self._make().fit(x, y)
        self.max_time_ = float(cohort.time.max())
        return self

    def _x(self, data) -> tuple[np.ndarray, pd.Index]:
        if not hasattr(self, "estimator_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit() first")
        df, ids = table_and_ids(data)
        return self.preprocessor_.transform(df), ids

    def predict_score(self, data) -> np.ndarray:
        """Ranking score (higher = higher risk), scikit-survival's ``predict``."""
        x, _ = self._x(data)
        return np.asarray(self.estimator_.predict(x), dtype=np.float64)

    def predict_survival(self, data, times) -> pd.DataFrame:
        """Survival from fracture at ``times`` (years), patients x times."""
        x, ids = self._x(data)
        grid = np.asarray(times, dtype=np.float64)
        functions = self.estimator_.predict_survival_function(x)
        last = functions[0].x[-1]
        surv = np.stack([fn(np.minimum(grid, last)) for fn in functions])
        return pd.DataFrame(surv, index=ids, columns=pd.Index(grid, name="time (years)"))

    def save(self, *args, **kwargs):
        """Not supported: scikit-survival models serialise only by (unsafe) pickle."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot be saved safely: scikit-"
            "survival models serialise only by pickle"
        )


class RandomSurvivalForest(_SksurvModel):
    """scikit-survival's ``RandomSurvivalForest`` (Ishwaran et al. 2008).

    Parameters are passed to it; defaults: 200 trees, ``min_samples_leaf=15``,
    ``random_state=0``, ``n_jobs=-1``.
    """

    def __init__(self, **params) -> None:
        self.params = {
            "n_estimators": 200,
            "min_samples_leaf": 15,
            "random_state": 0,
            "n_jobs": -1,
            **params,
        }

    def _make(self):
        from sksurv.ensemble import RandomSurvivalForest as _RSF

        return _RSF(**self.params)


class GradientBoostingSurvival(_SksurvModel):
    """scikit-survival's ``GradientBoostingSurvivalAnalysis`` (Cox loss, Breslow baseline).

    Parameters are passed to it; defaults: 200 trees of depth 2, learning rate 0.1,
    ``random_state=0``.
    """

    def __init__(self, **params) -> None:
        self.params = {
            "n_estimators": 200,
            "max_depth": 2,
            "learning_rate": 0.1,
            "random_state": 0,
            **params,
        }

    def _make(self):
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return GradientBoostingSurvivalAnalysis(**self.params)


class KaplanMeierNull(RiskFromSurvival):
    """The null model: everybody gets the training Kaplan-Meier curve (death censored)."""

    def fit(self, data: Cohort | pd.DataFrame, covariates=None) -> KaplanMeierNull:
        """Estimate the Kaplan-Meier curve of the training cohort."""
        cohort = as_cohort(data)
        self.times_, self.survival_ = kaplan_meier(cohort.time, cohort.event)
        return self

    def predict_score(self, data) -> np.ndarray:
        """All zeros: the null model does not rank patients."""
        df, _ = table_and_ids(data)
        return np.zeros(len(df))

    def predict_survival(self, data, times) -> pd.DataFrame:
        """The training Kaplan-Meier curve at ``times`` for every patient."""
        if not hasattr(self, "survival_"):
            raise NotFittedError("this KaplanMeierNull is not fitted; call fit() first")
        df, ids = table_and_ids(data)
        grid = np.asarray(times, dtype=np.float64)
        curve = np.concatenate([[1.0], self.survival_])[
            np.searchsorted(self.times_, grid, side="right")
        ]
        return pd.DataFrame(
            np.tile(curve, (len(df), 1)), index=ids, columns=pd.Index(grid, name="time (years)")
        )
