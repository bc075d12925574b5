"""Evaluation metrics for survival predictions (definitions written out in each docstring).

Conventions: a higher ``risk`` means higher risk; times are in years; ``event`` is 0/1, or
0/1/2 with 2 meaning competing death. Where inverse probability of censoring weights are
needed, the censoring distribution comes from ``train_time``/``train_event`` when given
(reverse Kaplan-Meier, as scikit-survival does), else from the data evaluated. Which peer
library shares each definition is in ``docs/metrics.md``.
"""

from fracrisk.exceptions import NoComparablePairsError
from fracrisk.metrics.auc import competing_risks_auc, cumulative_dynamic_auc
from fracrisk.metrics.bootstrap import BootstrapResult, ComparisonResult, bootstrap, compare
from fracrisk.metrics.brier import (
    brier_score,
    cumulative_incidence_brier_score,
    integrated_brier_score,
)
from fracrisk.metrics.calibration import (
    CalibrationResult,
    DCalibrationResult,
    calibration,
    d_calibration,
)
from fracrisk.metrics.concordance import (
    antolini_c,
    concordance_counts,
    harrell_c,
    uno_c,
    wolbers_c,
)
from fracrisk.metrics.decision import net_benefit
from fracrisk.metrics.reclassification import NRIResult, nri

__all__ = [
    "BootstrapResult",
    "CalibrationResult",
    "ComparisonResult",
    "DCalibrationResult",
    "NRIResult",
    "NoComparablePairsError",
    "antolini_c",
    "bootstrap",
    "brier_score",
    "calibration",
    "compare",
    "competing_risks_auc",
    "concordance_counts",
    "cumulative_dynamic_auc",
    "cumulative_incidence_brier_score",
    "d_calibration",
    "harrell_c",
    "integrated_brier_score",
    "net_benefit",
    "nri",
    "uno_c",
    "wolbers_c",
]
