"""Train/test splits: disjoint, complete, reproducible, stratified or temporal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fracrisk.data import SPLIT_METHODS, Cohort, split_cohort
from fracrisk.simulate import clinical_cohort

METHODS = [pytest.param(m, id=m) for m in SPLIT_METHODS]


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return clinical_cohort(600, seed=11)


def labelled_cohort(n: int = 97) -> Cohort:
    """A cohort with string row labels, uneven event groups and integer entry 'dates'."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "time": rng.uniform(0.1, 10.0, n),
            "event": rng.choice([0, 1, 2], size=n, p=[0.7, 0.2, 0.1]),
            "entry_day": rng.integers(0, 30, n),  # many ties
            "age": rng.uniform(50, 90, n),
        },
        index=[f"row{i:03d}" for i in range(n)],
    )
    truth = pd.DataFrame({"row_number": np.arange(n)})
    return Cohort(df, truth=truth)


def _split(c: Cohort, method: str, **kwargs):
    if method == "temporal":
        kwargs.setdefault("by", "entry_date" if "entry_date" in c.df.columns else "entry_day")
    return c.split(kwargs.pop("test_size", 0.25), method=method, **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "which", [pytest.param("simulated", id="simulated"), pytest.param("labelled", id="labelled")]
)
def test_parts_are_disjoint_and_cover_all_rows_in_input_order(cohort, method, which):
    c = cohort if which == "simulated" else labelled_cohort()
    train, test = _split(c, method)
    assert isinstance(train, Cohort) and isinstance(test, Cohort)
    assert len(train) > 0 and len(test) > 0
    assert set(train.df.index).isdisjoint(test.df.index)
    assert len(train) + len(test) == len(c)
    assert set(train.df.index) | set(test.df.index) == set(c.df.index)
    position = {label: i for i, label in enumerate(c.df.index)}
    for part in (train, test):
        positions = [position[label] for label in part.df.index]
        assert positions == sorted(positions)
        pd.testing.assert_frame_equal(part.df, c.df.loc[part.df.index], check_exact=True)
        assert part.roles() == c.roles()
    # Roughly the requested size (temporal may take a few more at a tie on the cut).
    assert abs(len(test) - 0.25 * len(c)) <= (5 if method != "temporal" else 0.1 * len(c))


@pytest.mark.parametrize("method", METHODS)
def test_split_does_not_modify_the_cohort(cohort, method):
    before = cohort.df.copy(deep=True)
    truth_before = cohort.truth.copy(deep=True)
    _split(cohort, method)
    pd.testing.assert_frame_equal(cohort.df, before, check_exact=True)
    pd.testing.assert_frame_equal(cohort.truth, truth_before, check_exact=True)


@pytest.mark.parametrize(
    "method", [pytest.param("random", id="random"), pytest.param("stratified", id="stratified")]
)
def test_same_seed_same_split_different_seed_different_split(cohort, method):
    a_train, a_test = cohort.split(0.3, method=method, seed=7)
    b_train, b_test = cohort.split(0.3, method=method, seed=7)
    c_train, c_test = cohort.split(0.3, method=method, seed=8)
    assert list(a_test.df.index) == list(b_test.df.index)
    assert list(a_train.df.index) == list(b_train.df.index)
    assert list(a_test.df.index) != list(c_test.df.index)
    assert len(set(a_test.df.index) ^ set(c_test.df.index)) > 50


def test_split_cohort_function_equals_method(cohort):
    _, test_a = split_cohort(cohort, 0.2, method="random", seed=3)
    _, test_b = cohort.split(0.2, method="random", seed=3)
    assert list(test_a.df.index) == list(test_b.df.index)


def test_default_method_is_stratified(cohort):
    _, default = cohort.split(0.2, seed=4)
    _, stratified = cohort.split(0.2, method="stratified", seed=4)
    assert list(default.df.index) == list(stratified.df.index)


@pytest.mark.parametrize(
    "test_size",
    [pytest.param(0.2, id="0.2"), pytest.param(0.5, id="0.5"), pytest.param(0.33, id="0.33")],
)
@pytest.mark.parametrize("seed", [pytest.param(0, id="seed0"), pytest.param(1, id="seed1")])
def test_stratified_keeps_event_counts_within_one_patient(cohort, test_size, seed):
    train, test = cohort.split(test_size, method="stratified", seed=seed)
    all_counts = np.bincount(cohort.event, minlength=3)
    test_counts = np.bincount(test.event, minlength=3)
    train_counts = np.bincount(train.event, minlength=3)
    assert all_counts.min() > 10  # all three event codes present
    np.testing.assert_array_equal(test_counts + train_counts, all_counts)
    assert np.all(np.abs(test_counts - test_size * all_counts) <= 1), (test_counts, all_counts)


def test_stratified_is_better_balanced_than_random_on_a_rare_event():
    df = pd.DataFrame({"time": np.linspace(0.5, 9.5, 200), "event": [1] * 6 + [0] * 194})
    c = Cohort(df)
    for seed in range(10):
        _, test = c.split(0.5, method="stratified", seed=seed)
        assert test.n_events == 3


@pytest.mark.parametrize(
    "test_size",
    [pytest.param(0.1, id="0.1"), pytest.param(0.25, id="0.25"), pytest.param(0.6, id="0.6")],
)
def test_temporal_test_patients_entered_last(cohort, test_size):
    train, test = cohort.split(test_size, method="temporal", by="entry_date")
    assert test.df["entry_date"].min() >= train.df["entry_date"].max()
    assert len(test) >= round(test_size * len(cohort))
    # Patients tied on the cut date are never split between the parts.
    assert not set(test.df["entry_date"]) & set(train.df["entry_date"])


def test_temporal_ties_on_the_cut_all_go_to_test():
    df = pd.DataFrame(
        {
            "time": np.ones(10),
            "event": np.zeros(10, dtype=int),
            "entry_day": [1, 2, 3, 4, 5, 6, 7, 7, 7, 8],
        }
    )
    train, test = Cohort(df).split(0.3, method="temporal", by="entry_day")
    assert sorted(test.df["entry_day"]) == [7, 7, 7, 8]
    assert list(train.df.index) == [0, 1, 2, 3, 4, 5]


def test_temporal_ignores_seed(cohort):
    _, a = cohort.split(0.2, method="temporal", by="entry_date", seed=1)
    _, b = cohort.split(0.2, method="temporal", by="entry_date", seed=2)
    assert list(a.df.index) == list(b.df.index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"method": "temporal"}, r"method='temporal' needs by=", id="temporal-without-by"
        ),
        pytest.param(
            {"method": "temporal", "by": "visit_date"},
            r"column 'visit_date' \(by=\) is not in the cohort",
            id="temporal-unknown-by",
        ),
        pytest.param({"method": "kfold"}, r"method must be one of .*'kfold'", id="unknown-method"),
        pytest.param({"test_size": 0.0}, r"test_size must be in \(0, 1\), got 0\.0", id="size-0"),
        pytest.param({"test_size": 1.0}, r"test_size must be in \(0, 1\), got 1\.0", id="size-1"),
        pytest.param({"test_size": -0.2}, r"test_size must be in \(0, 1\)", id="size-negative"),
        pytest.param({"test_size": 20}, r"test_size must be in \(0, 1\), got 20", id="size-count"),
        pytest.param({"test_size": float("nan")}, r"test_size must be in \(0, 1\)", id="size-nan"),
    ],
)
def test_bad_arguments_raise(cohort, kwargs, message):
    kwargs = {"test_size": 0.2, **kwargs}
    with pytest.raises(ValueError, match=message):
        cohort.split(kwargs.pop("test_size"), **kwargs)


@pytest.mark.parametrize(
    "method", [pytest.param("random", id="random"), pytest.param("stratified", id="stratified")]
)
def test_test_size_too_small_for_the_cohort_raises(method):
    c = Cohort(pd.DataFrame({"time": [1.0, 2.0, 3.0, 4.0], "event": [0, 1, 0, 1]}))
    with pytest.raises(
        ValueError,
        match=r"split of 4 patients with test_size=0\.05 leaves a "
        r"part empty",
    ):
        c.split(0.05, method=method)


def test_temporal_by_column_with_missing_values_raises():
    df = pd.DataFrame(
        {
            "time": [1.0, 2.0, 3.0, 4.0],
            "event": [0, 1, 0, 1],
            "entry_date": pd.to_datetime(["2010-01-01", None, "2011-01-01", None]),
        }
    )
    with pytest.raises(
        ValueError,
        match=r"column 'entry_date' has missing values at rows "
        r"\[1, 3\]",
    ):
        Cohort(df).split(0.5, method="temporal", by="entry_date")


@pytest.mark.parametrize("method", METHODS)
def test_truth_stays_aligned_after_splitting(cohort, method):
    train, test = _split(cohort, method)
    for part in (train, test):
        assert part.truth.index.equals(part.df.index)
        pd.testing.assert_frame_equal(part.truth, cohort.truth.loc[part.df.index], check_exact=True)
    # Same check where labels are not positions: the truth's row_number is the position.
    c = labelled_cohort()
    position = {label: i for i, label in enumerate(c.df.index)}
    for part in _split(c, method):
        assert part.truth.index.equals(part.df.index)
        assert part.truth["row_number"].tolist() == [position[x] for x in part.df.index]


def test_splits_of_splits_keep_truth_aligned(cohort):
    train, _ = cohort.split(0.2, seed=1)
    fit, valid = train.split(0.25, method="random", seed=2)
    for part in (fit, valid):
        pd.testing.assert_frame_equal(part.truth, cohort.truth.loc[part.df.index], check_exact=True)
    assert len(fit) + len(valid) == len(train)
