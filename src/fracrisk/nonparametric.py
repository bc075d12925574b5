r"""Non-parametric estimators: Kaplan-Meier survival and Aalen-Johansen cumulative incidence.

The Kaplan-Meier estimator is

.. math::
    \hat S(t) = \prod_{k:\, t_k \le t} \Big(1 - \frac{d_k}{n_k}\Big),

with :math:`t_k` the distinct event times, :math:`d_k` the events at :math:`t_k` and
:math:`n_k = \#\{j : T_j \ge t_k\}` the number at risk (a patient censored at
:math:`t_k` is still at risk then).
"""

from __future__ import annotations

import numpy as np

from fracrisk._checks import check_survival_inputs

__all__ = ["aalen_johansen", "aalen_johansen_interval", "kaplan_meier", "observed_risk"]


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


def aalen_johansen(time, event, *, times) -> np.ndarray:
    r"""Aalen-Johansen cumulative incidence of the event coded 1, with code 2 competing.

    .. math::
        \hat F_1(t) = \sum_{k:\, t_k \le t} \hat S(t_k-) \, \frac{d_{1k}}{n_k},

    with :math:`\hat S` the Kaplan-Meier estimate of being free of *any* event (codes 1
    and 2), :math:`d_{1k}` the events of code 1 at :math:`t_k` and :math:`n_k` at risk.
    Unlike :math:`1 - \hat S_{KM}` with competing events censored, it does not
    overstate the risk when death removes patients before they can fracture.

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years; event code 0, 1 or 2.
    times : array-like
        Evaluation times in years.

    Returns
    -------
    ndarray
        :math:`\hat F_1` at ``times``.

    Examples
    --------
    >>> aalen_johansen([1.0, 2.0, 3.0, 4.0], [2, 1, 0, 1], times=[2.5, 4.0]).round(4).tolist()
    [0.25, 0.75]
    """
    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    distinct, inverse = np.unique(t, return_inverse=True)
    d1 = np.bincount(inverse, weights=e == 1, minlength=len(distinct))
    d_any = np.bincount(inverse, weights=e != 0, minlength=len(distinct))
    leaving = np.bincount(inverse, minlength=len(distinct))
    at_risk = len(t) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    surv_after = np.cumprod(1.0 - d_any / at_risk)
    surv_before = np.concatenate([[1.0], surv_after[:-1]])
    cif = np.cumsum(surv_before * d1 / at_risk)
    index = np.searchsorted(distinct, np.asarray(times, dtype=np.float64), side="right")
    return np.concatenate([[0.0], cif])[index]


def aalen_johansen_interval(
    time, event, horizon: float, *, alpha: float = 0.05
) -> tuple[float, float, float]:
    r"""Aalen-Johansen incidence of code 1 by ``horizon`` years with a :math:`1-\alpha` interval.

    The variance is the Greenwood-type delta-method estimate (Collett, *Modelling Survival
    Data in Medical Research*, 3rd ed., p. 411; also lifelines' ``AalenJohansenFitter``):

    .. math::
        \widehat{\mathrm{Var}}\,\hat F_1(t) = \sum_{t_k \le t} \Big[
        (\hat F_1(t) - \hat F_1(t_k))^2 \frac{d_k}{n_k (n_k - d_k)}
        + \hat S(t_k-)^2 \frac{d_{1k} (n_k - d_{1k})}{n_k^3}
        - 2 (\hat F_1(t) - \hat F_1(t_k)) \hat S(t_k-) \frac{d_{1k}}{n_k^2} \Big],

    with :math:`d_k` events of either cause. The interval is built on the
    :math:`\log(-\log \hat F_1)` scale, so it stays inside (0, 1). Where no event of code 1
    happened by ``horizon`` the estimate is 0 and the interval is (0, nan): a variance of
    zero would claim certainty the data do not give.

    Returns
    -------
    (estimate, lower, upper) : tuple of float
    """
    from scipy.stats import norm

    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    distinct, inverse = np.unique(t, return_inverse=True)
    d1 = np.bincount(inverse, weights=e == 1, minlength=len(distinct))
    d_any = np.bincount(inverse, weights=e != 0, minlength=len(distinct))
    leaving = np.bincount(inverse, minlength=len(distinct))
    n = (len(t) - np.concatenate([[0], np.cumsum(leaving)[:-1]])).astype(np.float64)
    keep = distinct <= horizon
    d1, d_any, n = d1[keep], d_any[keep], n[keep]
    surv_before = np.concatenate([[1.0], np.cumprod(1.0 - d_any / n)[:-1]])
    cif = np.cumsum(surv_before * d1 / n)
    estimate = float(cif[-1]) if len(cif) else 0.0
    if estimate <= 0.0:
        return 0.0, 0.0, float("nan")
    gap = estimate - cif
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.where(d_any > 0, d_any / (n * (n - d_any)), 0.0)
    variance = float(
        np.sum(gap**2 * greenwood)
        + np.sum(surv_before**2 * d1 * (n - d1) / n**3)
        - 2.0 * np.sum(gap * surv_before * d1 / n**2)
    )
    if estimate >= 1.0 or not np.isfinite(variance):
        return estimate, float("nan"), float("nan")
    z = float(norm.ppf(1.0 - alpha / 2.0))
    se = np.sqrt(max(variance, 0.0)) / (estimate * abs(np.log(estimate)))
    centre = np.log(-np.log(estimate))
    return (
        estimate,
        float(np.exp(-np.exp(centre + z * se))),
        float(np.exp(-np.exp(centre - z * se))),
    )


def observed_risk(time, event, horizon: float, *, carry_forward: bool = False) -> float:
    """Observed risk of the event coded 1 by ``horizon`` years.

    Aalen-Johansen when any competing event (code 2) is present, else
    ``1 - Kaplan-Meier``. The horizon must not exceed the last follow-up time, unless
    ``carry_forward`` (used for subgroups of a sample that reaches the horizon): then the
    estimate after the subgroup's last follow-up is its last value.
    """
    t = np.asarray(time, dtype=np.float64)
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon must be a positive number of years, got {horizon!r}")
    if horizon > t.max() and not carry_forward:
        raise ValueError(
            f"horizon {horizon:g} is beyond the last follow-up ({t.max():g} years): "
            "the observed risk is unknown there"
        )
    e = np.asarray(event)
    if np.any(e == 2):
        return float(aalen_johansen(t, e, times=[horizon])[0])
    return float(1.0 - kaplan_meier(t, e, times=[horizon])[1][0])
