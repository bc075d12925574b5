"""What a cohort does with rows whose image cannot be used: stop, or skip and say so.

:class:`FailurePolicy` is the one place that decides. ``on_error="raise"`` stops at the
first bad row with an :class:`~fracrisk.imaging.ImageReadError` naming the file, the row,
the patient and the column; ``on_error="skip"`` leaves the row out, keeps an
:class:`ImageFailure` for it and warns once with a :class:`~fracrisk.exceptions.DataWarning`
summarising them: a row is never dropped silently. When every row failed,
:class:`~fracrisk.exceptions.NoUsableImagesError` carries the failures.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fracrisk.exceptions import DataWarning, NoUsableImagesError
from fracrisk.imaging.io import ImageReadError

__all__ = ["ON_ERROR", "FailurePolicy", "ImageFailure", "failure_table"]

ON_ERROR = ("raise", "skip")
_SHOWN = 3  # failures quoted in the summary warning


@dataclass(frozen=True)
class ImageFailure:
    """A row left out (``on_error="skip"``) or stopped at (``"raise"``), and why.

    Attributes
    ----------
    row : object
        Row label in the cohort table.
    patient_id : object
        The patient's id (the row label when the table has no id column).
    column : str
        The column at fault: the image path column, or the keypoint column(s).
    path : str
        The image file (or directory) as given in the table.
    reason : str
        What is wrong, in words.
    """

    row: Any
    patient_id: Any
    column: str
    path: str
    reason: str

    def describe(self) -> str:
        """One line: patient, row, column, file and reason."""
        row = self.row.item() if isinstance(self.row, np.generic) else self.row
        return (
            f"patient_id {self.patient_id!r} (row {row!r}), column {self.column!r}, "
            f"file {self.path}: {self.reason}"
        )


def failure_table(failures: Sequence[ImageFailure]) -> pd.DataFrame:
    """Failed rows as a table: ``row``, ``patient_id``, ``column``, ``path``, ``reason``.

    What :meth:`ImageCohortDataset.failure_report` gives, and what to write when every row
    failed (:class:`~fracrisk.exceptions.NoUsableImagesError` carries the failures).
    """
    return pd.DataFrame(
        [vars(f) for f in failures], columns=["row", "patient_id", "column", "path", "reason"]
    )


class FailurePolicy:
    """Collects the failures of one dataset's rows and applies ``on_error`` to them.

    Parameters
    ----------
    on_error : {"raise", "skip"}
        Stop at the first bad row, or leave bad rows out and report them.
    """

    def __init__(self, on_error: str = "raise") -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.failures: dict[int, ImageFailure] = {}

    @property
    def stops(self) -> bool:
        """True when the first failure ends the preparation."""
        return self.on_error == "raise"

    def add(self, position: int, failure: ImageFailure) -> None:
        """Record the failure of the row at ``position`` (table order)."""
        self.failures.setdefault(position, failure)

    def refuse_table_problems(self, problems: Sequence[tuple[int, ImageFailure]], what: str):
        """Problems found in the table itself (before any image is read): stop or record."""
        if problems and self.stops:
            lines = "\n".join(f"  - {f.describe()}" for _, f in problems)
            raise ValueError(
                f"{len(problems)} row(s) with {what} (pass on_error='skip' to leave them "
                f"out):\n{lines}"
            )
        for position, failure in problems:
            self.add(position, failure)

    def raise_first(self, failure: ImageFailure) -> None:
        """The error that stops a dataset at ``failure`` (``on_error="raise"``)."""
        f = failure
        raise ImageReadError(
            f.path,
            f"{f.reason} (row {f.row!r}, patient_id {f.patient_id!r}, column {f.column!r}; "
            "pass on_error='skip' to leave such rows out)",
        )

    def finish(self, n_rows: int, kind: str, *, stacklevel: int = 3) -> list[ImageFailure]:
        """Warn about the rows left out (if any); refuse a dataset with no row left.

        Returns the failures in table order.
        """
        failures = [self.failures[p] for p in sorted(self.failures)]
        if failures:
            shown = "; ".join(f.describe() for f in failures[:_SHOWN])
            more = f"; and {len(failures) - _SHOWN} more" if len(failures) > _SHOWN else ""
            warnings.warn(
                f"{len(failures)} of {n_rows} rows left out of the {kind} dataset (see "
                f"dataset.failures / failure_report()): {shown}{more}",
                DataWarning,
                stacklevel=stacklevel,
            )
        if len(failures) == n_rows:
            raise NoUsableImagesError(
                f"no usable row: all {n_rows} rows of the cohort failed; see the warning above "
                "and the error's .failures",
                failures,
            )
        return failures
