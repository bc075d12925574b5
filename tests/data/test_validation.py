"""Cohort validation at the boundary: every problem names its column, rows, ids and values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fracrisk.data import Cohort
from fracrisk.exceptions import CohortValidationError, ValidationProblem

# Row labels deliberately differ from positions, so that a message quoting positions fails.
INDEX = [100, 101, 102, 103, 104]
IDS = ["A1", "A2", "A3", "A4", "A5"]


def valid_df() -> pd.DataFrame:
    """A small, valid cohort table with every canonical column, an extra covariate and images."""
    return pd.DataFrame(
        {
            "patient_id": IDS,
            "time": [1.5, 2.0, 0.25, 7.0, 3.3],
            "event": [0, 1, 2, 0, 1],
            "age": [61.0, 70.5, 55.2, 82.0, 66.0],
            "sex": ["F", "M", "F", "F", "M"],
            "bmi": [24.1, 31.0, 19.5, 27.3, 22.0],
            "prior_fracture": [0, 1, 0, 0, 1],
            "parental_hip_fracture": [0, 0, 1, 0, 0],
            "current_smoking": [1, 0, 0, 0, 0],
            "glucocorticoids": [0, 0, 0, 1, 0],
            "rheumatoid_arthritis": [0, 0, 0, 0, 1],
            "secondary_osteoporosis": [0, 1, 0, 0, 0],
            "alcohol_3_or_more_units": [0, 0, 0, 1, 0],
            "femoral_neck_bmd": [0.75, 0.62, 0.81, 0.55, 0.70],
            "femoral_neck_t_score": [-0.9, -2.0, -0.4, -2.6, -1.3],
            "falls_last_year": [0.0, 2.0, 1.0, 0.0, 3.0],
            "ct_path": ["a.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii.gz", "e.nii.gz"],
        },
        index=INDEX,
    )


BASE_KWARGS = {"covariates": ("falls_last_year",), "image_cols": ("ct_path",)}


def set_values(column: str, values: dict) -> callable:
    """Mutator setting ``df.loc[row, column] = value`` for each item (object dtype if needed)."""

    def mutate(df: pd.DataFrame) -> pd.DataFrame:
        if any(isinstance(v, str) for v in values.values()) and df[column].dtype != object:
            df[column] = df[column].astype(object)
        if any(isinstance(v, float) for v in values.values()) and pd.api.types.is_integer_dtype(
            df[column]
        ):
            df[column] = df[column].astype(np.float64)
        for row, value in values.items():
            df.loc[row, column] = value
        return df

    return mutate


def drop_column(column: str) -> callable:
    return lambda df: df.drop(columns=[column])


def expected_location(column: str, rows: tuple) -> str:
    """The start of a problem line: ``column 'x', rows [101, 103]`` (``column 'x'`` alone
    for a problem of the whole column)."""
    if not rows:
        return f"column {column!r}"
    plural = "s" if len(rows) != 1 else ""
    return f"column {column!r}, row{plural} [{', '.join(repr(r) for r in rows)}]"


def ids_of(rows: tuple) -> tuple:
    return tuple(IDS[INDEX.index(r)] for r in rows)


def test_valid_table_passes():
    cohort = Cohort(valid_df(), **BASE_KWARGS)
    assert len(cohort) == 5
    assert list(cohort.df.index) == INDEX


def test_error_is_a_value_error():
    assert issubclass(CohortValidationError, ValueError)
    with pytest.raises(ValueError, match="follow-up time must be > 0"):
        Cohort(set_values("time", {101: -1.0})(valid_df()))


# (mutator, extra Cohort kwargs, column, rows, reason regex, values or None, has ids)
SINGLE_PROBLEM_CASES = [
    # --- required columns missing (no rows to name: the whole column is absent)
    pytest.param(
        drop_column("time"),
        {},
        "time",
        (),
        "required column is missing",
        (),
        False,
        id="missing-time-column",
    ),
    pytest.param(
        drop_column("event"),
        {},
        "event",
        (),
        "required column is missing",
        (),
        False,
        id="missing-event-column",
    ),
    pytest.param(
        drop_column("falls_last_year"),
        {},
        "falls_last_year",
        (),
        "required column is missing",
        (),
        False,
        id="missing-named-covariate",
    ),
    pytest.param(
        lambda df: df,
        {"image_cols": ("ct_path", "xray_path")},
        "xray_path",
        (),
        "required column is missing",
        (),
        False,
        id="missing-image-column",
    ),
    pytest.param(
        lambda df: df,
        {"time_col": "years"},
        "years",
        (),
        "required column is missing",
        (),
        False,
        id="missing-renamed-time-column",
    ),
    pytest.param(
        lambda df: df,
        {"id_col": "subject"},
        "subject",
        (),
        "required column is missing",
        (),
        False,
        id="missing-explicit-id-column",
    ),
    # --- missing values
    pytest.param(
        set_values("time", {102: np.nan}),
        {},
        "time",
        (102,),
        r"missing follow-up time \(NaN\)",
        (),
        True,
        id="nan-time",
    ),
    pytest.param(
        set_values("event", {103: np.nan}),
        {},
        "event",
        (103,),
        r"missing event code \(NaN\)",
        (),
        True,
        id="nan-event",
    ),
    pytest.param(
        set_values("age", {101: np.nan, 104: np.nan}),
        {},
        "age",
        (101, 104),
        r"missing value \(NaN\)",
        (),
        True,
        id="nan-canonical-covariate",
    ),
    pytest.param(
        set_values("falls_last_year", {100: np.nan}),
        {},
        "falls_last_year",
        (100,),
        r"missing value \(NaN\)",
        (),
        True,
        id="nan-named-covariate",
    ),
    pytest.param(
        set_values("prior_fracture", {103: np.nan}),
        {},
        "prior_fracture",
        (103,),
        r"missing value \(NaN\)",
        (),
        True,
        id="nan-binary-flag",
    ),
    pytest.param(
        set_values("sex", {102: None}),
        {},
        "sex",
        (102,),
        r"missing value \(NaN\)",
        (),
        True,
        id="none-in-sex",
    ),
    pytest.param(
        set_values("ct_path", {104: None}),
        {},
        "ct_path",
        (104,),
        "missing image path",
        (),
        True,
        id="missing-image-path",
    ),
    pytest.param(
        set_values("patient_id", {101: None}),
        {},
        "patient_id",
        (101,),
        "missing patient id",
        (),
        False,
        id="missing-patient-id",
    ),
    # --- outcome values
    pytest.param(
        set_values("time", {101: 0.0, 103: -2.0}),
        {},
        "time",
        (101, 103),
        r"follow-up time must be > 0 years",
        (0.0, -2.0),
        True,
        id="non-positive-time",
    ),
    pytest.param(
        set_values("time", {104: np.inf}),
        {},
        "time",
        (104,),
        "follow-up time must be finite",
        (np.inf,),
        True,
        id="infinite-time",
    ),
    pytest.param(
        set_values("time", {100: -np.inf}),
        {},
        "time",
        (100,),
        "follow-up time must be finite",
        (-np.inf,),
        True,
        id="minus-infinite-time",
    ),
    pytest.param(
        set_values("event", {102: 3}),
        {},
        "event",
        (102,),
        r"unknown event code; allowed: 0 censored, 1 fracture, 2 death",
        (3,),
        True,
        id="event-code-3",
    ),
    pytest.param(
        set_values("event", {100: -1, 104: 0.5}),
        {},
        "event",
        (100, 104),
        "unknown event code",
        (-1.0, 0.5),
        True,
        id="event-codes-negative-and-fraction",
    ),
    pytest.param(
        set_values("time", {103: "soon"}),
        {},
        "time",
        (103,),
        "expected numbers, found non-numeric values",
        ("soon",),
        True,
        id="string-in-time",
    ),
    # --- ids
    pytest.param(
        set_values("patient_id", {103: "A2"}),
        {},
        "patient_id",
        (101, 103),
        "duplicated patient id",
        ("A2", "A2"),
        False,
        id="duplicated-patient-id",
    ),
    # --- covariate types and ranges
    pytest.param(
        set_values("age", {102: "seventy"}),
        {},
        "age",
        (102,),
        "expected numbers, found non-numeric values",
        ("seventy",),
        True,
        id="string-in-age",
    ),
    pytest.param(
        set_values("age", {100: 150.0}),
        {},
        "age",
        (100,),
        r"out of range: age at baseline must be within \[0, 120\] years",
        (150.0,),
        True,
        id="age-150",
    ),
    pytest.param(
        set_values("bmi", {103: 5.0}),
        {},
        "bmi",
        (103,),
        r"out of range: body-mass index must be within \[10, 80\] kg/m2",
        (5.0,),
        True,
        id="bmi-5",
    ),
    pytest.param(
        set_values("femoral_neck_t_score", {101: -9.0}),
        {},
        "femoral_neck_t_score",
        (101,),
        r"out of range: .* must be within \[-7, 5\] SD",
        (-9.0,),
        True,
        id="t-score-minus-9",
    ),
    pytest.param(
        set_values("femoral_neck_bmd", {104: 3.0}),
        {},
        "femoral_neck_bmd",
        (104,),
        r"out of range: .* must be within \[0.1, 2\] g/cm2",
        (3.0,),
        True,
        id="bmd-3",
    ),
    pytest.param(
        set_values("bmi", {102: np.inf}),
        {},
        "bmi",
        (102,),
        "value is infinite",
        (np.inf,),
        True,
        id="infinite-bmi",
    ),
    pytest.param(
        set_values("falls_last_year", {101: np.inf}),
        {},
        "falls_last_year",
        (101,),
        "value is infinite",
        (np.inf,),
        True,
        id="infinite-named-covariate",
    ),
    pytest.param(
        set_values("prior_fracture", {100: 2, 102: 0.5}),
        {},
        "prior_fracture",
        (100, 102),
        "must be 0 or 1",
        (2.0, 0.5),
        True,
        id="binary-flag-not-0-1",
    ),
    pytest.param(
        set_values("current_smoking", {104: "yes"}),
        {},
        "current_smoking",
        (104,),
        "expected numbers, found non-numeric values",
        ("yes",),
        True,
        id="binary-flag-as-text",
    ),
    pytest.param(
        set_values("sex", {103: "X"}),
        {},
        "sex",
        (103,),
        "unknown code; allowed codes are F, M",
        ("X",),
        True,
        id="unknown-sex-code",
    ),
    pytest.param(
        set_values("sex", {100: "female"}),
        {},
        "sex",
        (100,),
        "unknown code; allowed codes are F, M",
        ("female",),
        True,
        id="sex-spelled-out",
    ),
    # --- the table itself
    pytest.param(
        lambda df: df.set_axis([100, 101, 101, 103, 104]),
        {},
        "<index>",
        (101, 101),
        "duplicated row labels",
        (),
        False,
        id="duplicated-index-labels",
    ),
    pytest.param(
        lambda df: df.iloc[:0],
        {},
        "<table>",
        (),
        "the table has no rows",
        (),
        False,
        id="empty-table",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "kwargs", "column", "rows", "reason", "values", "has_ids"), SINGLE_PROBLEM_CASES
)
def test_single_problem_is_reported(mutate, kwargs, column, rows, reason, values, has_ids):
    df = mutate(valid_df())
    with pytest.raises(
        CohortValidationError, match=re.escape(expected_location(column, rows)) + ".*" + reason
    ) as info:
        Cohort(df, **{**BASE_KWARGS, **kwargs})
    error = info.value
    assert str(error).startswith("1 problem(s) found:")
    assert len(error.problems) == 1, error.problems
    problem = error.problems[0]
    assert isinstance(problem, ValidationProblem)
    assert problem.column == column
    assert problem.rows == rows
    assert re.search(reason, problem.reason), problem.reason
    assert problem.values == values
    if has_ids:
        assert problem.ids == ids_of(rows)
        assert "(patient_id " + ", ".join(repr(i) for i in ids_of(rows)) + ")" in str(error)
    else:
        assert problem.ids is None


def test_missing_column_message_lists_the_columns_present():
    with pytest.raises(
        CohortValidationError,
        match=r"column 'time': required "
        r"column is missing; the table has: "
        r"patient_id, event, age",
    ):
        Cohort(valid_df().drop(columns=["time"]))


def test_wrong_dtype_without_bad_values_is_reported():
    # Numbers stored as text: nothing is non-numeric, but the dtype is still wrong.
    df = valid_df()
    df["age"] = df["age"].astype(str)
    with pytest.raises(
        CohortValidationError,
        match=r"column 'age': expected a numeric dtype, found object",
    ):
        Cohort(df)


def test_every_problem_is_reported_in_one_error():
    df = valid_df()
    df = set_values("time", {101: np.nan})(df)
    df = set_values("event", {102: 3})(df)
    df = set_values("age", {103: 150.0})(df)
    df = set_values("sex", {104: "X"})(df)
    df = set_values("patient_id", {100: "A3"})(df)
    df = set_values("femoral_neck_bmd", {100: 3.0, 102: 0.0})(df)
    with pytest.raises(
        CohortValidationError, match=r"^6 problem\(s\) found in site-7\.csv:"
    ) as info:
        Cohort(df, source="site-7.csv")
    found = {(p.column, p.rows) for p in info.value.problems}
    assert found == {
        ("time", (101,)),
        ("event", (102,)),
        ("age", (103,)),
        ("sex", (104,)),
        ("patient_id", (100, 102)),
        ("femoral_neck_bmd", (100, 102)),
    }
    message = str(info.value)
    assert info.value.source == "site-7.csv"
    for line in [
        "column 'time', row [101] (patient_id 'A2'): missing follow-up time",
        "column 'event', row [102] (patient_id 'A3'): unknown event code",
        "column 'age', row [103] (patient_id 'A4'): out of range",
        "column 'sex', row [104] (patient_id 'A5'): unknown code",
        "column 'patient_id', rows [100, 102]: duplicated patient id; got 'A3', 'A3'",
        "column 'femoral_neck_bmd', rows [100, 102] (patient_id 'A3', 'A3'): out of range",
    ]:
        assert line in message
    assert len(message.splitlines()) == 7


def test_several_missing_columns_are_all_reported():
    df = valid_df().drop(columns=["time", "falls_last_year"])
    with pytest.raises(CohortValidationError, match=r"^2 problem\(s\) found") as info:
        Cohort(df, **BASE_KWARGS)
    assert [p.column for p in info.value.problems] == ["time", "falls_last_year"]


def test_all_offending_rows_are_kept_though_the_message_is_shortened():
    n = 12
    df = pd.DataFrame(
        {"time": [1.0] * n, "event": [0] * n, "age": [200.0] * 8 + [60.0] * 4},
        index=[f"r{i}" for i in range(n)],
    )
    with pytest.raises(
        CohortValidationError,
        match=r"column 'age', rows \['r0', 'r1', 'r2', 'r3', 'r4' and 3 more\]"
        r": out of range",
    ) as info:
        Cohort(df)
    (problem,) = info.value.problems
    assert problem.rows == tuple(f"r{i}" for i in range(8))
    assert problem.values == (200.0,) * 8
    assert problem.ids is None


def test_boundaries_of_ranges_are_inclusive():
    df = valid_df()
    df.loc[100, ["age", "bmi", "femoral_neck_bmd", "femoral_neck_t_score"]] = [
        120.0,
        80.0,
        2.0,
        -7.0,
    ]
    df.loc[101, ["age", "bmi", "femoral_neck_bmd", "femoral_neck_t_score"]] = [0.0, 10.0, 0.1, 5.0]
    assert len(Cohort(df, **BASE_KWARGS)) == 5


def test_boolean_flags_and_plain_0_1_events_are_valid():
    df = valid_df()
    df["prior_fracture"] = df["prior_fracture"].astype(bool)
    df["event"] = [0, 1, 1, 0, 1]
    cohort = Cohort(df, **BASE_KWARGS)
    assert cohort.df["prior_fracture"].tolist() == [0, 1, 0, 0, 1]
    assert cohort.n_events == 3
