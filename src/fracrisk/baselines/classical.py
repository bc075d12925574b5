"""Classical survival baselines behind the fracrisk interface.

scikit-survival's random survival forest and gradient boosting are wrapped, not rewritten;
the Kaplan-Meier null model predicts the same curve for everyone (C-index 0.5 by design).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from fracrisk._params import InstanceOf, Interval
from fracrisk.data.cohort import Cohort, as_cohort, table_and_ids
from fracrisk.models._base import SurvivalModel
from fracrisk.nonparametric import kaplan_meier
from fracrisk.preprocessing import TabularPreprocessor

__all__ = ["GradientBoostingSurvival", "KaplanMeierNull", "RandomSurvivalForest"]


class _SksurvModel(SurvivalModel):
    """Common code of the scikit-survival wrappers: preprocessing and prediction.

    Death is censoring (cause-specific risk). They cannot be saved: scikit-survival
    models serialise only by pickle, which fracrisk never loads.
    """

    _can_save = False
    _fitted_attribute = "estimator_"

    def _make(self):
        raise NotImplementedError

    def fit(self, data: Cohort | pd.DataFrame, covariates: Sequence[str] | None = None):
        """Fit on the clinical columns (or ``covariates``); competing death is censoring."""
        from sksurv.util import Surv

        self._validate_params()
        cohort = as_cohort(data)
        self.covariates_ = list(covariates) if covariates is not None else cohort.default_covariates
        cohort.check_covariates(self.covariates_)
        self.preprocessor_ = TabularPreprocessor(self.covariates_).fit(cohort.df)
        x = self.preprocessor_.transform(cohort.df, warn=False)
        y = Surv.from_arrays(cohort.event == 1, cohort.time)
        self.estimator_ = self._make().fit(x, y)
        self.max_time_ = float(cohort.time.max())
        self.n_train_ = len(cohort)
        return self

    def _x(self, data) -> tuple[np.ndarray, pd.Index]:
        self._check_fitted()
        df, ids = table_and_ids(data)
        return self.preprocessor_.transform(df), ids

    def predict_score(self, data) -> np.ndarray:
        """Ranking score (higher = higher risk), scikit-survival's ``predict``."""
        x, _ = self._x(data)
        return np.asarray(self.estimator_.predict(x), dtype=np.float64)

    def predict_survival(self, data, times) -> pd.DataFrame:
        """Survival from fracture at ``times`` (years), patients x times (death censored).

        The step functions are 1 before the first training event time and held flat after
        the last.
        """
        x, ids = self._x(data)
        grid = np.asarray(times, dtype=np.float64)
        functions = self.estimator_.predict_survival_function(x)
        if not functions.size:
            return self._survival_frame(np.empty((0, len(grid))), ids, grid)
        first, last = functions[0].x[0], functions[0].x[-1]
        inside = np.clip(grid, first, last)
        surv = np.stack([np.atleast_1d(fn(inside)) for fn in functions]).reshape(-1, len(grid))
        surv[:, grid < first] = 1.0
        return self._survival_frame(surv, ids, grid)


class RandomSurvivalForest(_SksurvModel, name="random_survival_forest"):
    """scikit-survival's ``RandomSurvivalForest`` (Ishwaran et al. 2008).

    Parameters
    ----------
    n_estimators : int, default 200
        Trees.
    min_samples_leaf : int, default 15
        Smallest leaf.
    random_state : int, default 0
        Seed.
    n_jobs : int, default -1
        Parallel jobs (-1: all cores).
    options : dict, optional
        Further options of scikit-survival's class (``max_features``, ``max_depth``, ...).
    """

    _parameter_constraints = {
        "n_estimators": [Interval(int, 1, None)],
        "min_samples_leaf": [Interval(int, 1, None)],
        "random_state": [None, Interval(int, 0, None)],
        "n_jobs": [Interval(int, -1, None)],
        "options": [None, InstanceOf(dict)],
    }

    @classmethod
    def _test_params(cls) -> dict:
        return {"n_estimators": 10, "n_jobs": 1}

    def __init__(
        self,
        n_estimators: int = 200,
        *,
        min_samples_leaf: int = 15,
        random_state: int | None = 0,
        n_jobs: int = -1,
        options: dict | None = None,
    ) -> None:
        self.n_estimators, self.min_samples_leaf = n_estimators, min_samples_leaf
        self.random_state, self.n_jobs, self.options = random_state, n_jobs, options

    def _make(self):
        from sksurv.ensemble import RandomSurvivalForest as _RSF

        return _RSF(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            **(self.options or {}),
        )


class GradientBoostingSurvival(_SksurvModel, name="gradient_boosting"):
    """scikit-survival's ``GradientBoostingSurvivalAnalysis`` (Cox loss, Breslow baseline).

    Parameters
    ----------
    n_estimators : int, default 200
        Boosting stages.
    max_depth : int, default 2
        Depth of each tree.
    learning_rate : float, default 0.1
        Shrinkage.
    random_state : int, default 0
        Seed.
    options : dict, optional
        Further options of scikit-survival's class (``subsample``, ``dropout_rate``, ...).
    """

    _parameter_constraints = {
        "n_estimators": [Interval(int, 1, None)],
        "max_depth": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "random_state": [None, Interval(int, 0, None)],
        "options": [None, InstanceOf(dict)],
    }

    @classmethod
    def _test_params(cls) -> dict:
        return {"n_estimators": 20}

    def __init__(
        self,
        n_estimators: int = 200,
        *,
        max_depth: int = 2,
        learning_rate: float = 0.1,
        random_state: int | None = 0,
        options: dict | None = None,
    ) -> None:
        self.n_estimators, self.max_depth, self.learning_rate = (
            n_estimators,
            max_depth,
            learning_rate,
        )
        self.random_state, self.options = random_state, options

    def _make(self):
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return GradientBoostingSurvivalAnalysis(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            random_state=self.random_state,
            **(self.options or {}),
        )


class KaplanMeierNull(SurvivalModel, name="kaplan_meier"):
    """The null model: everybody gets the training Kaplan-Meier curve (death censored).

    Its C-index is 0.5 by design; it is the floor every model must clear.
    """

    _fitted_attribute = "survival_"

    def fit(self, data: Cohort | pd.DataFrame, covariates=None) -> KaplanMeierNull:
        """Estimate the Kaplan-Meier curve of the training cohort (``covariates`` unused)."""
        cohort = as_cohort(data)
        self.times_, self.survival_ = kaplan_meier(cohort.time, cohort.event)
        self.n_train_ = len(cohort)
        return self

    def predict_score(self, data) -> np.ndarray:
        """All zeros: the null model does not rank patients."""
        self._check_fitted()
        df, _ = table_and_ids(data)
        return np.zeros(len(df))

    def predict_survival(self, data, times) -> pd.DataFrame:
        """The training Kaplan-Meier curve at ``times`` for every patient."""
        self._check_fitted()
        df, ids = table_and_ids(data)
        grid = np.asarray(times, dtype=np.float64)
        curve = np.concatenate([[1.0], self.survival_])[
            np.searchsorted(self.times_, grid, side="right")
        ]
        return self._survival_frame(np.tile(curve, (len(df), 1)), ids, grid)

    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors = {
            "times": torch.from_numpy(np.ascontiguousarray(self.times_, dtype=np.float64)),
            "survival": torch.from_numpy(np.ascontiguousarray(self.survival_, dtype=np.float64)),
        }
        return {"n_train": self.n_train_}, tensors

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict) -> KaplanMeierNull:
        model = cls(**params)
        model.times_ = tensors["times"].numpy()
        model.survival_ = tensors["survival"].numpy()
        if model.times_.shape != model.survival_.shape or np.any(np.diff(model.survival_) > 0):
            raise ValueError("the saved Kaplan-Meier curve is malformed (shapes or rising values)")
        model.n_train_ = state["n_train"]
        return model
