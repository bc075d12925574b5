r"""Bootstrap confidence intervals and paired comparisons of two models.

Patients are resampled with replacement, ``n`` times, and the metric is recomputed on each
resample. The interval is the percentile interval: the :math:`(1-c)/2` and
:math:`(1+c)/2` quantiles of the replicates (Efron and Tibshirani 1993). A paired
comparison evaluates both models on the *same* resamples, so the interval of their
difference accounts for the correlation between them, which an unpaired test (or
overlapping intervals) ignores.

Harrell's and Uno's C take a fast path: a resample is a vector of frequency weights over
the patients, so the data are sorted once and each replicate costs one pass of the
Fenwick tree. It gives the same values as recomputing on the resampled arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fracrisk._checks import check_survival_inputs, check_train
from fracrisk.exceptions import DataWarning
from fracrisk.metrics._ipcw import CensoringSurvival
from fracrisk.metrics.concordance import (
    _concordance_sums,
    _dense_rank,
    _ratio,
    harrell_c,
    uno_c,
)

__all__ = ["BootstrapResult", "ComparisonResult", "bootstrap", "compare"]


@dataclass
class BootstrapResult:
    """A metric on the full sample with its bootstrap percentile interval."""

    estimate: float
    lower: float
    upper: float
    ci: float
    replicates: np.ndarray
    n_failed: int = 0

    def __str__(self) -> str:
        return (
            f"{self.estimate:.3f} ({self.ci:.0%} CI {self.lower:.3f} to {self.upper:.3f}, "
            f"{len(self.replicates)} resamples)"
        )


@dataclass
class ComparisonResult:
    """Paired bootstrap comparison: model B minus model A on the same resamples."""

    estimate_a: float
    estimate_b: float
    difference: float
    lower: float
    upper: float
    p_value: float
    ci: float
    replicates: np.ndarray
    n_failed: int = 0

    def __str__(self) -> str:
        return (
            f"B - A = {self.difference:+.3f} ({self.ci:.0%} CI {self.lower:+.3f} to "
            f"{self.upper:+.3f}; p = {self.p_value:.3g})"
        )


# --------------------------------------------------------------------- fast paths
class _ConcordancePrepared:
    """Sorted once; evaluates Harrell's or Uno's C for any frequency weights."""

    def __init__(self, metric, time, event, risk, kwargs):
        self.t, self.e, r = check_survival_inputs(time, event, risk)
        self.is_event = self.e == 1
        self.order = np.lexsort((self.is_event, -self.t))
        self.rank, self.n_ranks = _dense_rank(r)
        self.uno = metric is uno_c
        self.query = np.ones(len(self.t), dtype=np.bool_)
        self.counts = self.is_event.copy()
        self.fixed_censoring = None
        if self.uno:
            unknown = set(kwargs) - {"tau", "train_time", "train_event"}
            if unknown:
                raise TypeError(f"uno_c got unexpected arguments {sorted(unknown)}")
            if kwargs.get("tau") is not None:
                self.counts &= self.t < float(kwargs["tau"])
            if kwargs.get("train_time") is not None:
                tt, te = check_train(kwargs["train_time"], kwargs["train_event"])
                self.fixed_censoring = CensoringSurvival(tt, te != 1)
        elif kwargs:
            raise TypeError(f"harrell_c got unexpected arguments {sorted(kwargs)}")

    def __call__(self, freq: np.ndarray) -> float:
        weight = np.ones(len(self.t))
        if self.uno:
            censoring = self.fixed_censoring or CensoringSurvival(self.t, ~self.is_event, freq)
            weight = (
                censoring.inverse_weights(self.t, self.counts & (freq > 0), name="event time") ** 2
            )
        below, tied, pairs = _concordance_sums(
            self.order, self.t, self.is_event, self.rank, self.n_ranks, weight, freq, self.query
        )
        return _ratio(below + 0.5 * tied, pairs)


_FREQUENCY_WEIGHTED: dict[Callable, type] = {
    harrell_c: _ConcordancePrepared,
    uno_c: _ConcordancePrepared,
}


def _evaluator(metric, arrays, kwargs):
    """A function of a resample (frequency weights) returning the metric."""
    if metric in _FREQUENCY_WEIGHTED and len(arrays) == 3:
        prepared = _FREQUENCY_WEIGHTED[metric](metric, *arrays, kwargs)
        return prepared
    n = len(arrays[0])
    positions = np.arange(n)

    def recompute(freq):
        index = np.repeat(positions, freq.astype(np.int64))
        return float(metric(*[a[index] for a in arrays], **kwargs))

    return recompute


def _check_arrays(arrays) -> list[np.ndarray]:
    if not arrays:
        raise ValueError("pass the metric's per-patient arrays, e.g. (time, event, risk)")
    out = [np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a) for a in arrays]
    n = len(out[0])
    bad = [len(a) for a in out if len(a) != n]
    if bad:
        raise ValueError(f"all arrays must have the same number of patients ({n}); got {bad}")
    return out


def _resamples(n_patients: int, n: int, seed: int, progress: bool):
    rng = np.random.default_rng(seed)
    iterator = range(n)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="bootstrap", unit="resample", disable=None)
    for _ in iterator:
        yield np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)


def _interval(replicates: np.ndarray, ci: float) -> tuple[float, float]:
    alpha = (1 - ci) / 2
    return float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1 - alpha))


def _check_options(n: int, ci: float) -> None:
    if n < 2:
        raise ValueError(f"n must be >= 2 resamples, got {n!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")


def _warn_failed(n_failed: int, n: int) -> None:
    if n_failed:
        warnings.warn(
            f"{n_failed} of {n} resamples left the metric undefined (e.g. no "
            "comparable pair) and were skipped",
            DataWarning,
            stacklevel=3,
        )


def bootstrap(
    metric: Callable[..., float],
    *arrays,
    n: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    progress: bool = False,
    **metric_kwargs,
) -> BootstrapResult:
    """Percentile bootstrap confidence interval of ``metric(*arrays, **metric_kwargs)``.

    Parameters
    ----------
    metric : callable
        Returns a float from per-patient arrays, e.g. :func:`~fracrisk.metrics.uno_c`.
    *arrays : array-like
        Per-patient inputs of equal length, resampled together by patient.
    n : int, default 1000
        Number of resamples.
    seed : int, default 0
        Seed of the resampling; the same seed gives the same interval.
    ci : float, default 0.95
        Coverage of the interval.
    progress : bool, default False
        Show a progress bar.
    **metric_kwargs
        Passed to ``metric`` unchanged and *not* resampled (e.g. ``tau``, or the training
        outcomes for the censoring distribution).

    Returns
    -------
    BootstrapResult
        ``estimate`` on the full sample, ``lower``/``upper``, and the ``replicates``.
        Resamples on which the metric is undefined are skipped with a warning.

    Examples
    --------
    >>> import numpy as np
    >>> from fracrisk.metrics import harrell_c
    >>> rng = np.random.default_rng(0)
    >>> time, event, risk = rng.exponential(size=200), rng.integers(0, 2, 200), rng.normal(size=200)
    >>> result = bootstrap(harrell_c, time, event, risk, n=200, seed=1)
    >>> bool(result.lower <= result.estimate <= result.upper)
    True
    """
    _check_options(n, ci)
    data = _check_arrays(arrays)
    estimate = float(metric(*data, **metric_kwargs))
    evaluate = _evaluator(metric, data, metric_kwargs)
    values, failed = [], 0
    for freq in _resamples(len(data[0]), n, seed, progress):
        try:
            values.append(evaluate(freq))
        except ValueError:
            failed += 1
    _warn_failed(failed, n)
    replicates = np.asarray(values)
    if replicates.size < 2:
        raise ValueError("the metric was undefined on almost every resample")
    lower, upper = _interval(replicates, ci)
    return BootstrapResult(estimate, lower, upper, ci, replicates, failed)


def compare(
    metric: Callable[..., float],
    time,
    event,
    score_a,
    score_b,
    *,
    n: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    progress: bool = False,
    **metric_kwargs,
) -> ComparisonResult:
    r"""Paired bootstrap comparison of two models' scores with one metric.

    Both ``metric(time, event, score_a)`` and ``metric(time, event, score_b)`` are computed
    on the same resamples. The difference is B - A. The interval is the percentile
    interval of the replicated differences. The two-sided p-value for "no difference" is

    .. math::
        p = \min\Big(1,\; 2 \min\Big(\frac{1 + \#\{d^* \le 0\}}{1 + n},\;
            \frac{1 + \#\{d^* \ge 0\}}{1 + n}\Big)\Big),

    so it is never exactly 0 (its resolution is about :math:`2/n`).

    Parameters
    ----------
    metric : callable
        ``metric(time, event, score, **metric_kwargs) -> float``.
    time, event : array-like, shape = (n_patients,)
        Outcomes.
    score_a, score_b : array-like
        The two models' scores (risks, or survival matrices for ``antolini_c``).
    n : int, default 1000
        Number of resamples.
    seed : int, default 0
        Seed of the resampling.
    ci : float, default 0.95
        Coverage of the interval.
    progress : bool, default False
        Show a progress bar.
    **metric_kwargs
        Passed to ``metric`` unchanged and not resampled, as in :func:`bootstrap`.
    """
    _check_options(n, ci)
    data = _check_arrays((time, event, score_a, score_b))
    estimate_a = float(metric(data[0], data[1], data[2], **metric_kwargs))
    estimate_b = float(metric(data[0], data[1], data[3], **metric_kwargs))
    evaluate_a = _evaluator(metric, data[:3], metric_kwargs)
    evaluate_b = _evaluator(metric, [data[0], data[1], data[3]], metric_kwargs)
    values, failed = [], 0
    for freq in _resamples(len(data[0]), n, seed, progress):
        try:
            values.append(evaluate_b(freq) - evaluate_a(freq))
        except ValueError:
            failed += 1
    _warn_failed(failed, n)
    replicates = np.asarray(values)
    if replicates.size < 2:
        raise ValueError("the metric was undefined on almost every resample")
    lower, upper = _interval(replicates, ci)
    k = len(replicates)
    p = 2 * min((1 + np.sum(replicates <= 0)) / (1 + k), (1 + np.sum(replicates >= 0)) / (1 + k))
    return ComparisonResult(
        estimate_a,
        estimate_b,
        estimate_b - estimate_a,
        lower,
        upper,
        float(min(1.0, p)),
        ci,
        replicates,
        failed,
    )
