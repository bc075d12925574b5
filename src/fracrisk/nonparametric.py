r"""Non-parametric estimators: Kaplan-Meier survival.

The Kaplan-Meier estimator is

.. math::
    \hat S(t) = \prod_{k:\, t_k \le t} \Big(1 - \frac{d_k}{n_k}\Big),

with :math:`t_k` the distinct event times, :math:`d_k` the events at :math:`t_k` and
:math:`n_k = \#\{j : T_j \ge t_k\}` the number at risk (a patient censored at
:math:`t_k` is still at risk then).
"""

from __future__ import annotations

import numpy as np

from fracrisk.metrics._checks import check_survival_inputs

__all__ = ["kaplan_meier"]


def kaplan_meier(time, event, *, times=None) -> tuple[np.ndarray, np.ndarray]:
    r"""Kaplan-Meier survival of the event coded 1 (codes 0 and 2 count as censoring).

    Parameters
    ----------
    time : array-like, shape = (n_patients,)
        Follow-up time in years.
    event : array-like, shape = (n_patients,)
        Event code: 1 event, 0 censored, 2 competing event (treated as censored, so
        :math:`1 - \hat S` is the cause-specific, not the absolute, risk).
    times : array-like, optional
        Where to evaluate the (right-continuous) step function; by default at the
        distinct event times.

    Returns
    -------
    times : ndarray
        Evaluation times.
    survival : ndarray
        :math:`\hat S` at ``times``.

    Examples
    --------
    >>> t, s = kaplan_meier([1.0, 2.0, 2.0, 3.0], [1, 1, 0, 0])
    >>> t.tolist(), s.round(4).tolist()
    ([1.0, 2.0], [0.75, 0.5])
    """
    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    is_event = e == 1
    distinct, inverse = np.unique(t, return_inverse=True)
    deaths = np.bincount(inverse, weights=is_event, minlength=len(distinct))
    leaving = np.bincount(inverse, minlength=len(distinct))
    at_risk = len(t) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    has_event = deaths > 0
    event_times = distinct[has_event]
    survival = np.cumprod(1.0 - deaths[has_event] / at_risk[has_event])
    if times is None:
        return event_times, survival
    query = np.asarray(times, dtype=np.float64)
    index = np.searchsorted(event_times, query, side="right")
    return query, np.concatenate([[1.0], survival])[index]
