"""Saved state of the two cause-specific Cox models (fracture and death) of a baseline.

:func:`cumulative_incidence` (combining them with death competing) lives in
:mod:`fracrisk.baseline_hazard`, beside the Breslow estimator it uses.
"""

from __future__ import annotations

from fracrisk.baseline_hazard import cumulative_incidence

__all__ = ["cumulative_incidence", "pair_state", "restore_pair"]

#: The attributes holding the two cause-specific Cox models.
_PAIR = ("fracture_model_", "death_model_")


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
