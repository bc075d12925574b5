"""Hypothesis fuzzing of cohort tables: load correctly, or refuse with row, column and reason.

Every generated table either becomes a :class:`~fracrisk.data.Cohort` with exactly its rows
(``missing="error"``) or raises :class:`~fracrisk.exceptions.CohortValidationError` naming
the column and reason; a raw pandas/numpy traceback or a silent change of row count fails
the test. Tables are also written to CSV and Parquet and read back through
``Cohort.read``, and through a column mapping. The counts are printed.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fracrisk.data import Cohort
from fracrisk.data.mapping import ColumnMapping
from fracrisk.exceptions import CohortValidationError

OUTCOMES: Counter = Counter()

_ABSURD = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e300, -1e300, 1e-300, 300.0, 7.0]
_TEXT = st.text(alphabet=string.ascii_letters + " _-éß\t\u00a0中", max_size=6)

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from(_ABSURD),
)
cells = st.one_of(numbers, _TEXT, st.none(), st.booleans())


PLAUSIBLE = {
    "age": st.floats(40.0, 95.0),
    "sex": st.sampled_from(["F", "M"]),
    "bmi": st.floats(15.0, 40.0),
    "prior_fracture": st.sampled_from([0, 1]),
    "femoral_neck_t_score": st.floats(-4.0, 2.0),
    "extra_marker": st.floats(-3.0, 3.0),
}


@st.composite
def tables(draw) -> pd.DataFrame:
    """A plausible table, then (most of the time) a few hostile edits."""
    n = draw(st.integers(min_value=0, max_value=8))
    columns: dict = {
        "time": draw(st.lists(st.floats(0.01, 20.0), min_size=n, max_size=n)),
        "event": draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n)),
    }
    if draw(st.booleans()):
        ids = draw(st.lists(st.one_of(st.integers(0, 10**6), _TEXT), min_size=n, max_size=n))
        columns["patient_id"] = ids
    for name, plausible in PLAUSIBLE.items():
        if draw(st.booleans()):
            columns[name] = draw(st.lists(plausible, min_size=n, max_size=n))
    df = pd.DataFrame(columns)
    for _ in range(draw(st.integers(0, 3))):  # hostile edits
        edit = draw(st.sampled_from(["cell", "cell", "cell", "rename", "duplicate", "dup_id"]))
        if edit == "cell" and n:
            row = draw(st.integers(0, n - 1))
            column = draw(st.sampled_from(list(df.columns)))
            df[column] = df[column].astype(object)
            df.iat[row, list(df.columns).index(column)] = draw(cells)
        elif edit == "rename" and len(df.columns):
            column = draw(st.sampled_from(list(df.columns)))
            df = df.rename(
                columns={
                    column: draw(
                        st.sampled_from(
                            [column.upper(), column.title(), f" {column}", column.replace("_", " ")]
                        )
                    )
                }
            )
        elif edit == "duplicate" and len(df.columns) > 1:
            df.columns = [df.columns[0], *df.columns[:-1]]
        elif edit == "dup_id" and "patient_id" in df and n > 1:
            df.loc[df.index[-1], "patient_id"] = df["patient_id"].iloc[0]
    return df


def _check(df: pd.DataFrame, make) -> str:
    """Build the cohort; return the outcome, failing on raw errors and silent row changes."""
    try:
        cohort = make(df)
    except CohortValidationError as err:
        assert err.problems, "a validation error without problems"
        for problem in err.problems:
            assert problem.column and problem.reason
        return "refused"
    except (ValueError, FileNotFoundError) as err:  # our own messages name file and reason
        assert type(err).__module__.startswith(("fracrisk", "builtins")), repr(err)
        assert str(err), "an empty error message"
        return "refused (file)"
    assert len(cohort) == len(df), f"rows changed silently: {len(df)} -> {len(cohort)}"
    for column in ("age", "bmi", "femoral_neck_t_score"):
        if column in cohort.df:  # what was loaded is what was given, not a silent zero
            np.testing.assert_allclose(
                cohort.df[column].to_numpy(float),
                pd.to_numeric(df[column]).to_numpy(float),
                rtol=1e-12,
            )
    assert np.isfinite(cohort.time).all() and (cohort.time > 0).all()
    assert set(np.unique(cohort.event)) <= {0, 1, 2}
    return "loaded"


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(df=tables())
def test_tables_load_or_are_refused_precisely(df):
    OUTCOMES["table " + _check(df, Cohort)] += 1


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    df=tables(),
    fmt=st.sampled_from([".csv", ".parquet", "missing"]),
    encoding=st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]),
)
def test_files_load_or_are_refused_precisely(tmp_path_factory, df, fmt, encoding):
    folder: Path = tmp_path_factory.mktemp("fuzz")
    path = folder / f"table{'.csv' if fmt == 'missing' else fmt}"
    try:
        if fmt == ".csv":
            df.to_csv(path, index=False, encoding=encoding)
        else:
            df.astype({c: "object" for c in df.columns if df[c].dtype == object}).to_parquet(path)
    except Exception:  # pandas/pyarrow cannot write this frame: nothing for fracrisk to read
        OUTCOMES["file not writable by pandas"] += 1
        return
    OUTCOMES["file " + _check(df, lambda _: Cohort.read(path))] += 1


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(df=tables(), codes=st.dictionaries(_TEXT, st.sampled_from([0, 1, 2]), max_size=3))
def test_mappings_load_or_are_refused_precisely(df, codes):
    mapping = ColumnMapping(values={"event": codes} if codes else {}, time_unit="days")
    OUTCOMES["mapped " + _check(df, lambda d: Cohort(mapping.apply(d)))] += 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    total = sum(OUTCOMES.values())
    print(f"\nfuzzed {total} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))
    assert total >= 2000 or math.isnan(total), f"only {total} cases were generated"
