"""Compiled CPU kernel of the shear-warp cone-beam projection.

Each output pixel sums, over the slices of the volume across the beam, one bilinear sample per
slice at that slice's magnified position. The sampling positions are separable (a row position
per slice and image row, a column position per slice and image column), so they arrive here as
two-tap tables computed once per view by :func:`linear_taps`. The maths is in
:func:`fracrisk.imaging.render_drr`; the differentiable torch version used on other devices, in
other dtypes and under autograd is ``torch.nn.functional.grid_sample`` on the same positions,
and the tests hold the two equal.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["linear_taps", "shear_warp_sum"]


def linear_taps(position: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-tap linear interpolation of samples ``0..n-1`` (``n >= 2``) at continuous ``position``.

    Sample ``i`` sits at position ``i``; beyond either edge the signal is zero, so a position
    within one sample of an edge blends the edge sample with zero, as
    ``grid_sample(padding_mode="zeros", align_corners=False)`` does. The taps are always
    ``index`` and ``index + 1`` within ``0..n-1``: at an edge the outside tap gets weight 0.
    Positions further out get zero weights.

    Returns
    -------
    index : int64 array, same shape as ``position``
        Index of the first tap (the second is ``index + 1``).
    weight : float32 array, shape ``position.shape + (2,)``
        Weights of the two taps.
    """
    base = np.floor(position)
    frac = position - base
    inside = (base >= -1) & (base <= n - 1)
    weight = np.stack([1.0 - frac, frac], -1) * inside[..., None]
    below, above = base == -1, base == n - 1  # one tap outside the samples
    weight[below] = np.stack([weight[below][:, 1], np.zeros(below.sum())], -1)
    weight[above] = np.stack([np.zeros(above.sum()), weight[above][:, 0]], -1)
    index = np.clip(base, 0, n - 2)
    index = np.where(inside, index, 0).astype(np.int64)
    return index, weight.astype(np.float32)


@numba.njit(cache=True, nogil=True, parallel=True)
def shear_warp_sum(mu, row_index, row_weight, col_index, col_weight, out):  # pragma: no cover
    """``out[b, i, j] = sum_k sum_{p, q} rw[k, i, p] cw[k, j, q] mu[b, k, ri + p, cj + q]``.

    ``mu`` is ``(B, K, R, C)``, slices across the beam (any strides, ``R, C >= 2``);
    ``row_index``/``row_weight`` are ``(K, H)``/``(K, H, 2)``, ``col_index``/``col_weight``
    ``(K, W)``/``(K, W, 2)``; ``out`` is ``(B, H, W)`` and is overwritten. Per image row and
    slice, the two slice rows are blended first (a contiguous pass), then sampled at the
    image's columns.
    """
    n_batch, n_slices, n_cols = mu.shape[0], mu.shape[1], mu.shape[3]
    height, width = out.shape[1], out.shape[2]
    for task in numba.prange(n_batch * height):
        b = task // height
        i = task - b * height
        row = out[b, i]
        row[:] = 0.0
        blended = np.empty(n_cols, dtype=mu.dtype)
        for k in range(n_slices):
            w0 = row_weight[k, i, 0]
            w1 = row_weight[k, i, 1]
            if w0 == 0.0 and w1 == 0.0:
                continue
            top = mu[b, k, row_index[k, i]]
            bottom = mu[b, k, row_index[k, i] + 1]
            for c in range(n_cols):
                blended[c] = w0 * top[c] + w1 * bottom[c]
            for j in range(width):
                c = col_index[k, j]
                row[j] += col_weight[k, j, 0] * blended[c] + col_weight[k, j, 1] * blended[c + 1]
