"""Baselines behind one interface, so that "my model beats FRAX by X (95% CI)" is one call.

Every baseline has ``fit`` (a no-op where nothing is learned), ``predict_score`` (a ranking
score for concordance, higher = higher risk), ``predict_risk(data, horizon)`` and
``predict_survival(data, times)``, like :class:`fracrisk.CoxPH` and :class:`fracrisk.DeepSurv`.

FRAX-style, three forms (what each is and is not is in its docstring):

* :class:`FraxColumn`: the official FRAX probability carried in the cohort (most faithful).
* :class:`FraxStyleRefit`: FRAX's structure and inputs refitted on the training cohort, with
  competing mortality.
* :class:`FraxStyleCalculator`: published gradients of risk and calibrated UK tables, no
  training data.

Classical: :class:`fracrisk.CoxPH` on any covariates, :class:`RandomSurvivalForest`,
:class:`GradientBoostingSurvival` (scikit-survival), :class:`KaplanMeierNull`.
"""

from fracrisk.baselines.classical import (
    GradientBoostingSurvival,
    KaplanMeierNull,
    RandomSurvivalForest,
)
from fracrisk.baselines.frax_calculator import FraxStyleCalculator, list_countries
from fracrisk.baselines.frax_column import FraxColumn
from fracrisk.baselines.frax_refit import FraxStyleRefit

__all__ = [
    "FraxColumn",
    "FraxStyleCalculator",
    "FraxStyleRefit",
    "GradientBoostingSurvival",
    "KaplanMeierNull",
    "RandomSurvivalForest",
    "list_countries",
]
