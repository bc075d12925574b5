r"""Cumulative incidence from two cause-specific Cox models (fracture and death).

.. math::
    \hat P(\tau \mid x) = \sum_{t_k \le \tau} \exp\big(-\hat H_F(t_{k-1} \mid x)
        - \hat H_D(t_{k-1} \mid x)\big) \, \frac{\Delta \hat H_F(t_k \mid x)}{\Delta_k}
        \big(1 - e^{-\Delta_k}\big),
    \qquad \Delta_k = \Delta \hat H_F(t_k \mid x) + \Delta \hat H_D(t_k \mid x),

with :math:`\hat H_c(t \mid x) = \hat H_{0c}(t)\, e^{\eta_c(x)}`, over the union of both
models' event times. Each step is the exact probability of a fracture in
:math:`(t_{k-1}, t_k]` when both hazards are constant there; for small steps it is the
plug-in (Aalen-Johansen type) increment :math:`S(t_{k-1})\,\Delta \hat H_F`. Unlike the
plug-in sum, it can never exceed :math:`1 - S(\tau)`, however large the hazard ratio
(a patient far outside the training data), so the cumulative incidence stays in [0, 1].
"""

from __future__ import annotations

import numpy as np

from fracrisk.baseline_hazard import BreslowBaselineHazard

__all__ = ["cumulative_incidence", "pair_state", "restore_pair"]

#: The attributes holding the two cause-specific Cox models.
_PAIR = ("fracture_model_", "death_model_")


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
    d_d = np.diff(np.concatenate([[0.0], h_d]))
    before_f = np.concatenate([[0.0], h_f[:-1]])
    before_d = np.concatenate([[0.0], h_d[:-1]])
    position = np.searchsorted(jumps, grid, side="right")
    out = np.empty((len(eta_fracture), len(grid)))
    for start in range(0, len(eta_fracture), chunk):
        rf = np.exp(eta_fracture[start : start + chunk])[:, None]
        rd = np.exp(eta_death[start : start + chunk])[:, None]
        step_f, step = d_f * rf, d_f * rf + d_d * rd
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(step > 0, -np.expm1(-step) / step, 1.0)
        survived = np.exp(-before_f[None, :] * rf - before_d[None, :] * rd)
        increments = survived * step_f * share
        cif = np.concatenate([np.zeros((len(rf), 1)), np.cumsum(increments, axis=1)], axis=1)
        out[start : start + chunk] = cif[:, position]
    return out


def pair_state(owner) -> tuple[dict, dict]:
    """The fracture and death Cox models of ``owner`` as saved state and prefixed tensors."""
    state, tensors = {}, {}
    for name in _PAIR:
        model = getattr(owner, name)
        sub_state, sub_tensors = model._state()
        state[name] = {"params": model.get_params(), "state": sub_state}
        tensors.update({f"{name}.{k}": v for k, v in sub_tensors.items()})
    return state, tensors


def restore_pair(owner, state: dict, tensors: dict) -> None:
    """Set the Cox models saved by :func:`pair_state` back on ``owner``."""
    from fracrisk.models._base import _prefixed
    from fracrisk.models.coxph import CoxPH

    for name, saved in state.items():
        if name not in _PAIR:
            raise ValueError(f"unexpected saved model {name!r}")
        setattr(
            owner,
            name,
            CoxPH._from_state(saved["params"], saved["state"], _prefixed(tensors, name)),
        )
