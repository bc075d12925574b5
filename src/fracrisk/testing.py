"""Assertions shared by fracrisk's tests and useful in users' own tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["assert_valid_survival"]


def assert_valid_survival(surv: pd.DataFrame | np.ndarray, *, atol: float = 0.0) -> None:
    """Assert that survival curves (patients x increasing times) are valid.

    Every value is finite and in [0, 1], and every row is non-increasing in time (up to
    ``atol``). Raises :class:`AssertionError` naming the first offending patient.
    """
    values = np.asarray(surv, dtype=np.float64)
    if values.ndim != 2:
        raise AssertionError(f"survival must be 2-D (patients x times), got shape {values.shape}")
    if isinstance(surv, pd.DataFrame):
        times = np.asarray(surv.columns, dtype=np.float64)
        if np.any(np.diff(times) <= 0):
            raise AssertionError("survival columns (times) must be strictly increasing")
    rows = surv.index if isinstance(surv, pd.DataFrame) else np.arange(len(values))
    bad = ~np.isfinite(values).all(1) | (values < -atol).any(1) | (values > 1 + atol).any(1)
    if bad.any():
        raise AssertionError(f"survival outside [0, 1] or not finite for patient {rows[bad][0]!r}")
    rising = (np.diff(values, axis=1) > atol).any(1)
    if rising.any():
        raise AssertionError(f"survival increases over time for patient {rows[rising][0]!r}")
