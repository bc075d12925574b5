"""fracrisk.run: reading a run's cohort with its config (roles from the file, then the config)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fracrisk.config import read_config
from fracrisk.data import Cohort
from fracrisk.run import load_cohort
from fracrisk.simulate import clinical_cohort


def _config(folder: Path, cohort_section: str) -> Path:
    path = folder / "run.yaml"
    path.write_text(f"cohort: {cohort_section}\nmodels:\n  - {{name: CoxPH, type: coxph}}\n")
    return path


@pytest.fixture
def saved(tmp_path):
    """A cohort saved with roles that differ from the defaults: its own names and images."""
    simulated = clinical_cohort(60, seed=1)
    df = simulated.df.rename(columns={"time": "years", "patient_id": "pid"})
    (tmp_path / "img").mkdir()
    df["xray"] = [f"img/x{k}.png" for k in range(len(df))]
    cohort = Cohort(
        df,
        time_col="years",
        id_col="pid",
        image_cols=["xray"],
        image_root=tmp_path,
        truth=simulated.truth,
    )
    cohort.save(tmp_path / "cohort.parquet")
    return tmp_path, cohort


def test_a_config_keeps_the_roles_stored_in_the_file(saved):
    folder, original = saved
    config = read_config(_config(folder, "{path: cohort.parquet}"))
    back = load_cohort(config, config.cohort.path)
    assert (back.time_col, back.id_col, back.image_cols) == ("years", "pid", ("xray",))
    assert list(back.ids) == list(original.ids)
    # the stored image paths are made absolute against the file's folder
    assert back.df["xray"].iloc[0] == str(folder / "img" / "x0.png")
    assert back.truth is not None and back.truth.equals(original.truth)  # the oracle too


def test_keys_the_config_sets_override_the_file(saved):
    folder, _ = saved
    config = read_config(_config(folder, "{path: cohort.parquet, image_columns: []}"))
    assert load_cohort(config, config.cohort.path).image_cols == ()
    config = read_config(_config(folder, "{path: cohort.parquet, missing: impute}"))
    assert load_cohort(config, config.cohort.path).missing_report.policy == "impute"


def test_a_plain_table_gets_the_cohort_defaults_and_the_mapping(tmp_path):
    df = clinical_cohort(40, seed=2).df.rename(columns={"age": "Age"})
    df.to_csv(tmp_path / "export.csv", index=False)
    config = read_config(_config(tmp_path, "{path: export.csv, mapping: {columns: {age: Age}}}"))
    back = load_cohort(config, config.cohort.path)
    assert "age" in back.df.columns and back.missing_report.policy == "error"
    assert len(back) == 40 and back.image_cols == ()


def test_on_error_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"cohort.on_error: 'ignore' is not one of"):
        read_config(_config(tmp_path, "{path: x.csv, on_error: ignore}"))
    assert read_config(_config(tmp_path, "{path: x.csv}")).cohort.on_error == "raise"


def test_cohort_without_leaves_out_named_rows_only(saved):
    _, cohort = saved
    labels = cohort.df.index[[3, 10]]
    kept = cohort.without(labels)
    assert len(kept) == len(cohort) - 2 and not kept.df.index.isin(labels).any()
    assert list(kept.df.index) == [i for i in cohort.df.index if i not in set(labels)]
    with pytest.raises(KeyError, match="not rows of the cohort"):
        cohort.without(pd.Index([10_000]))
