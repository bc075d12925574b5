r"""The time grid of discrete-time survival heads, and curves from their outputs.

A discrete-time head (DeepHit, PMF, logistic hazard) predicts on a grid of cut times
:math:`0 = \tau_0 < \tau_1 < \dots < \tau_m` (years), fitted on the training data and
stored with the model. Its output has one column per cut :math:`k = 0..m`; column
:math:`k` is the interval :math:`(\tau_{k-1}, \tau_k]` (column 0 is the instant 0,
where nothing happens: the convention of pycox, whose losses these heads use).

Follow-up is put on the grid as pycox's ``LabTransDiscreteTime`` does:

* an **event** at :math:`t` goes to the first cut at or after it,
  :math:`\kappa = \min\{k : \tau_k \ge t\}`: it happened in :math:`(\tau_{\kappa-1},
  \tau_\kappa]`;
* a **censored** patient at :math:`t` goes to the last cut at or before it,
  :math:`\kappa = \max\{k : \tau_k \le t\}`: known to be event-free through
  :math:`\tau_\kappa`, and nothing is claimed about the part-interval after it;
* an event after the last cut :math:`\tau_m` is censored at :math:`\tau_m`.

Between cuts, the cumulative incidence :math:`F_c(t)` is interpolated linearly
(a constant density within each interval), and it is held at :math:`F_c(\tau_m)` after
the last cut.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["discretise", "fit_time_grid", "interpolate_incidence"]


def fit_time_grid(time, event, n_intervals: int = 20) -> np.ndarray:
    r"""Cut times :math:`\tau_0 = 0 < \dots < \tau_m` at quantiles of the event times.

    The cuts are the :math:`k / m` quantiles (:math:`k = 1..m`) of the times of every
    event of any cause (code :math:`\ne 0`), so each interval holds about as many events;
    ties can merge cuts, so there may be fewer than ``n_intervals``.

    Parameters
    ----------
    time : array-like, shape = (n,)
        Follow-up in years.
    event : array-like, shape = (n,)
        Event codes; 0 is censoring.
    n_intervals : int, default 20
        :math:`m`, at least 1.

    Returns
    -------
    numpy.ndarray, shape = (m + 1,)
        The cuts in years, starting at 0.
    """
    if isinstance(n_intervals, bool) or int(n_intervals) != n_intervals or n_intervals < 1:
        raise ValueError(f"n_intervals must be an integer >= 1, got {n_intervals!r}")
    time = np.asarray(time, dtype=np.float64).reshape(-1)
    event = np.asarray(event).reshape(-1)
    if time.shape != event.shape:
        raise ValueError(f"time {time.shape} and event {event.shape} differ in shape")
    event_times = time[(event != 0) & np.isfinite(time)]
    if event_times.size == 0:
        raise ValueError("no event of any cause: a time grid cannot be fitted")
    cuts = np.quantile(event_times, np.arange(1, int(n_intervals) + 1) / int(n_intervals))
    cuts = np.unique(cuts[cuts > 0])
    if cuts.size == 0:
        raise ValueError("every event is at time 0: a time grid cannot be fitted")
    return np.concatenate([[0.0], cuts])


def discretise(
    time: torch.Tensor, event: torch.Tensor, cuts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Grid index of each patient and its event code on the grid (see the module notes).

    Parameters
    ----------
    time, event : torch.Tensor, shape = (n,)
        Follow-up in years and event codes (0 censored).
    cuts : torch.Tensor, shape = (m + 1,)
        The grid of :func:`fit_time_grid`.

    Returns
    -------
    index : torch.LongTensor, shape = (n,)
        :math:`\kappa_i` in ``0..m``.
    event : torch.LongTensor, shape = (n,)
        The event code, set to 0 for events after the last cut.
    """
    cuts = cuts.to(device=time.device, dtype=torch.float64)
    t = time.to(torch.float64).contiguous()
    code = event.long()
    at_or_after = torch.searchsorted(cuts, t, right=False)  # first cut >= t
    at_or_before = torch.searchsorted(cuts, t, right=True) - 1  # last cut <= t
    m = len(cuts) - 1
    beyond = at_or_after > m
    code = torch.where(beyond, torch.zeros_like(code), code)
    index = torch.where(code != 0, at_or_after, at_or_before.clamp(0, m))
    return index.clamp(0, m), code


def interpolate_incidence(incidence_at_cuts: np.ndarray, cuts: np.ndarray, times) -> np.ndarray:
    r"""Cumulative incidence at ``times`` from its values at the cuts, linearly in between.

    Parameters
    ----------
    incidence_at_cuts : numpy.ndarray, shape = (n, m + 1)
        :math:`F(\tau_k)` per patient, with :math:`F(\tau_0) = 0`.
    cuts : numpy.ndarray, shape = (m + 1,)
    times : array-like, shape = (n_times,)
        Years, at least 0; held flat after the last cut.

    Returns
    -------
    numpy.ndarray, shape = (n, n_times)
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if np.any(~np.isfinite(times)) or np.any(times < 0):
        raise ValueError("times must be finite and >= 0 years")
    clipped = np.minimum(times, cuts[-1])
    right = np.clip(np.searchsorted(cuts, clipped, side="left"), 1, len(cuts) - 1)
    left = right - 1
    width = cuts[right] - cuts[left]
    share = np.where(width > 0, (clipped - cuts[left]) / np.where(width > 0, width, 1.0), 1.0)
    low, high = incidence_at_cuts[:, left], incidence_at_cuts[:, right]
    return low + (high - low) * share[None, :]
