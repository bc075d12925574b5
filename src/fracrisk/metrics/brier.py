r"""Brier score and integrated Brier score with inverse probability of censoring weights."""

from __future__ import annotations

import numpy as np

from fracrisk._checks import check_survival_inputs, check_times, check_within_follow_up
from fracrisk.metrics._ipcw import censoring_only
from fracrisk.metrics.concordance import _censoring

__all__ = ["brier_score", "cumulative_incidence_brier_score", "integrated_brier_score"]


def _check_surv(surv, n: int, n_times: int) -> np.ndarray:
    s = np.asarray(
        surv.detach().cpu().numpy() if hasattr(surv, "detach") else surv, dtype=np.float64
    )
    if s.ndim == 1 and n_times == 1:
        s = s[:, None]
    if s.shape != (n, n_times):
        raise ValueError(f"Input 'surv' must have shape ({n}, {n_times}), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("Input 'surv' contains NaN or infinite values")
    if np.any((s < 0) | (s > 1)):
        raise ValueError("Input 'surv' must hold survival probabilities in [0, 1]")
    return s


def brier_score(time, event, surv, times, *, train_time=None, train_event=None) -> np.ndarray:
    r"""Time-dependent Brier score of predicted survival, with IPCW (Graf et al. 1999).

    .. math::
        BS(t) = \frac1n \sum_{i=1}^n \Big[
            \frac{\hat S_i(t)^2 \, \mathbb{1}[T_i \le t, \delta_i = 1]}{\hat G(T_i)}
          + \frac{(1 - \hat S_i(t))^2 \, \mathbb{1}[T_i > t]}{\hat G(t)} \Big]

    The average is over all *n* patients (as scikit-survival and torchsurv; pycox divides
    by the sum of weights). A patient censored exactly at *t* contributes nothing
    (scikit-survival's convention; SurvivalEVAL counts them as controls). Competing death
    (code 2) before *t* contributes nothing either, and counts as censoring in
    :math:`\hat G` (cause-specific score).

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years and event code.
    surv : array-like, shape = (n_patients, n_times)
        Predicted survival :math:`\hat S_i(t_k)` (a 1-D array if one time).
    times : array-like, shape = (n_times,)
        Strictly increasing times in ``[min(time), max(time))``.
    train_time, train_event : array-like, optional
        Outcomes for the reverse Kaplan-Meier :math:`\hat G`; default: the data evaluated.

    Returns
    -------
    ndarray, shape = (n_times,)
        :math:`BS(t_k)`, in [0, 1]; lower is better.

    Raises
    ------
    ValueError
        If :math:`\hat G` is 0 at a requested time or at the event time of a case.
        scikit-survival instead gives such a patient weight 0 (its issue #73).

    References
    ----------
    Graf E et al. (1999) Assessment and comparison of prognostic classification schemes
    for survival data. Stat Med 18:2529-2545.
    """
    grid = check_times(times)
    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    s = _check_surv(surv, len(t), len(grid))
    check_within_follow_up(grid, t)
    censoring = _censoring(t, e, train_time, train_event)
    g_t = censoring.inverse_weights(grid, np.ones(len(grid), dtype=bool), name="time")
    scores = np.empty(len(grid))
    for k, tk in enumerate(grid):
        case = (e == 1) & (t <= tk)
        w_case = censoring.inverse_weights(t, case, name="event time")
        control = t > tk
        scores[k] = np.mean(s[:, k] ** 2 * w_case + (1 - s[:, k]) ** 2 * control * g_t[k])
    return scores


def integrated_brier_score(time, event, surv, times, *, train_time=None, train_event=None) -> float:
    r"""Integrated Brier score: the trapezoid rule over ``times``, per year of range.

    .. math::
        IBS = \frac{1}{t_K - t_1} \sum_{k=2}^{K} \frac{BS(t_{k-1}) + BS(t_k)}{2}
              (t_k - t_{k-1})

    (scikit-survival's definition; pycox uses Simpson's rule). Needs at least two times.
    Arguments as :func:`brier_score`.
    """
    grid = check_times(times)
    if len(grid) < 2:
        raise ValueError("integrated_brier_score needs at least two times")
    scores = brier_score(time, event, surv, grid, train_time=train_time, train_event=train_event)
    area = np.sum((scores[1:] + scores[:-1]) / 2 * np.diff(grid))
    return float(area / (grid[-1] - grid[0]))


def cumulative_incidence_brier_score(
    time, event, incidence, times, *, cause: int = 1, train_time=None, train_event=None
) -> np.ndarray:
    r"""Brier score of a predicted cumulative incidence, with IPCW (competing risks).

    .. math::
        BS_c(t) = \frac1n \sum_{i=1}^n \hat W_i(t)
            \big(\mathbb{1}[T_i \le t, \delta_i = c] - \hat F_{c,i}(t)\big)^2,
        \qquad \hat W_i(t) = \frac{\mathbb{1}[T_i \le t, \delta_i \ne 0]}{\hat G(T_i)}
            + \frac{\mathbb{1}[T_i > t]}{\hat G(t)},

    with :math:`\hat G` the reverse Kaplan-Meier of censoring alone (a competing event is
    not censoring): a patient with a competing event by :math:`t` is a known
    non-case, weighted like a case. This is the score of Schoop, Beyersmann, Schumacher
    & Binder (2011) and of R's riskRegression/pec with ``cause=``. Without competing
    events it is :func:`brier_score` of :math:`S = 1 - F`. No Python peer computes it.

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years and event code (0 censored, 1, 2).
    incidence : array-like, shape = (n_patients, n_times)
        Predicted :math:`\hat F_{c,i}(t_k)` in [0, 1].
    times : array-like, shape = (n_times,)
        Strictly increasing times in ``[min(time), max(time))``.
    cause : {1, 2}, default 1
    train_time, train_event : array-like, optional
        Outcomes for :math:`\hat G`; default: the data evaluated.

    Returns
    -------
    ndarray, shape = (n_times,)
        :math:`BS_c(t_k)`; lower is better.

    References
    ----------
    Schoop R, Beyersmann J, Schumacher M, Binder H (2011) Quantifying the predictive
    accuracy of time-to-event models in the presence of competing risks. Biom J 53:88-112.
    """
    if isinstance(cause, bool) or cause not in (1, 2):
        raise ValueError(f"cause must be 1 or 2, got {cause!r}")
    grid = check_times(times)
    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    f = _check_surv(incidence, len(t), len(grid))
    check_within_follow_up(grid, t)
    censoring = censoring_only(t, e, train_time, train_event)
    g_t = censoring.inverse_weights(grid, np.ones(len(grid), dtype=bool), name="time")
    scores = np.empty(len(grid))
    for k, tk in enumerate(grid):
        observed = (e != 0) & (t <= tk)
        weight = censoring.inverse_weights(t, observed, name="event time") + (t > tk) * g_t[k]
        outcome = (observed & (e == cause)).astype(np.float64)
        scores[k] = np.mean(weight * (outcome - f[:, k]) ** 2)
    return scores
