r"""Inverse probability of censoring weights (IPCW).

The censoring survival function :math:`G(t) = P(C > t)` is the reverse Kaplan-Meier
estimator, as in scikit-survival's ``CensoringDistributionEstimator``:

.. math::
    \hat G(t) = \prod_{u \le t} \Big(1 - \frac{c_u}{n_u - d_u}\Big),

over the distinct observed times :math:`u`, with :math:`c_u` censorings, :math:`d_u`
events (of any cause) and :math:`n_u` at risk at :math:`u`. At a tied time, events are
taken to happen before censorings. :math:`\hat G` is a right-continuous step function:
:math:`\hat G(T_i)` includes the censorings at :math:`T_i` (pycox instead uses
:math:`\hat G(T_i-)`).

"Censoring" is event code 0 and, for the cause-specific metrics of fracrisk, code 2
(competing death): every metric states which it uses.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CensoringSurvival", "censoring_only"]


class CensoringSurvival:
    """Reverse Kaplan-Meier estimate of :math:`G(t) = P(C > t)`.

    Parameters
    ----------
    time : ndarray, shape = (n,)
        Follow-up times in years.
    censored : ndarray of bool, shape = (n,)
        True where the follow-up ended by censoring.
    freq : ndarray, shape = (n,), optional
        Frequency weights (how often each patient occurs, e.g. in a bootstrap resample).
    """

    def __init__(
        self, time: np.ndarray, censored: np.ndarray, freq: np.ndarray | None = None
    ) -> None:
        if freq is not None:
            keep = freq > 0
            time, censored, freq = time[keep], censored[keep], freq[keep]
        weight = np.ones(len(time)) if freq is None else np.asarray(freq, dtype=np.float64)
        distinct, inverse = np.unique(time, return_inverse=True)
        n_censored = np.bincount(inverse, weights=censored * weight, minlength=len(distinct))
        leaving = np.bincount(inverse, weights=weight, minlength=len(distinct))
        at_risk = weight.sum() - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
        n_events = leaving - n_censored
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(n_censored > 0, 1.0 - n_censored / (at_risk - n_events), 1.0)
        self.times = distinct
        self.survival = np.cumprod(factor)
        self.max_time = float(distinct[-1])

    def __call__(self, t) -> np.ndarray:
        r""":math:`\hat G(t)`; beyond the last observed time only if :math:`\hat G` reached 0."""
        t = np.asarray(t, dtype=np.float64)
        beyond = t > self.max_time
        if beyond.any() and self.survival[-1] > 0:
            raise ValueError(
                f"time {float(t[beyond].max()):g} is beyond the censoring data's last "
                f"follow-up ({self.max_time:g} years); the censoring distribution is unknown "
                "there"
            )
        index = np.searchsorted(self.times, t, side="right")
        return np.concatenate([[1.0], self.survival])[index]

    def inverse_weights(self, t, where: np.ndarray, *, name: str = "time") -> np.ndarray:
        r""":math:`1 / \hat G(t_i)` where ``where`` is True (0 elsewhere).

        Raises a ValueError naming the first time at which :math:`\hat G = 0` is needed
        (scikit-survival issue #73: there the weight silently becomes infinite or zero).
        """
        t = np.asarray(t, dtype=np.float64)
        weights = np.zeros(t.shape)
        if not where.any():
            return weights
        g = self(t[where])
        if np.any(g <= 0):
            bad = float(t[where][g <= 0].min())
            raise ValueError(
                f"the censoring survival G is 0 at {name} {bad:g} years: every patient still "
                "followed then is censored there, so inverse-probability weights are infinite; "
                "evaluate at earlier times (or pass tau=)"
            )
        weights[where] = 1.0 / g
        return weights


def censoring_only(time, event, train_time=None, train_event=None) -> CensoringSurvival:
    r""":math:`\hat G` for competing-risks metrics: only code 0 is censoring.

    A competing event (code 2) ends follow-up by an event, not by censoring, so it does not
    count in :math:`\hat G` (unlike the cause-specific metrics, where death censors).
    """
    from fracrisk._checks import check_train

    if (train_time is None) != (train_event is None):
        raise ValueError("pass both train_time and train_event, or neither")
    if train_time is None:
        return CensoringSurvival(np.asarray(time, dtype=np.float64), np.asarray(event) == 0)
    tt, te = check_train(train_time, train_event)
    return CensoringSurvival(tt, te == 0)
