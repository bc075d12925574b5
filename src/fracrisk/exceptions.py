"""Exceptions and warning categories raised by fracrisk.

Every error raised on user input is a :class:`ValueError` (or a subclass), so that
``except ValueError`` keeps working for callers that do not know fracrisk's classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CohortValidationError",
    "DataWarning",
    "DeviceUnavailableError",
    "FracriskWarning",
    "NoComparablePairsError",
    "NoUsableImagesError",
    "NotFittedError",
    "OutOfRangeWarning",
    "PredictionImputationWarning",
    "ValidationProblem",
]


class FracriskWarning(UserWarning):
    """Base class of every warning fracrisk emits."""


class DataWarning(FracriskWarning):
    """Something in the data was changed or is suspicious (rows dropped, values imputed, ...)."""


class OutOfRangeWarning(DataWarning):
    """A value at prediction lies outside what the model saw in training (an extrapolation).

    Turn it into an error with ``warnings.simplefilter("error", OutOfRangeWarning)``.
    """


class PredictionImputationWarning(DataWarning):
    """Missing covariates at prediction were filled with the training values."""


class NoComparablePairsError(ValueError):
    """No pair of patients can be compared (e.g. every patient is censored)."""


class NoUsableImagesError(ValueError):
    """Every row of an image dataset failed; ``failures`` lists each row and why."""

    def __init__(self, message: str, failures: list) -> None:
        super().__init__(message)
        self.failures = list(failures)


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``."""


@dataclass(frozen=True)
class ValidationProblem:
    """One problem found in a table: which column, which rows, and why.

    Attributes
    ----------
    column : str
        Name of the offending column.
    rows : tuple
        Index labels of the offending rows (all of them, not only the first few).
    reason : str
        What is wrong, in words, e.g. ``"time must be > 0 years"``.
    values : tuple
        The offending values, aligned with ``rows``.
    ids : tuple or None
        Patient ids of the offending rows, when the table has an id column.
    """

    column: str
    rows: tuple[Any, ...]
    reason: str
    values: tuple[Any, ...] = ()
    ids: tuple[Any, ...] | None = None

    def describe(self, max_rows: int = 5) -> str:
        """One line naming the column, the rows (and ids), the reason and the bad values."""
        n = len(self.rows)
        shown = ", ".join(repr(r) for r in self.rows[:max_rows])
        more = f" and {n - max_rows} more" if n > max_rows else ""
        text = f"column {self.column!r}"
        if n:  # a problem of the whole column (absent, misnamed) names no row
            text += f", row{'s' if n != 1 else ''} [{shown}{more}]"
        if self.ids is not None:
            text += f" (patient_id {', '.join(repr(i) for i in self.ids[:max_rows])}{more})"
        text += f": {self.reason}"
        if self.values:
            shown_values = (
                repr(v.item() if hasattr(v, "item") else v) for v in self.values[:max_rows]
            )
            text += f"; got {', '.join(shown_values)}{more}"
        return text


class CohortValidationError(ValueError):
    """A cohort table failed validation; ``problems`` lists every problem found.

    All problems are collected before raising, so one run reports everything that
    needs fixing rather than the first problem only.
    """

    def __init__(self, problems: list[ValidationProblem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"{len(self.problems)} problem(s) found{where}:"]
        lines += [f"  - {p.describe()}" for p in self.problems]
        super().__init__("\n".join(lines))


class DeviceUnavailableError(ValueError):
    """A training or prediction setting asks for a device (e.g. a GPU) that is not there."""
