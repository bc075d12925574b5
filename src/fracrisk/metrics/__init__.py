"""Evaluation metrics for survival predictions (definitions written out in each docstring)."""

from fracrisk.metrics._checks import NoComparablePairsError
from fracrisk.metrics.concordance import harrell_c

__all__ = ["NoComparablePairsError", "harrell_c"]
