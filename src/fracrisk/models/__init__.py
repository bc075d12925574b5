"""Survival estimators with a scikit-survival-like API: ``fit`` / ``predict_*`` / ``save``."""

from fracrisk.models._base import SurvivalEstimator, load_model
from fracrisk.models.coxph import ConvergenceWarning, CoxPH
from fracrisk.models.deepsurv import DeepSurv

__all__ = ["ConvergenceWarning", "CoxPH", "DeepSurv", "SurvivalEstimator", "load_model"]
