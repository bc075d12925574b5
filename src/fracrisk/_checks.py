"""Shared validation of survival inputs (time, event, scores, time grids), naming the argument."""

from __future__ import annotations

import numpy as np

from fracrisk.exceptions import NoComparablePairsError

__all__ = [
    "NoComparablePairsError",
    "check_survival_inputs",
    "check_times",
    "check_train",
    "check_within_follow_up",
]


def _as_array(name: str, values, dtype) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"Input {name!r} must be one-dimensional, got shape {array.shape}")
    try:
        return array.astype(dtype, copy=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"Input {name!r} must be numeric") from err


def _check_outcome(time, event, names=("time", "event")) -> tuple[np.ndarray, np.ndarray]:
    t = _as_array(names[0], time, np.float64)
    e = _as_array(names[1], event, np.float64)
    if len(t) != len(e):
        raise ValueError(
            f"Inputs {names[0]!r} ({len(t)}) and {names[1]!r} ({len(e)}) must have the same length"
        )
    bad = ~np.isfinite(t)
    if bad.any():
        raise ValueError(
            f"Input {names[0]!r} contains NaN or infinite values at positions "
            f"{np.flatnonzero(bad)[:5].tolist()}"
        )
    if np.any(t < 0):
        raise ValueError(
            f"Input {names[0]!r} must be non-negative; positions "
            f"{np.flatnonzero(t < 0)[:5].tolist()}"
        )
    bad = ~np.isin(e, (0, 1, 2))
    if bad.any():
        raise ValueError(
            f"Input {names[1]!r} must hold 0 (censored), 1 (event) or 2 "
            f"(competing event); positions {np.flatnonzero(bad)[:5].tolist()}"
        )
    if len(t) == 0:
        raise ValueError(f"Input {names[0]!r} is empty")
    return t, e.astype(np.int64)


def check_survival_inputs(time, event, risk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``time`` (years, finite, >= 0), ``event`` (0/1/2) and ``risk`` (finite).

    Returns float64 time, int64 event and float64 risk arrays of one length. Competing
    events (code 2) are returned as they are; each metric documents how it treats them.
    """
    t, e = _check_outcome(time, event)
    r = _as_array("risk", risk, np.float64)
    if len(r) != len(t):
        raise ValueError(
            f"Inputs 'time' ({len(t)}), 'event' ({len(e)}) and 'risk' "
            f"({len(r)}) must have the same length"
        )
    bad = ~np.isfinite(r)
    if bad.any():
        raise ValueError(
            f"Input 'risk' contains NaN or infinite values at positions "
            f"{np.flatnonzero(bad)[:5].tolist()}"
        )
    return t, e, r


def check_train(train_time, train_event) -> tuple[np.ndarray, np.ndarray]:
    """Validate the outcomes from which a censoring distribution is estimated."""
    return _check_outcome(train_time, train_event, ("train_time", "train_event"))


def check_times(times, *, name: str = "times") -> np.ndarray:
    """Validate a grid of evaluation times: finite, >= 0, strictly increasing."""
    grid = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"Input {name!r} must be a non-empty 1-D array of times")
    if not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"Input {name!r} must hold finite, non-negative times in years")
    if np.any(np.diff(grid) <= 0):
        raise ValueError(f"Input {name!r} must be strictly increasing")
    return grid


def check_within_follow_up(grid: np.ndarray, time: np.ndarray, *, name: str = "times") -> None:
    """Times must lie in [min follow-up, max follow-up) of the evaluated data.

    Beyond the last follow-up nobody is observed, so cases and controls are undefined
    (scikit-survival applies the same rule).
    """
    lo, hi = float(time.min()), float(time.max())
    bad = (grid < lo) | (grid >= hi)
    if bad.any():
        raise ValueError(
            f"Input {name!r} must lie within the follow-up of the data, "
            f"[{lo:g}, {hi:g}) years; got {grid[bad][:5].tolist()}"
        )
