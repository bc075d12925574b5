r"""Net reclassification improvement (NRI) of a new model over an old one, at a horizon."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fracrisk.metrics.calibration import _check_risk_at_horizon
from fracrisk.nonparametric import observed_risk

__all__ = ["NRIResult", "nri"]


@dataclass(frozen=True)
class NRIResult:
    """NRI among patients with and without the event by the horizon, and their sum."""

    events: float
    nonevents: float
    total: float
    kind: str
    n_up: int
    n_down: int


def nri(time, event, risk_old, risk_new, horizon: float, *, cutoffs=None) -> NRIResult:
    r"""Net reclassification improvement for censored data (Pencina et al. 2011).

    Patients move *up* when the new model places them higher (a higher risk category
    with ``cutoffs``; any higher risk without: the continuous NRI) and *down* when lower.
    Who has the event by *h* is unknown for censored patients, so the probabilities are
    estimated with Bayes' rule and the observed risk :math:`\hat F` (1 - Kaplan-Meier,
    or Aalen-Johansen with competing death) in each group:

    .. math::
        NRI_{e} = \frac{\hat F_{up} n_{up} - \hat F_{down} n_{down}}{\hat F \, n},
        \qquad
        NRI_{ne} = \frac{(1 - \hat F_{down}) n_{down} - (1 - \hat F_{up}) n_{up}}
                        {(1 - \hat F) \, n},

    and :math:`NRI = NRI_e + NRI_{ne}` (the continuous NRI ranges over [-2, 2]).

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years; event code.
    risk_old, risk_new : array-like, shape = (n_patients,)
        Predicted risks by the horizon from the reference and the new model.
    horizon : float
        Years.
    cutoffs : sequence of float, optional
        Risk category boundaries for the categorical NRI (e.g. ``[0.1, 0.2]``); without
        them, the continuous NRI.

    References
    ----------
    Pencina MJ, D'Agostino RB Sr, Steyerberg EW (2011) Extensions of net reclassification
    improvement calculations to measure usefulness of new biomarkers. Stat Med 30:11-21.
    """
    t, e, old = _check_risk_at_horizon(time, event, risk_old, horizon)
    _, _, new = _check_risk_at_horizon(time, event, risk_new, horizon)
    if cutoffs is None:
        up, down, kind = new > old, new < old, "continuous"
    else:
        edges = np.asarray(cutoffs, dtype=np.float64)
        if np.any(np.diff(edges) <= 0) or np.any((edges <= 0) | (edges >= 1)):
            raise ValueError("cutoffs must be strictly increasing risks in (0, 1)")
        c_old, c_new = np.digitize(old, edges), np.digitize(new, edges)
        up, down, kind = c_new > c_old, c_new < c_old, "categorical"
    n = len(t)
    overall = observed_risk(t, e, horizon)
    if not 0 < overall < 1:
        raise ValueError(
            f"observed risk by the horizon is {overall:g}: with no non-events (or "
            "no events) the NRI is undefined"
        )

    def group_risk(mask):
        if not mask.any():
            return 0.0
        return observed_risk(t[mask], e[mask], horizon, carry_forward=True)

    f_up, f_down = group_risk(up), group_risk(down)
    n_up, n_down = int(up.sum()), int(down.sum())
    events = (f_up * n_up - f_down * n_down) / (overall * n)
    nonevents = ((1 - f_down) * n_down - (1 - f_up) * n_up) / ((1 - overall) * n)
    return NRIResult(float(events), float(nonevents), float(events + nonevents), kind, n_up, n_down)
