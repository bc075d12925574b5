r"""Concordance indices for right-censored survival data: Harrell, Uno and Antolini.

All three count *comparable pairs* the same way. Patient *i* with the event at
:math:`T_i` is comparable with patient *j* when *j* is known to outlive *i*:
:math:`T_j > T_i`, or :math:`T_j = T_i` with *j* censored. Two events at the same time are
not comparable. Competing death (event code 2) counts as censoring, which gives the
cause-specific index of the event coded 1. These are scikit-survival's and lifelines'
conventions (peer difference 1 in ``docs/metrics.md``).

The counts come from one sort by time and a Fenwick tree over the ranks of the scores:
O(n log n) time, O(n) memory, no loop per pair.
"""

from __future__ import annotations

import numba
import numpy as np

from fracrisk._checks import (
    NoComparablePairsError,
    check_survival_inputs,
    check_times,
    check_train,
)
from fracrisk.metrics._ipcw import CensoringSurvival

__all__ = ["antolini_c", "concordance_counts", "harrell_c", "uno_c", "wolbers_c"]


@numba.njit(cache=True, nogil=True)
def _fenwick_add(tree, k, value):  # pragma: no cover - compiled
    n = tree.shape[0] - 1
    while k <= n:
        tree[k] += value
        k += k & (-k)


@numba.njit(cache=True, nogil=True)
def _fenwick_prefix(tree, k):  # pragma: no cover - compiled
    total = 0.0
    while k > 0:
        total += tree[k]
        k -= k & (-k)
    return total


@numba.njit(cache=True, nogil=True)
def _concordance_sums(order, time, is_event, rank, n_ranks, event_weight, freq, query):
    """Weighted sums over comparable pairs (i event, j outliving i).

    Visits patients by descending time (``order``; censored before events within a
    time). Returns (sum w_i * #{j: rank_j < rank_i}, sum w_i * #{j: rank_j == rank_i},
    sum w_i * #{j}) over events i with ``query[i]``; each j counts ``freq[j]`` times and
    each i carries ``event_weight[i] * freq[i]``.
    """  # pragma: no cover - compiled
    tree = np.zeros(n_ranks + 1)
    inserted = 0.0
    below_sum = 0.0
    equal_sum = 0.0
    pair_sum = 0.0
    n = order.shape[0]
    start = 0
    while start < n:
        stop = start
        t = time[order[start]]
        while stop < n and time[order[stop]] == t:
            stop += 1
        for p in range(start, stop):  # censored at this time join the risk set first
            i = order[p]
            if not is_event[i] and freq[i] > 0:
                _fenwick_add(tree, rank[i] + 1, freq[i])
                inserted += freq[i]
        for p in range(start, stop):
            i = order[p]
            if is_event[i] and query[i] and freq[i] > 0:
                w = event_weight[i] * freq[i]
                if w != 0.0:
                    below = _fenwick_prefix(tree, rank[i])
                    upto = _fenwick_prefix(tree, rank[i] + 1)
                    below_sum += w * below
                    equal_sum += w * (upto - below)
                    pair_sum += w * inserted
        for p in range(start, stop):
            i = order[p]
            if is_event[i] and freq[i] > 0:
                _fenwick_add(tree, rank[i] + 1, freq[i])
                inserted += freq[i]
        start = stop
    return below_sum, equal_sum, pair_sum


def _dense_rank(values: np.ndarray) -> tuple[np.ndarray, int]:
    distinct, rank = np.unique(values, return_inverse=True)
    return rank.astype(np.int64), len(distinct)


def concordance_counts(time, event, risk, *, event_weight=None, freq=None):
    r"""Weighted pair sums behind the concordance indices.

    Returns ``(concordant, tied_in_risk, comparable)``: sums over comparable pairs of
    :math:`w_i \, 1[r_i > r_j]`, :math:`w_i \, 1[r_i = r_j]` and :math:`w_i`, where
    :math:`w_i` is ``event_weight`` (default 1) and each patient is repeated ``freq``
    times (default 1; bootstrap resamples are frequency weights). Inputs are validated
    by the caller.
    """
    n = len(time)
    is_event = event == 1
    order = np.lexsort((is_event, -time))
    rank, n_ranks = _dense_rank(risk)
    weight = np.ones(n) if event_weight is None else np.asarray(event_weight, np.float64)
    counts = np.ones(n) if freq is None else np.asarray(freq, np.float64)
    return _concordance_sums(
        order, time, is_event, rank, n_ranks, weight, counts, np.ones(n, dtype=np.bool_)
    )


def _ratio(numerator: float, comparable: float) -> float:
    if comparable == 0:
        raise NoComparablePairsError(
            "no comparable pairs: the concordance index is undefined (are all patients "
            "censored, or all events after tau?)"
        )
    return float(numerator / comparable)


def harrell_c(time, event, risk) -> float:
    r"""Harrell's concordance index.

    .. math::
        C_H = \frac{\sum_{i \ne j} \delta_i \, \mathbb{1}[T_i < T_j]
            \big(\mathbb{1}[r_i > r_j] + \tfrac12 \mathbb{1}[r_i = r_j]\big)}
            {\sum_{i \ne j} \delta_i \, \mathbb{1}[T_i < T_j]}

    with the comparable pairs of this module (a censoring tied with an event in time
    counts as outliving it). Ties in risk count one half, on exact equality
    (scikit-survival uses a tolerance of 1e-8).

    Parameters
    ----------
    time : array-like, shape = (n_patients,)
        Follow-up time in years.
    event : array-like, shape = (n_patients,)
        1 event, 0 censored, 2 competing event (counted as censored).
    risk : array-like, shape = (n_patients,)
        Risk score: higher means higher risk (earlier event). Does not accept survival
        probabilities; pass ``1 - S(t)`` or a log hazard.

    Returns
    -------
    float
        :math:`C_H \in [0, 1]`; 0.5 is a random ranking. Equal to scikit-survival's
        ``concordance_index_censored(...)[0]`` and to lifelines'
        ``concordance_index(time, -risk, event)``.

    Raises
    ------
    NoComparablePairsError
        If no pair is comparable (e.g. all patients censored).

    References
    ----------
    Harrell FE et al. (1982) Evaluating the yield of medical tests. JAMA 247:2543-2546.

    Examples
    --------
    >>> harrell_c([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 1], [0.9, 0.5, 0.7, 0.1])
    0.8
    """
    t, e, r = check_survival_inputs(time, event, risk)
    concordant, tied, comparable = concordance_counts(t, e, r)
    return _ratio(concordant + 0.5 * tied, comparable)


def wolbers_c(time, event, risk, *, cause: int = 1) -> float:
    r"""Wolbers' concordance index for competing risks (cause ``cause``).

    .. math::
        C_W = \frac{\sum_{i \ne j} \mathbb{1}[\delta_i = k]\, A_{ij}
            \big(\mathbb{1}[r_i > r_j] + \tfrac12 \mathbb{1}[r_i = r_j]\big)}
            {\sum_{i \ne j} \mathbb{1}[\delta_i = k]\, A_{ij}}, \qquad
        A_{ij} = \mathbb{1}[T_i < T_j] + \mathbb{1}[T_j \le T_i,\ \delta_j \notin \{0, k\}]

    (Wolbers M, Koller MT, Witteman JCM, Steyerberg EW, Epidemiology 2009;20:555-561;
    Wolbers et al., Biostatistics 2014;15:526-539, without censoring weights): patient *i*
    with an event of cause *k* at :math:`T_i` is comparable with every patient known to be
    free of cause *k* at :math:`T_i`: one still followed after it (a censoring at the same
    time counts, as in :func:`harrell_c`), and one who had a **competing event** at any
    time before or at :math:`T_i`, who can never have cause *k* (Harrell's C with death as
    censoring drops these pairs). Computed as Harrell's C after moving every competing
    event beyond the last follow-up, censored. The risk should be the absolute risk of
    cause *k* (cumulative incidence at a horizon): a cause-specific hazard that ignores
    death ranks the dying as high-risk and is penalised for it.

    No peer library (scikit-survival, lifelines, pycox, torchsurv) computes it; it is
    tested against a pair-by-pair count (``tests/metrics/test_concordance.py``).

    Parameters
    ----------
    time : array-like, shape = (n_patients,)
        Follow-up time in years.
    event : array-like, shape = (n_patients,)
        0 censored, 1 fracture, 2 competing death.
    risk : array-like, shape = (n_patients,)
        Absolute risk of cause ``cause`` (higher = higher risk).
    cause : int, default 1
        The event code of interest; every other non-zero code competes.

    Returns
    -------
    float
        :math:`C_W \in [0, 1]`.

    Examples
    --------
    >>> wolbers_c([1.0, 2.0, 3.0, 4.0], [1, 2, 1, 0], [0.9, 0.5, 0.7, 0.1])
    1.0
    """
    t, e, r = check_survival_inputs(time, event, risk)
    if cause not in (1, 2):
        raise ValueError(f"cause must be an event code, 1 or 2; got {cause!r}")
    competing = (e != 0) & (e != cause)
    moved = np.where(competing, t.max() + 1.0, t)
    concordant, tied, comparable = concordance_counts(moved, (e == cause).astype(e.dtype), r)
    return _ratio(concordant + 0.5 * tied, comparable)


def uno_c(time, event, risk, *, tau=None, train_time=None, train_event=None) -> float:
    r"""Uno's concordance index, with inverse probability of censoring weights.

    .. math::
        C_U(\tau) = \frac{\sum_{i \ne j} \delta_i \, \hat G(T_i)^{-2} \,
            \mathbb{1}[T_i < T_j, T_i < \tau]
            \big(\mathbb{1}[r_i > r_j] + \tfrac12 \mathbb{1}[r_i = r_j]\big)}
            {\sum_{i \ne j} \delta_i \, \hat G(T_i)^{-2} \, \mathbb{1}[T_i < T_j, T_i < \tau]}

    The squared weight :math:`\hat G(T_i)^{-2}` is Uno et al.'s (and scikit-survival's
    ``concordance_index_ipcw``); it makes :math:`C_U` consistent for the concordance
    probability up to :math:`\tau` whatever the censoring, unlike Harrell's C.
    :math:`\hat G` is the reverse Kaplan-Meier estimate of the censoring survival, from
    ``train_time``/``train_event`` when given, else from the data evaluated, evaluated
    at :math:`T_i` itself (right-continuous). Comparable pairs as in :func:`harrell_c`;
    competing death (code 2) counts as censoring, also in :math:`\hat G`.

    Parameters
    ----------
    time, event, risk : array-like, shape = (n_patients,)
        As in :func:`harrell_c`.
    tau : float, optional
        Truncation time in years: only events before ``tau`` count as the earlier member
        of a pair. Default: no truncation.
    train_time, train_event : array-like, optional
        Outcomes from which :math:`\hat G` is estimated (typically the training data).

    Returns
    -------
    float
        :math:`C_U(\tau) \in [0, 1]`.

    Raises
    ------
    ValueError
        If :math:`\hat G(T_i) = 0` for an event that counts, or an event time lies beyond
        the censoring data's follow-up (the weight would be undefined).
    NoComparablePairsError
        If no pair is comparable.

    References
    ----------
    Uno H et al. (2011) On the C-statistics for evaluating overall adequacy of risk
    prediction procedures with censored survival data. Stat Med 30:1105-1117.
    """
    t, e, r = check_survival_inputs(time, event, risk)
    censoring = _censoring(t, e, train_time, train_event)
    counts = e == 1
    if tau is not None:
        counts &= t < float(tau)
    weight = censoring.inverse_weights(t, counts, name="event time") ** 2
    concordant, tied, comparable = concordance_counts(t, e, r, event_weight=weight)
    return _ratio(concordant + 0.5 * tied, comparable)


def _censoring(time, event, train_time, train_event) -> CensoringSurvival:
    if (train_time is None) != (train_event is None):
        raise ValueError("pass both train_time and train_event, or neither")
    if train_time is None:
        return CensoringSurvival(time, event != 1)
    tt, te = check_train(train_time, train_event)
    return CensoringSurvival(tt, te != 1)


def antolini_c(time, event, surv, times) -> float:
    r"""Antolini's time-dependent concordance index on whole survival curves.

    .. math::
        C^{td} = \frac{\sum_{i \ne j} \delta_i \, \mathbb{1}[(i, j) \text{ comparable}] \,
            \mathbb{1}[S_i(T_i) < S_j(T_i)]}
            {\sum_{i \ne j} \delta_i \, \mathbb{1}[(i, j) \text{ comparable}]}

    Patient *i*'s and *j*'s predicted survival are compared at *i*'s event time, so the
    ranking may change over time (for models without proportional hazards). Ties in
    predicted survival count as discordant (no half credit), as in Antolini et al. and
    pycox's ``concordance_td("antolini")``. :math:`S(T_i)` is read off the grid
    ``times`` at the last grid time not after :math:`T_i` (the first grid time if
    :math:`T_i` precedes the grid), as pycox's ``EvalSurv`` with ``steps="post"``.

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        As in :func:`harrell_c`.
    surv : array-like, shape = (n_patients, n_times)
        Predicted survival probabilities :math:`S_i(t)` on the grid ``times``.
    times : array-like, shape = (n_times,)
        Strictly increasing grid times in years.

    Returns
    -------
    float
        :math:`C^{td} \in [0, 1]`.

    References
    ----------
    Antolini L, Boracchi P, Biganzoli E (2005) A time-dependent discrimination index for
    survival data. Stat Med 24:3927-3944.
    """
    grid = check_times(times, name="times")
    s = np.asarray(surv, dtype=np.float64)
    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    if s.shape != (len(t), len(grid)):
        raise ValueError(f"Input 'surv' must have shape ({len(t)}, {len(grid)}), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("Input 'surv' contains NaN or infinite values")
    column = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, len(grid) - 1)
    is_event = e == 1
    order = np.lexsort((is_event, -t))
    ones = np.ones(len(t))
    concordant = comparable = 0.0
    for c in np.unique(column[is_event]):
        rank, n_ranks = _dense_rank(-s[:, c])  # lower rank = higher survival
        below, _, pairs = _concordance_sums(
            order, t, is_event, rank, n_ranks, ones, ones, column == c
        )
        concordant += below
        comparable += pairs
    return _ratio(concordant, comparable)
