r"""Cumulative incidence from two cause-specific Cox models (fracture and death).

.. math::
    \hat P(\tau \mid x) = \sum_{t_k \le \tau} \exp\big(-\hat H_F(t_{k-1} \mid x)
        - \hat H_D(t_{k-1} \mid x)\big) \, \Delta \hat H_F(t_k \mid x),
    \qquad \hat H_c(t \mid x) = \hat H_{0c}(t)\, e^{\eta_c(x)},

the plug-in (Aalen-Johansen type) estimator over the union of both models' event times.
"""

from __future__ import annotations

import numpy as np

from fracrisk.baseline_hazard import BreslowBaselineHazard

__all__ = ["cumulative_incidence"]


def cumulative_incidence(
    fracture: BreslowBaselineHazard,
    death: BreslowBaselineHazard,
    eta_fracture: np.ndarray,
    eta_death: np.ndarray,
    times,
    *,
    chunk: int = 2048,
) -> np.ndarray:
    """Probability of fracture by each time with death competing, shape (n, n_times).

    Patients are processed in chunks, so memory is ``chunk`` x (number of event times).
    """
    grid = np.asarray(times, dtype=np.float64)
    jumps = np.union1d(fracture.event_times_, death.event_times_)
    jumps = jumps[jumps <= grid.max()]
    h_f = fracture.cumulative_hazard(jumps)
    h_d = death.cumulative_hazard(jumps)
    d_f = np.diff(np.concatenate([[0.0], h_f]))
    before_f = np.concatenate([[0.0], h_f[:-1]])
    before_d = np.concatenate([[0.0], h_d[:-1]])
    position = np.searchsorted(jumps, grid, side="right")
    out = np.empty((len(eta_fracture), len(grid)))
    for start in range(0, len(eta_fracture), chunk):
        rf = np.exp(eta_fracture[start : start + chunk])[:, None]
        rd = np.exp(eta_death[start : start + chunk])[:, None]
        increments = np.exp(-before_f[None, :] * rf - before_d[None, :] * rd) * d_f * rf
        cif = np.concatenate([np.zeros((len(rf), 1)), np.cumsum(increments, axis=1)], axis=1)
        out[start : start + chunk] = cif[:, position]
    return out
