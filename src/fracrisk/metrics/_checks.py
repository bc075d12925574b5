"""Shared validation of metric inputs: one place, messages that name the argument."""

from __future__ import annotations

import numpy as np

__all__ = ["NoComparablePairsError", "check_survival_inputs"]


class NoComparablePairsError(ValueError):
    """No pair of patients can be compared (e.g. every patient is censored)."""


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


def check_survival_inputs(time, event, risk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate ``time`` (years, finite, >= 0), ``event`` (0/1/2) and ``risk`` (finite).

    Returns float64 time, int64 event and float64 risk arrays of one length. Competing
    events (code 2) are returned as they are; each metric documents how it treats them.
    """
    t = _as_array("time", time, np.float64)
    e_raw = _as_array("event", event, np.float64)
    r = _as_array("risk", risk, np.float64)
    if not (len(t) == len(e_raw) == len(r)):
        raise ValueError(
            f"Inputs 'time' ({len(t)}), 'event' ({len(e_raw)}) and 'risk' "
            f"({len(r)}) must have the same length"
        )
    for name, values in (("time", t), ("risk", r)):
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise ValueError(f"Input {name!r} contains NaN or infinite values at positions {rows}")
    if np.any(t < 0):
        raise ValueError(
            f"Input 'time' must be non-negative; positions {np.flatnonzero(t < 0)[:5].tolist()}"
        )
    bad = ~np.isin(e_raw, (0, 1, 2))
    if bad.any():
        raise ValueError(
            f"Input 'event' must hold 0 (censored), 1 (event) or 2 (competing "
            f"event); positions {np.flatnonzero(bad)[:5].tolist()}"
        )
    return t, e_raw.astype(np.int64), r
