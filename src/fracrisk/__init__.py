"""fracrisk: survival-based fracture-risk modelling.

Data flow: cohort -> images -> encoders -> fusion -> heads -> survival curves -> metrics
and report. See ``docs/architecture.md``.
"""

from fracrisk import baselines  # noqa: F401 - registers the baselines with the model registry
from fracrisk.data import Cohort
from fracrisk.losses import cox_partial_likelihood
from fracrisk.models import (
    CoxPH,
    DeepSurv,
    ImageSurvivalModel,
    OpportunisticFrax,
    TextureCox,
    create_model,
    list_models,
    load_model,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Cohort",
    "CoxPH",
    "DeepSurv",
    "ImageSurvivalModel",
    "OpportunisticFrax",
    "TextureCox",
    "__version__",
    "cox_partial_likelihood",
    "create_model",
    "list_models",
    "load_model",
]
