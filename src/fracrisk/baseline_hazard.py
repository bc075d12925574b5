r"""Breslow's estimator of the baseline hazard, accumulated in one streaming pass.

Given log hazard ratios :math:`\eta_j` from a fitted Cox-type model, Breslow's estimator of
the cumulative baseline hazard is

.. math::
    \hat H_0(t) = \sum_{k:\, t_k \le t} \frac{d_k}{\sum_{j:\, T_j \ge t_k} e^{\eta_j}},

with :math:`t_k` the distinct event times and :math:`d_k` the events at :math:`t_k`. A
patient's survival curve is then :math:`S(t \mid x) = \exp(-\hat H_0(t)\, e^{\eta(x)})`.

The estimator needs, for each distinct time, only the number of events and the sum of
:math:`e^{\eta}` of the patients whose follow-up ends then. :class:`BreslowBaselineHazard`
therefore accumulates those two numbers per distinct time, batch by batch: memory grows
with the number of distinct times (about 3,650 for ten years recorded in days), not with the
number of patients, and images never have to be held in memory (unlike pycox, whose
``compute_baseline_hazards`` needs the training inputs: pycox issues #64, #65).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from fracrisk.exceptions import DataWarning, NotFittedError

__all__ = ["BreslowBaselineHazard", "cumulative_incidence"]


def _as_1d(name: str, values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"Input {name!r} contains NaN or infinite values")
    return array


class BreslowBaselineHazard:
    r"""Breslow's cumulative baseline hazard, fitted in one pass over batches of predictions.

    Competing events (event code 2) count as censoring, which gives the cause-specific
    baseline hazard of the event of interest (code 1).

    Attributes
    ----------
    event_times_ : ndarray, shape = (n_event_times,)
        Distinct event times :math:`t_k` in years, ascending.
    cumulative_hazard_ : ndarray, shape = (n_event_times,)
        :math:`\hat H_0(t_k)` at :math:`\eta = 0`.
    max_time_ : float
        Longest follow-up time seen (years); beyond it curves are extrapolated flat.

    Examples
    --------
    >>> import numpy as np
    >>> est = BreslowBaselineHazard().update([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [1, 1, 0])
    >>> est = est.finalize()
    >>> est.cumulative_hazard([0.5, 1.0, 2.5]).round(4).tolist()
    [0.0, 0.3333, 0.8333]
    """

    def __init__(self) -> None:
        self._times = np.empty(0)
        self._events = np.empty(0)
        self._scaled_sums = np.empty(0)  # sum of exp(eta - shift) of patients ending at each time
        self._shift = -np.inf
        self.event_times_: np.ndarray | None = None
        self.cumulative_hazard_: np.ndarray | None = None
        self.max_time_: float | None = None

    # ----------------------------------------------------------------- fitting
    def update(self, log_hazard, time, event) -> BreslowBaselineHazard:
        """Add one batch of predictions: log hazard ratios, times (years) and event codes."""
        eta = _as_1d("log_hazard", log_hazard)
        t = _as_1d("time", time)
        e = _as_1d("event", event)
        if not (eta.shape == t.shape == e.shape):
            raise ValueError(
                f"log_hazard {eta.shape}, time {t.shape} and event {e.shape} "
                "must have the same length"
            )
        if eta.size == 0:
            return self
        new_shift = max(self._shift, float(eta.max()))
        rescale = np.exp(self._shift - new_shift) if np.isfinite(self._shift) else 0.0
        times = np.concatenate([self._times, t])
        keys, inverse = np.unique(times, return_inverse=True)
        sums = np.concatenate([self._scaled_sums * rescale, np.exp(eta - new_shift)])
        events = np.concatenate([self._events, (e == 1).astype(np.float64)])
        self._times = keys
        self._scaled_sums = np.bincount(inverse, weights=sums, minlength=len(keys))
        self._events = np.bincount(inverse, weights=events, minlength=len(keys))
        self._shift = new_shift
        return self

    def finalize(self) -> BreslowBaselineHazard:
        """Turn the accumulated sums into the cumulative hazard; returns ``self``."""
        if self._times.size == 0:
            raise ValueError("no predictions were added; call update() with at least one batch")
        if self._events.sum() == 0:
            raise ValueError(
                "no events (code 1) among the predictions: the baseline hazard cannot be estimated"
            )
        risk_sums = np.cumsum(self._scaled_sums[::-1])[::-1]  # sum over T_j >= t_k
        has_event = self._events > 0
        increments = self._events[has_event] / risk_sums[has_event] * np.exp(-self._shift)
        self.event_times_ = self._times[has_event]
        self.cumulative_hazard_ = np.cumsum(increments)
        self.max_time_ = float(self._times[-1])
        return self

    def fit(self, log_hazard, time, event) -> BreslowBaselineHazard:
        """Fit from arrays in memory (one batch)."""
        self.__init__()
        return self.update(log_hazard, time, event).finalize()

    def fit_batches(self, batches: Iterable[tuple]) -> BreslowBaselineHazard:
        """Fit from an iterable of ``(log_hazard, time, event)`` batches (arrays or tensors)."""
        self.__init__()
        for log_hazard, time, event in batches:
            self.update(log_hazard, time, event)
        return self.finalize()

    # ----------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if self.cumulative_hazard_ is None:
            raise NotFittedError("the baseline hazard is not fitted; call fit() first")

    def cumulative_hazard(self, times) -> np.ndarray:
        r""":math:`\hat H_0(t)` at ``times`` (years), a right-continuous step function."""
        self._check_fitted()
        t = _as_1d("times", times)
        if np.any(t < 0):
            raise ValueError("times must be >= 0 years")
        index = np.searchsorted(self.event_times_, t, side="right")
        padded = np.concatenate([[0.0], self.cumulative_hazard_])
        return padded[index]

    def survival(self, log_hazard, times, *, warn_beyond: bool = True) -> np.ndarray:
        r"""Survival :math:`S(t \mid x) = \exp(-\hat H_0(t) e^{\eta})`, shape (n, n_times)."""
        eta = _as_1d("log_hazard", log_hazard)
        t = _as_1d("times", times)
        if warn_beyond and np.any(t > self.max_time_):
            warnings.warn(
                f"times beyond the longest training follow-up ({self.max_time_:.2f} "
                "years) are extrapolated: the curve stays flat after the last event",
                DataWarning,
                stacklevel=3,
            )
        return np.exp(-np.exp(eta)[:, None] * self.cumulative_hazard(t)[None, :])

    # ----------------------------------------------------------------- state
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Arrays that fully describe the fitted estimator (saved with the model)."""
        self._check_fitted()
        return {
            "event_times": self.event_times_,
            "cumulative_hazard": self.cumulative_hazard_,
            "max_time": np.array([self.max_time_]),
        }

    @classmethod
    def from_state_arrays(cls, arrays: dict[str, np.ndarray]) -> BreslowBaselineHazard:
        """Rebuild a fitted estimator from :meth:`state_arrays`, checking what it is given.

        The event times must be finite, increasing and within the follow-up, and the
        cumulative hazard finite, non-negative and non-decreasing: a damaged or edited
        state would otherwise give survival curves that rise.
        """
        missing = {"event_times", "cumulative_hazard", "max_time"} - set(arrays)
        if missing:
            raise ValueError(f"the saved baseline hazard lacks {sorted(missing)}")
        est = cls()
        est.event_times_ = np.asarray(arrays["event_times"], dtype=np.float64).reshape(-1)
        est.cumulative_hazard_ = np.asarray(arrays["cumulative_hazard"], dtype=np.float64)
        est.cumulative_hazard_ = est.cumulative_hazard_.reshape(-1)
        est.max_time_ = float(np.asarray(arrays["max_time"]).reshape(-1)[0])
        times, hazard = est.event_times_, est.cumulative_hazard_
        problems = []
        if times.shape != hazard.shape:
            problems.append(f"{times.size} event times for {hazard.size} hazard values")
        elif not (np.isfinite(times).all() and np.isfinite(hazard).all()):
            problems.append("NaN or infinite values")
        elif np.any(np.diff(times) <= 0) or np.any(np.diff(hazard) < 0) or np.any(hazard < 0):
            problems.append("event times not increasing or a cumulative hazard that decreases")
        elif not np.isfinite(est.max_time_) or (times.size and times[-1] > est.max_time_):
            problems.append("a last follow-up before the last event time")
        if problems:
            raise ValueError(f"the saved baseline hazard is invalid: {problems[0]}")
        return est


def cumulative_incidence(
    fracture: BreslowBaselineHazard,
    death: BreslowBaselineHazard,
    eta_fracture: np.ndarray,
    eta_death: np.ndarray,
    times,
    *,
    chunk: int = 2048,
) -> np.ndarray:
    r"""Probability of fracture by each time with death competing, shape (n, n_times).

    From two cause-specific Cox models (fracture and death), each a Breslow baseline and
    log hazard ratios:

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
    Swapping the two causes gives the cumulative incidence of death.

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
