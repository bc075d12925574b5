r"""Decision curves: the net benefit of treating patients whose predicted risk is high."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fracrisk.metrics.calibration import _check_risk_at_horizon
from fracrisk.nonparametric import observed_risk

__all__ = ["net_benefit"]


def net_benefit(time, event, risk_at_horizon, horizon: float, thresholds) -> pd.DataFrame:
    r"""Decision curve of a risk model at ``horizon`` years (Vickers et al. 2008).

    Treating everyone whose predicted risk is at least the threshold :math:`p_t` has net
    benefit

    .. math::
        NB(p_t) = \frac{TP}{n} - \frac{FP}{n} \, \frac{p_t}{1 - p_t},
        \qquad TP = \hat F_+(h) \, n_+, \quad FP = (1 - \hat F_+(h)) \, n_+,

    where :math:`n_+` patients are above the threshold and :math:`\hat F_+(h)` is their
    observed risk by *h* (1 - Kaplan-Meier, or Aalen-Johansen with competing death), so
    censoring is handled without dropping anyone. The odds :math:`p_t / (1 - p_t)` weigh
    a false positive against a true positive. *Treat all* uses every patient; *treat
    none* is 0. A model is useful at :math:`p_t` where it beats both.

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years; event code 0, 1 or 2.
    risk_at_horizon : array-like, shape = (n_patients,)
        Predicted risk by the horizon, in [0, 1].
    horizon : float
        Years, at most the last follow-up.
    thresholds : array-like
        Risk thresholds in (0, 1).

    Returns
    -------
    pandas.DataFrame
        Columns ``threshold``, ``model``, ``treat_all``, ``treat_none`` and ``n_treated``.

    References
    ----------
    Vickers AJ, Cronin AM, Elkin EB, Gonen M (2008) Extensions to decision curve analysis,
    a novel method for evaluating diagnostic tests, prediction models and molecular
    markers. BMC Med Inform Decis Mak 8:53.
    """
    t, e, p = _check_risk_at_horizon(time, event, risk_at_horizon, horizon)
    grid = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if np.any((grid <= 0) | (grid >= 1)) or not np.all(np.isfinite(grid)):
        raise ValueError("thresholds must lie strictly between 0 and 1")
    n = len(t)
    overall = observed_risk(t, e, horizon)
    rows = []
    for pt in grid:
        odds = pt / (1 - pt)
        treated = p >= pt
        n_treated = int(treated.sum())
        if n_treated == 0:
            model = 0.0
        else:
            tt = t[treated]
            risk = observed_risk(tt, e[treated], horizon, carry_forward=True)
            model = risk * n_treated / n - (1 - risk) * n_treated / n * odds
        rows.append(
            {
                "threshold": pt,
                "model": model,
                "treat_all": overall - (1 - overall) * odds,
                "treat_none": 0.0,
                "n_treated": n_treated,
            }
        )
    return pd.DataFrame(rows)
