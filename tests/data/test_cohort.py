"""The Cohort container: construction, missing-value policies, properties and file round trips."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from fracrisk.data import Cohort, MissingReport, as_cohort, read_table
from fracrisk.exceptions import CohortValidationError, DataWarning
from fracrisk.simulate import clinical_cohort

FORMATS = [pytest.param("csv", id="csv"), pytest.param("parquet", id="parquet")]


def small_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3", "P4", "P5", "P6"],
            "entry_date": pd.to_datetime(
                ["2010-01-04", "2010-03-15", "2011-07-01", "2011-07-01", "2012-11-30", "2013-02-28"]
            ),
            "time": [1.5, 2.25, 0.5, 7.0, 3.75, 4.0],
            "event": [0, 1, 2, 0, 1, 0],
            "age": [61.0, 70.5, 55.25, 82.0, 66.0, 74.5],
            "sex": ["F", "M", "F", "F", "M", "F"],
            "bmi": [24.5, 31.0, 19.5, 27.25, 22.0, 26.0],
            "prior_fracture": [0, 1, 0, 0, 1, 1],
            "current_smoking": [1, 0, 0, 0, 0, 1],
            "femoral_neck_bmd": [0.75, 0.625, 0.8125, 0.5, 0.6875, 0.5625],
        },
        index=[10, 11, 12, 13, 14, 15],
    )


def awkward_floats_df() -> pd.DataFrame:
    """Floats whose shortest repr has 16-17 significant digits (follow-up in days / 365.25)."""
    df = small_df()
    df["time"] = np.array([23.0, 489.0, 1171.0, 1444.0, 2229.0, 3541.0]) / 365.25
    df["femoral_neck_bmd"] = [0.1 + 0.2, 1 / 3, 2 / 3, 0.7, np.sqrt(0.5), np.pi / 4]
    return df


# ---------------------------------------------------------------- construction


def test_construction_keeps_all_rows_in_order_and_does_not_mutate_input():
    df = small_df()
    df["event"] = df["event"].astype(np.int32)
    df["prior_fracture"] = df["prior_fracture"].astype(bool)
    df["age"] = [61, 70, 55, 82, 66, 74]  # int64: normalised to float64 in the cohort only
    before = df.copy(deep=True)
    cohort = Cohort(df)
    pd.testing.assert_frame_equal(df, before, check_exact=True)
    assert cohort.df is not df
    assert list(cohort.df.index) == [10, 11, 12, 13, 14, 15]
    assert list(cohort.df.columns) == list(df.columns)
    assert cohort.df["event"].dtype == np.int64
    assert cohort.df["time"].dtype == np.float64
    assert cohort.df["age"].dtype == np.float64
    assert cohort.df["prior_fracture"].dtype == np.int64
    assert cohort.df["prior_fracture"].tolist() == [0, 1, 0, 0, 1, 1]
    assert cohort.missing_report == MissingReport("error", 6, 6, {}, ())
    # Changing the cohort's table does not reach back into the caller's.
    cohort.df.loc[10, "bmi"] = 99.0
    assert df.loc[10, "bmi"] == 24.5


def test_default_id_column_is_optional_but_an_explicit_one_is_required():
    df = small_df().drop(columns=["patient_id"])
    assert Cohort(df).id_col is None
    with pytest.raises(CohortValidationError, match=r"column 'pid': required column"):
        Cohort(df, id_col="pid")


def test_invalid_missing_policy_is_rejected():
    with pytest.raises(ValueError, match=r"missing must be one of .*'fill'"):
        Cohort(small_df(), missing="fill")


def test_non_dataframe_input_is_rejected():
    with pytest.raises(TypeError, match="df must be a pandas DataFrame, got dict"):
        Cohort(small_df().to_dict())


def test_truth_of_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="truth has 5 rows but df has 6"):
        Cohort(small_df(), truth=pd.DataFrame({"risk": np.arange(5.0)}))


def test_truth_is_aligned_to_the_table_index_by_position():
    truth = pd.DataFrame({"risk": np.arange(6.0)})  # RangeIndex, unlike the table's 10..15
    cohort = Cohort(small_df(), truth=truth)
    assert cohort.truth.index.equals(cohort.df.index)
    assert cohort.truth["risk"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# ---------------------------------------------------------------- missing values


def with_missing() -> pd.DataFrame:
    df = small_df()
    df["notes"] = ["ok", None, "ok", None, "ok", "ok"]  # not a role column: never dropped
    df.loc[11, "time"] = np.nan
    df.loc[13, "bmi"] = np.nan
    df.loc[14, "bmi"] = np.nan
    df.loc[14, "age"] = np.nan
    return df


def test_missing_error_policy_lists_every_row():
    with pytest.raises(CohortValidationError, match=r"^3 problem\(s\)") as info:
        Cohort(with_missing())
    found = {(p.column, p.rows) for p in info.value.problems}
    assert found == {("time", (11,)), ("age", (14,)), ("bmi", (13, 14))}


def test_missing_drop_removes_exactly_the_rows_with_missing_role_values():
    df = with_missing()
    before = df.copy(deep=True)
    truth = pd.DataFrame({"risk": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]})
    with pytest.warns(
        DataWarning,
        match=r"missing='drop': 6 rows in, 3 out; missing values by "
        r"column: time: 1, age: 1, bmi: 2; dropped 3 row\(s\)",
    ):
        cohort = Cohort(df, missing="drop", truth=truth)
    pd.testing.assert_frame_equal(df, before, check_exact=True)
    assert list(cohort.df.index) == [10, 12, 15]
    assert cohort.df["notes"].tolist() == ["ok", "ok", "ok"]
    report = cohort.missing_report
    assert report.policy == "drop"
    assert (report.n_rows_in, report.n_rows_out) == (6, 3)
    assert report.missing_by_column == {"time": 1, "age": 1, "bmi": 2}
    assert report.dropped_rows == (11, 13, 14)
    assert cohort.truth.index.equals(cohort.df.index)
    assert cohort.truth["risk"].tolist() == [0.0, 0.2, 0.5]
    assert not cohort.df.isna().any().any()


def test_missing_drop_without_missing_values_does_not_warn():
    cohort = Cohort(small_df(), missing="drop")
    assert cohort.missing_report == MissingReport("drop", 6, 6, {}, ())


def test_missing_drop_still_rejects_invalid_values():
    df = with_missing()
    df.loc[12, "time"] = -1.0
    with pytest.raises(
        CohortValidationError,
        match=r"column 'time', row \[12\] \(patient_id 'P3'\): follow-up time must "
        r"be > 0",
    ):
        Cohort(df, missing="drop")


def test_missing_drop_of_every_row_is_an_error():
    df = small_df()
    df["bmi"] = np.nan
    with pytest.raises(
        CohortValidationError,
        match=r"column '<table>', rows \[10, 11, 12, 13, 14 and 1 more\]: every "
        r"row has a missing value",
    ):
        Cohort(df, missing="drop")


def test_missing_drop_drops_rows_without_patient_id():
    df = small_df()
    df.loc[12, "patient_id"] = None
    with pytest.warns(DataWarning, match="dropped 1 row"):
        cohort = Cohort(df, missing="drop")
    assert list(cohort.df.index) == [10, 11, 13, 14, 15]


def test_missing_impute_keeps_rows_with_missing_covariates():
    df = small_df()
    df["falls"] = [0.0, np.nan, 1.0, 2.0, 0.0, 1.0]
    df.loc[13, "bmi"] = np.nan
    df.loc[14, "sex"] = None
    df.loc[10, "prior_fracture"] = np.nan
    with pytest.warns(
        DataWarning,
        match=r"missing='impute': 6 rows in, 6 out; missing values by "
        r"column: sex: 1, bmi: 1, prior_fracture: 1, falls: 1",
    ):
        cohort = Cohort(df, covariates=["falls"], missing="impute")
    assert len(cohort) == 6
    assert cohort.df["bmi"].isna().tolist() == [False, False, False, True, False, False]
    assert cohort.df["sex"].isna().sum() == 1
    assert cohort.df["falls"].isna().sum() == 1
    assert cohort.df["prior_fracture"].isna().sum() == 1
    report = cohort.missing_report
    assert report.policy == "impute"
    assert report.dropped_rows == ()
    assert report.missing_by_column == {"sex": 1, "bmi": 1, "prior_fracture": 1, "falls": 1}


@pytest.mark.parametrize(
    ("column", "row"),
    [
        pytest.param("time", 12, id="time"),
        pytest.param("event", 15, id="event"),
    ],
)
def test_missing_impute_still_rejects_missing_outcome(column, row):
    df = small_df()
    df[column] = df[column].astype(np.float64)
    df.loc[row, column] = np.nan
    df.loc[13, "bmi"] = np.nan
    with pytest.raises(
        CohortValidationError,
        match=rf"column '{column}', row \[{row}\] .*: missing value cannot be "
        "imputed",
    ) as info:
        Cohort(df, missing="impute")
    assert [(p.column, p.rows) for p in info.value.problems] == [(column, (row,))]


def test_missing_impute_still_rejects_invalid_values():
    df = small_df()
    df.loc[13, "bmi"] = np.nan
    df.loc[11, "bmi"] = 5.0
    with pytest.raises(CohortValidationError, match=r"column 'bmi', row \[11\] .*out of range"):
        Cohort(df, missing="impute")


# ---------------------------------------------------------------- properties


def test_properties():
    cohort = Cohort(small_df())
    np.testing.assert_array_equal(cohort.time, [1.5, 2.25, 0.5, 7.0, 3.75, 4.0])
    assert cohort.time.dtype == np.float64
    np.testing.assert_array_equal(cohort.event, [0, 1, 2, 0, 1, 0])
    assert cohort.event.dtype == np.int64
    assert list(cohort.ids) == ["P1", "P2", "P3", "P4", "P5", "P6"]
    assert cohort.ids.name == "patient_id"
    assert cohort.n_events == 2  # fractures only; the death (code 2) is not counted
    assert len(cohort) == 6
    assert cohort.clinical_columns == [
        "age",
        "sex",
        "bmi",
        "prior_fracture",
        "current_smoking",
        "femoral_neck_bmd",
    ]


def test_ids_fall_back_to_row_labels():
    cohort = Cohort(small_df().drop(columns=["patient_id"]))
    assert list(cohort.ids) == [10, 11, 12, 13, 14, 15]


def test_default_covariates_append_named_extras():
    df = small_df()
    df["falls"] = [0.0, 1.0, 0.0, 2.0, 0.0, 1.0]
    cohort = Cohort(df, covariates=["falls", "age"])
    assert cohort.default_covariates == [
        "age",
        "sex",
        "bmi",
        "prior_fracture",
        "current_smoking",
        "femoral_neck_bmd",
        "falls",
    ]


def test_repr_mentions_counts():
    text = repr(Cohort(small_df()))
    assert text.startswith("Cohort(n=6, fractures=2, deaths=1, censored=3, ")
    assert "median follow-up=3.00 y" in text
    assert "'femoral_neck_bmd'" in text


# ---------------------------------------------------------------- as_cohort


def test_as_cohort_returns_a_cohort_unchanged():
    cohort = Cohort(small_df())
    assert as_cohort(cohort) is cohort


def test_as_cohort_validates_a_dataframe_with_kwargs():
    df = small_df().rename(columns={"time": "years"})
    cohort = as_cohort(df, time_col="years")
    assert isinstance(cohort, Cohort)
    assert cohort.time_col == "years"
    with pytest.raises(CohortValidationError, match=r"column 'time': required column"):
        as_cohort(df)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([1, 2, 3], id="list"),
        pytest.param({"time": [1.0], "event": [1]}, id="dict"),
        pytest.param(np.ones((3, 2)), id="ndarray"),
        pytest.param(None, id="none"),
    ],
)
def test_as_cohort_rejects_other_types(data):
    with pytest.raises(TypeError, match="expected a fracrisk Cohort or a pandas DataFrame, got"):
        as_cohort(data)


# ---------------------------------------------------------------- save / read


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_exact(tmp_path, fmt):
    cohort = Cohort(small_df())
    path = cohort.save(tmp_path / f"cohort.{fmt}")
    assert path == tmp_path / f"cohort.{fmt}"
    back = Cohort.read(path)
    pd.testing.assert_frame_equal(back.df, cohort.df, check_exact=True)
    assert back.df["entry_date"].dtype == "datetime64[ns]"
    assert back.df["sex"].tolist() == ["F", "M", "F", "F", "M", "F"]
    assert back.df["prior_fracture"].dtype == np.int64
    assert back.df["femoral_neck_bmd"].dtype == np.float64
    assert back.source == str(path)
    assert back.truth is None


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param("csv", id="csv"),
        pytest.param("parquet", id="parquet"),
    ],
)
def test_round_trip_is_exact_for_full_precision_floats(tmp_path, fmt):
    cohort = Cohort(awkward_floats_df())
    back = Cohort.read(cohort.save(tmp_path / f"cohort.{fmt}"))
    pd.testing.assert_frame_equal(back.df, cohort.df, check_exact=True)


@pytest.fixture(scope="module")
def simulated():
    return clinical_cohort(200, seed=3)


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param("csv", id="csv"),
        pytest.param("parquet", id="parquet"),
    ],
)
def test_round_trip_of_simulated_cohort_with_truth_is_exact(tmp_path, simulated, fmt):
    path = simulated.save(tmp_path / f"sim.{fmt}")
    assert (tmp_path / f"sim.truth.{fmt}").exists()
    back = Cohort.read(path)
    pd.testing.assert_frame_equal(back.df, simulated.df, check_exact=True)
    pd.testing.assert_frame_equal(back.truth, simulated.truth, check_exact=True)


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param("csv", id="csv"),
        pytest.param("parquet", id="parquet"),
    ],
)
def test_truth_keeps_its_columns_through_a_round_trip(tmp_path, fmt):
    truth = pd.DataFrame(
        {
            "risk_10y": [0.125, 0.25, 0.5, 0.0625, 0.75, 0.375],
            "z": [0.5, -1.0, 0.0, 1.5, -0.25, 2.0],
        }
    )
    cohort = Cohort(small_df(), truth=truth)
    back = Cohort.read(cohort.save(tmp_path / f"c.{fmt}"))
    assert list(back.truth.columns) == ["risk_10y", "z"]
    pd.testing.assert_frame_equal(back.truth, cohort.truth, check_exact=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_roles_survive_the_round_trip(tmp_path, fmt):
    df = small_df().rename(columns={"time": "years", "event": "status", "patient_id": "subject"})
    df["falls"] = [0.0, 1.0, 0.0, 2.0, 0.0, 1.0]
    df["ct_path"] = [str(tmp_path / "ct" / f"{i}.nii.gz") for i in range(6)]
    cohort = Cohort(
        df,
        time_col="years",
        event_col="status",
        id_col="subject",
        covariates=["falls"],
        image_cols=["ct_path"],
    )
    back = Cohort.read(cohort.save(tmp_path / f"roles.{fmt}"))
    assert back.roles() == {
        "time_col": "years",
        "event_col": "status",
        "id_col": "subject",
        "image_cols": ["ct_path"],
        "covariates": ["falls"],
        "missing": "error",
    }
    assert back.default_covariates == cohort.default_covariates
    assert list(back.ids) == ["P1", "P2", "P3", "P4", "P5", "P6"]
    pd.testing.assert_frame_equal(back.df, cohort.df, check_exact=True)


def test_csv_sidecar_holds_roles_and_dtypes(tmp_path):
    path = Cohort(small_df()).save(tmp_path / "c.csv")
    sidecar = json.loads((tmp_path / "c.csv.cohort.json").read_text())
    assert sidecar["format"] == "fracrisk-cohort-sidecar/2"
    ((digest, meta),) = sidecar["versions"].items()  # keyed by the CSV's SHA-256
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["roles"]["time_col"] == "time"
    assert meta["dtypes"]["entry_date"] == "datetime64[ns]"
    assert meta["dtypes"]["prior_fracture"] == "int64"
    df, meta_back = read_table(path)
    assert meta_back == meta
    assert list(df.index) == [10, 11, 12, 13, 14, 15]


def test_a_csv_edited_after_saving_reads_as_a_plain_table_with_a_warning(tmp_path):
    path = Cohort(small_df()).save(tmp_path / "c.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # a row deleted in a spreadsheet
    with pytest.warns(DataWarning, match="describes another version"):
        df, meta = read_table(path)
    assert meta is None and len(df) == len(lines) - 2


def test_a_sidecar_of_the_old_format_still_reads(tmp_path):
    path = Cohort(small_df()).save(tmp_path / "c.csv")
    sidecar = tmp_path / "c.csv.cohort.json"
    (meta,) = json.loads(sidecar.read_text())["versions"].values()
    sidecar.write_text(json.dumps(meta))
    df, back = read_table(path)
    assert back == meta and list(df.index) == [10, 11, 12, 13, 14, 15]


@pytest.mark.parametrize("fmt", FORMATS)
def test_save_refuses_to_overwrite(tmp_path, fmt):
    path = tmp_path / f"c.{fmt}"
    Cohort(small_df()).save(path)
    before = path.read_bytes()
    other = Cohort(small_df().iloc[:3])
    with pytest.raises(FileExistsError, match=r"exists; pass overwrite=True to replace it"):
        other.save(path)
    assert path.read_bytes() == before
    other.save(path, overwrite=True)
    assert len(Cohort.read(path)) == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_read_plain_csv_without_sidecar(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text(
        "patient_id,years,event,age,sex\nA,1.5,1,70.0,F\nB,2.0,0,65.5,M\nC,0.25,2,80.0,F\n"
    )
    cohort = Cohort.read(path, time_col="years")
    assert cohort.source == str(path)
    assert cohort.time_col == "years"
    assert cohort.id_col == "patient_id"
    np.testing.assert_array_equal(cohort.time, [1.5, 2.0, 0.25])
    np.testing.assert_array_equal(cohort.event, [1, 0, 2])
    assert list(cohort.ids) == ["A", "B", "C"]
    assert cohort.df["age"].tolist() == [70.0, 65.5, 80.0]


def test_read_plain_csv_reports_problems_with_the_file_name(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,event\n1.5,1\n-2.0,0\n")
    where = re.escape(str(path))
    with pytest.raises(
        CohortValidationError,
        match=rf"1 problem\(s\) found in {where}:\n  - column 'time', "
        r"row \[1\]: follow-up time must be > 0",
    ):
        Cohort.read(path)


def test_unsupported_format_and_missing_file(tmp_path):
    cohort = Cohort(small_df())
    with pytest.raises(ValueError, match=r"unsupported table format '\.xlsx'"):
        cohort.save(tmp_path / "c.xlsx")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="no such table"):
        Cohort.read(tmp_path / "absent.parquet")


# ---------------------------------------------------------------- image paths in files


def _with_images(tmp_path, paths) -> Cohort:
    df = small_df()
    df["ct_path"] = paths
    return Cohort(df, image_cols=["ct_path"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_image_paths_under_the_manifest_are_stored_relative(tmp_path, fmt):
    study = tmp_path / "study"
    outside = tmp_path / "elsewhere" / "p6.nii.gz"
    paths = [str(study / "images" / f"p{i}.nii.gz") for i in range(5)] + [str(outside)]
    cohort = _with_images(tmp_path, paths)
    path = cohort.save(study / f"cohort.{fmt}")
    raw, _ = read_table(path)
    stored = raw["ct_path"].tolist()
    assert stored[:5] == [f"images/p{i}.nii.gz" for i in range(5)]
    assert stored[5] == str(outside)  # not under the manifest's directory: kept absolute
    assert cohort.df["ct_path"].tolist() == paths  # the cohort itself is unchanged
    back = Cohort.read(path)
    pd.testing.assert_frame_equal(back.df, cohort.df, check_exact=True)
    assert back.image_root == study


@pytest.mark.parametrize("fmt", FORMATS)
def test_relative_paths_resolve_against_the_manifest_not_the_working_directory(
    tmp_path, monkeypatch, fmt
):
    study = tmp_path / "study"
    cohort = _with_images(tmp_path, [str(study / "ct" / f"{i}.nii.gz") for i in range(6)])
    path = cohort.save(study / f"cohort.{fmt}")
    moved = tmp_path / "moved"
    study.rename(moved)
    monkeypatch.chdir(tmp_path)
    back = Cohort.read(moved / f"cohort.{fmt}")
    assert back.df["ct_path"].tolist() == [str(moved / "ct" / f"{i}.nii.gz") for i in range(6)]
    assert back.image_root == moved
    # image_root= overrides the manifest's directory
    other = Cohort.read(moved / f"cohort.{fmt}", image_root=tmp_path / "mount")
    assert other.df["ct_path"].iloc[0] == str(tmp_path / "mount" / "ct" / "0.nii.gz")
    assert other.image_root == tmp_path / "mount"
    assert not path.exists()


def test_a_plain_csv_with_image_cols_resolves_from_its_directory(tmp_path, monkeypatch):
    df = small_df()
    df["xray"] = [f"x/{i}.png" for i in range(6)]
    df.loc[df.index[2], "xray"] = "/abs/2.png"
    (tmp_path / "site").mkdir()
    df.to_csv(tmp_path / "site" / "plain.csv", index=False)
    monkeypatch.chdir(tmp_path)
    back = Cohort.read("site/plain.csv", image_cols=["xray"])
    assert back.df["xray"].iloc[0] == str(tmp_path / "site" / "x" / "0.png")
    assert back.df["xray"].iloc[2] == "/abs/2.png"
    assert back.image_root == tmp_path / "site"
    # undeclared columns are left as they are (ImageCohortDataset takes them from image_root)
    assert Cohort.read("site/plain.csv").df["xray"].iloc[0] == "x/0.png"


def test_relative_paths_in_memory_start_from_image_root_or_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cohort = _with_images(tmp_path, [f"study/ct/{i}.nii.gz" for i in range(6)])
    raw, _ = read_table(cohort.save(tmp_path / "study" / "a.parquet"))
    assert raw["ct_path"].iloc[0] == "ct/0.nii.gz"  # cwd/study/ct/0.nii.gz, under study/
    rooted = Cohort(cohort.df, image_cols=["ct_path"], image_root=tmp_path / "data")
    raw, _ = read_table(rooted.save(tmp_path / "b.parquet"))
    assert raw["ct_path"].iloc[0] == "data/study/ct/0.nii.gz"
    raw, _ = read_table(rooted.save(tmp_path / "other" / "c.parquet"))
    assert raw["ct_path"].iloc[0] == str(tmp_path / "data" / "study" / "ct" / "0.nii.gz")


def test_manifest_paths_go_through_a_symlinked_directory(tmp_path):
    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    cohort = _with_images(tmp_path, [str(real / "images" / f"{i}.png") for i in range(6)])
    raw, _ = read_table(cohort.save(link / "cohort.parquet"))
    assert raw["ct_path"].iloc[0] == "images/0.png"


def test_hostile_tables_get_fracrisk_errors_not_raw_tracebacks(tmp_path):
    """Issue 14: duplicate columns, boolean times and non-UTF-8 CSVs."""
    from fracrisk.data.cohort import read_table
    from fracrisk.exceptions import CohortValidationError

    good = pd.DataFrame({"time": [1.0, 2.0], "event": [1, 0], "age": [60, 70]})
    twice = pd.concat([good, good[["age"]]], axis=1)
    with pytest.raises(CohortValidationError, match="'age'.*appears more than once"):
        Cohort(twice)
    with pytest.raises(CohortValidationError, match="True/False, not years"):
        Cohort(good.assign(time=[True, False]))
    path = tmp_path / "export.csv"
    path.write_bytes("time,event,städte\n1.0,1,Zürich\n".encode("utf-16"))
    with pytest.raises(ValueError, match="not UTF-8 text.*encoding="):
        read_table(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_explicit_image_root_confines_the_paths(tmp_path, fmt):
    root = tmp_path / "images"
    (root / "ok").mkdir(parents=True)
    (tmp_path / "secret.nii.gz").write_bytes(b"x")
    (root / "link.nii.gz").symlink_to(tmp_path / "secret.nii.gz")
    df = small_df()
    df["ct_path"] = [
        "ok/0.nii.gz",
        "../secret.nii.gz",
        str(tmp_path / "secret.nii.gz"),
        "ok/3.nii.gz",
        "link.nii.gz",
        "ok/../ok/5.nii.gz",
    ]
    path = tmp_path / f"manifest.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path)
    with pytest.raises(CohortValidationError) as caught:
        Cohort.read(path, image_root=root, image_cols=["ct_path"])
    (problem,) = caught.value.problems
    assert problem.column == "ct_path" and "outside the image root" in problem.reason
    assert len(problem.rows) == 3  # ../, the absolute path and the symlink out; not ok/../ok
    allowed = Cohort.read(path, image_root=root, image_cols=["ct_path"], confine_to_root=False)
    assert len(allowed) == 6
    assert len(Cohort.read(path, image_cols=["ct_path"])) == 6  # no explicit root: no confinement


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_cohort_that_imputes_reads_back_with_its_policy(tmp_path, fmt):
    df = pd.DataFrame(
        {"patient_id": ["a", "b", "c"], "time": [1.0, 2.0, 3.0], "event": [0, 1, 0]}
    ).assign(age=[60.0, 70.0, np.nan])
    with pytest.warns(DataWarning, match="missing='impute'"):
        cohort = Cohort(df, covariates=["age"], missing="impute")
    with pytest.warns(DataWarning, match="missing='impute'"):
        back = Cohort.read(cohort.save(tmp_path / f"imputing.{fmt}"))
    assert back.missing_report.policy == "impute" and back.roles()["missing"] == "impute"
    pd.testing.assert_frame_equal(back.df, cohort.df, check_exact=True)


def test_patient_ids_of_mixed_types_are_refused_with_the_rows():
    df = pd.DataFrame({"patient_id": [1, "b", 3], "time": [1.0, 2.0, 3.0], "event": [0, 1, 0]})
    with pytest.raises(CohortValidationError, match=r"row \[1\].*patient ids mix types"):
        Cohort(df)
