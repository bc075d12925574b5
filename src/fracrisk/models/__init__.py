"""Survival estimators with a scikit-survival-like API: ``fit`` / ``predict_*`` / ``save``."""

from fracrisk.models._base import SavedModel, SurvivalEstimator, load_model
from fracrisk.models.coxph import ConvergenceWarning, CoxPH
from fracrisk.models.deepsurv import DeepSurv
from fracrisk.models.image import ImageSurvivalModel

__all__ = [
    "ConvergenceWarning",
    "CoxPH",
    "DeepSurv",
    "ImageSurvivalModel",
    "SavedModel",
    "SurvivalEstimator",
    "load_model",
]
