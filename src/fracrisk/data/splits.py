"""Reproducible train/test splits of a cohort: random, stratified by event, or temporal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fracrisk.data.cohort import Cohort

__all__ = ["SPLIT_METHODS", "split_cohort"]

SPLIT_METHODS = ("random", "stratified", "temporal")


def split_cohort(
    cohort: Cohort,
    test_size: float = 0.2,
    *,
    method: str = "stratified",
    by: str | None = None,
    seed: int = 0,
) -> tuple[Cohort, Cohort]:
    """Split a cohort into (train, test).

    Parameters
    ----------
    cohort : Cohort
        The cohort to split.
    test_size : float, default 0.2
        Fraction of patients in the test part, in (0, 1).
    method : {"stratified", "random", "temporal"}, default "stratified"
        ``"random"``: a uniform random permutation. ``"stratified"``: the same, within
        each event code (censored, fracture, death), so both parts keep the event mix.
        ``"temporal"``: the patients who entered last form the test set, as in a
        temporal validation (Kim et al. 2024); needs ``by``. Patients tied on ``by``
        at the cut all go to the test set, so it may be slightly larger than asked.
    by : str, optional
        Column that orders patients in calendar time (a date or a number), for
        ``method="temporal"``.
    seed : int, default 0
        Seed of the random permutation; the same seed gives the same split.

    Returns
    -------
    train, test : Cohort
        Disjoint cohorts whose rows together are the input's rows, in input order.
    """
    if method not in SPLIT_METHODS:
        raise ValueError(f"method must be one of {SPLIT_METHODS}, got {method!r}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    n = len(cohort)
    if method == "temporal":
        if by is None:
            raise ValueError("method='temporal' needs by=<column ordering patients in time>")
        if by not in cohort.df.columns:
            raise ValueError(f"column {by!r} (by=) is not in the cohort")
        order = cohort.df[by]
        if order.isna().any():
            rows = cohort.df.index[order.isna()].tolist()[:5]
            raise ValueError(
                f"column {by!r} has missing values at rows {rows}; "
                "a temporal split needs every entry date"
            )
        cut = order.sort_values(kind="stable").iloc[int(np.floor(n * (1 - test_size)))]
        is_test = (order >= cut).to_numpy()
    else:
        rng = np.random.default_rng(seed)
        is_test = np.zeros(n, dtype=bool)
        groups = (
            [np.arange(n)]
            if method == "random"
            else [np.flatnonzero(cohort.event == code) for code in np.unique(cohort.event)]
        )
        for members in groups:
            n_test = int(round(test_size * len(members)))
            is_test[rng.permutation(members)[:n_test]] = True
    if is_test.all() or not is_test.any():
        raise ValueError(f"split of {n} patients with test_size={test_size} leaves a part empty")
    index = cohort.df.index
    return cohort._with_rows(index[~is_test]), cohort._with_rows(index[is_test])
