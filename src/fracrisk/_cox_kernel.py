"""Compiled CPU kernel of the Cox negative log partial likelihood and its gradient.

One pass over the patients in descending time accumulates the risk-set sums as running
log-sum-exps; one pass back over the tie groups accumulates the gradient. Everything is
computed in float64 whatever the input dtype. The maths is in
:func:`fracrisk.losses.cox_partial_likelihood`; the vectorised torch version used on other
devices is :class:`fracrisk.losses.RiskSetTerms`, and the tests hold the two equal.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["cox_nll_and_gradient"]


@numba.njit(cache=True, nogil=True)
def _log_add(m, s, v):  # pragma: no cover - compiled
    """Add exp(v) to the sum s * exp(m); returns the new (m, s) with s >= 1 when m = max."""
    if v > m:
        return v, s * math.exp(m - v) + 1.0
    return m, s + math.exp(v - m)


@numba.njit(cache=True, nogil=True)
def cox_nll_and_gradient(time_sorted, eta, event, efron, want_grad):  # pragma: no cover
    """-log L and (optionally) its gradient, all arrays sorted by descending time.

    Returns ``(loss, gradient)``; the gradient is in the same (sorted) order.
    """
    n = time_sorted.shape[0]
    n_groups = 1
    for p in range(1, n):
        if time_sorted[p] != time_sorted[p - 1]:
            n_groups += 1
    log_risk = np.empty(n_groups)
    c = np.zeros(n_groups)  # sum over the group's events of S_k / D_i
    b = np.zeros(n_groups)  # sum over the group's events of f_i S_k / D_i
    group_start = np.empty(n_groups + 1, dtype=np.int64)
    loss = 0.0
    m, s = -np.inf, 0.0  # risk-set sum S = s * exp(m)
    p, k = 0, 0
    while p < n:
        q = p
        while q < n and time_sorted[q] == time_sorted[p]:
            q += 1
        group_start[k] = p
        d = 0
        tie_max = -np.inf
        for r in range(p, q):
            x = float(eta[r])
            m, s = _log_add(m, s, x)
            if event[r]:
                d += 1
                tie_max = max(tie_max, x)
        log_s = m + math.log(s)
        log_risk[k] = log_s
        if d > 0:
            ratio = 0.0
            if efron and d > 1:
                tie_sum = 0.0
                for r in range(p, q):
                    if event[r]:
                        tie_sum += math.exp(float(eta[r]) - log_s)
                ratio = tie_sum  # A_k / S_k, in (0, 1]
            for r in range(p, q):
                if event[r]:
                    loss -= float(eta[r])
            for l_rank in range(d):
                f = l_rank / d if ratio > 0.0 else 0.0
                rel = 1.0 - f * ratio  # D_i / S_k
                loss += log_s + math.log(rel)
                c[k] += 1.0 / rel
                b[k] += f / rel
        p = q
        k += 1
    group_start[n_groups] = n

    grad = np.zeros(n if want_grad else 0, dtype=eta.dtype)
    if want_grad:
        cm, cs = -np.inf, 0.0  # C_k = sum_{k' >= k} c_k' / S_k' = cs * exp(cm)
        for k in range(n_groups - 1, -1, -1):
            if c[k] > 0.0:
                cm, cs = _log_add(cm, cs, math.log(c[k]) - log_risk[k])
            log_c = cm + math.log(cs) if cs > 0.0 else -np.inf
            for i in range(group_start[k], group_start[k + 1]):
                x = float(eta[i])
                g = math.exp(x + log_c) if cs > 0.0 else 0.0
                if event[i]:
                    g -= 1.0 + math.exp(x - log_risk[k]) * b[k]
                grad[i] = g
    return loss, grad


def _warm_up() -> None:
    """Compile for the common dtypes (cached on disk by numba after the first run)."""
    t = np.array([2.0, 1.0])
    for dtype in (np.float32, np.float64):
        cox_nll_and_gradient(
            t.astype(dtype), np.zeros(2, dtype), np.array([True, True]), True, True
        )
