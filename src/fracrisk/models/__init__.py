"""Survival estimators with a scikit-survival-like API: ``fit`` / ``predict_*`` / ``save``."""

from fracrisk.models._base import (
    RISK_TYPES,
    SurvivalEstimator,
    SurvivalModel,
    create_model,
    list_models,
    load_model,
)
from fracrisk.models.coxph import ConvergenceWarning, CoxPH
from fracrisk.models.deepsurv import DeepSurv
from fracrisk.models.image import ImageSurvivalModel
from fracrisk.models.texture import OpportunisticFrax, TextureCox

__all__ = [
    "RISK_TYPES",
    "ConvergenceWarning",
    "CoxPH",
    "DeepSurv",
    "ImageSurvivalModel",
    "OpportunisticFrax",
    "SurvivalEstimator",
    "SurvivalModel",
    "TextureCox",
    "create_model",
    "list_models",
    "load_model",
]
