"""Concordance indices for right-censored survival data."""

from __future__ import annotations

import numba
import numpy as np

from fracrisk.metrics._checks import NoComparablePairsError, check_survival_inputs

__all__ = ["harrell_c"]


@numba.njit(cache=True)
def _harrell_counts(order, time, is_event, rank, n_ranks):  # pragma: no cover - compiled
    """Concordant, tied-in-risk and comparable pair counts by a Fenwick tree over risk ranks.

    ``order`` visits patients by descending time, censored before events within a time.
    """
    tree = np.zeros(n_ranks + 1, dtype=np.int64)
    inserted = 0
    concordant = 0
    tied = 0
    comparable = 0
    n = order.shape[0]
    start = 0
    while start < n:
        stop = start
        t = time[order[start]]
        while stop < n and time[order[stop]] == t:
            stop += 1
        # censored patients of this time join the risk set before its events are compared
        for p in range(start, stop):
            i = order[p]
            if not is_event[i]:
                k = rank[i] + 1
                while k <= n_ranks:
                    tree[k] += 1
                    k += k & (-k)
                inserted += 1
        for p in range(start, stop):
            i = order[p]
            if is_event[i]:
                below = 0
                k = rank[i]
                while k > 0:
                    below += tree[k]
                    k -= k & (-k)
                upto = 0
                k = rank[i] + 1
                while k > 0:
                    upto += tree[k]
                    k -= k & (-k)
                concordant += below
                tied += upto - below
                comparable += inserted
        for p in range(start, stop):
            i = order[p]
            if is_event[i]:
                k = rank[i] + 1
                while k <= n_ranks:
                    tree[k] += 1
                    k += k & (-k)
                inserted += 1
        start = stop
    return concordant, tied, comparable


def harrell_c(time, event, risk) -> float:
    r"""Harrell's concordance index.

    .. math::
        C = \frac{\sum_{i,j} \delta_i \, \mathbb{1}[(i, j) \text{ comparable}] \,
            \big(\mathbb{1}[r_i > r_j] + \tfrac12 \mathbb{1}[r_i = r_j]\big)}
            {\sum_{i,j} \delta_i \, \mathbb{1}[(i, j) \text{ comparable}]}

    A pair is comparable when patient *i* has the event and *j* is known to outlive it:
    :math:`T_j > T_i`, or :math:`T_j = T_i` with *j* censored. Two events at the same time
    are not comparable. Ties in risk count one half. These are scikit-survival's
    ``concordance_index_censored`` and lifelines' ``concordance_index`` conventions
    (lifelines expects the opposite sign of the score).

    Parameters
    ----------
    time : array-like, shape = (n_patients,)
        Follow-up time in years.
    event : array-like, shape = (n_patients,)
        1 event, 0 censored; 2 (competing death) counts as censored, which gives the
        cause-specific C-index of the event coded 1.
    risk : array-like, shape = (n_patients,)
        Risk score: higher means higher risk (earlier event). Does not accept survival
        probabilities (use ``1 - S(t)``).

    Returns
    -------
    float
        C in [0, 1]; 0.5 is random ranking.

    Raises
    ------
    NoComparablePairsError
        If there is no comparable pair (e.g. all patients censored).

    Notes
    -----
    O(n log n): one sort by time, then a Fenwick tree over the ranks of the risk scores.

    References
    ----------
    Harrell FE et al. (1982) Evaluating the yield of medical tests. JAMA 247:2543-2546.

    Examples
    --------
    >>> harrell_c([1.0, 2.0, 3.0, 4.0], [1, 1, 0, 1], [0.9, 0.5, 0.7, 0.1])
    0.8
    """
    t, e, r = check_survival_inputs(time, event, risk)
    is_event = e == 1
    order = np.lexsort((is_event, -t))
    ranks, rank = np.unique(r, return_inverse=True)
    concordant, tied, comparable = _harrell_counts(
        order, t, is_event, rank.astype(np.int64), len(ranks)
    )
    if comparable == 0:
        raise NoComparablePairsError(
            "no comparable pairs: the C-index is undefined (are all patients censored?)"
        )
    return float((concordant + 0.5 * tied) / comparable)
