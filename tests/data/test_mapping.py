"""fracrisk.data.mapping: hospital exports renamed, recoded and dated, or refused precisely."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from fracrisk.data import Cohort
from fracrisk.data.mapping import ColumnMapping
from fracrisk.exceptions import CohortValidationError


@pytest.fixture
def export() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ID": ["a1", "a2", "a3", "a4"],
            "Age": [65, 72, 80, 58],
            "SEX": ["female", "Male ", "FEMALE", "male"],
            "Prior Fracture": ["yes", "no", "No", "YES"],
            "FU days": [365.25, 730.5, 1826.25, 100.0],
            "status": ["none", "fracture", "died", "none"],
            "enrolled": ["15/06/2012", "01/02/2011", "30/11/2013", "05/05/2010"],
        }
    )


MAPPING = """
columns: {patient_id: ID, age: Age, sex: SEX, prior_fracture: Prior Fracture,
          time: FU days, event: status, entry_date: enrolled}
values:
  sex: {female: F, male: M}
  prior_fracture: {yes: 1, no: 0}
  event: {none: 0, fracture: 1, died: 2}
dates: {entry_date: "%d/%m/%Y"}
time_unit: days
"""


def test_yaml_mapping_renames_recodes_and_parses(export):
    mapping = ColumnMapping.from_dict(yaml.safe_load(MAPPING))
    out = mapping.apply(export)
    assert list(out["sex"]) == ["F", "M", "F", "M"]
    assert list(out["prior_fracture"]) == [1, 0, 0, 1]  # YAML's yes/no booleans matched
    assert list(out["event"]) == [0, 1, 2, 0]
    assert out["time"].tolist() == pytest.approx([1.0, 2.0, 5.0, 100 / 365.25])
    assert out["entry_date"].dt.year.tolist() == [2012, 2011, 2013, 2010]
    # a temporal split now sorts by date, not by the text "15/06/2012"
    assert out.sort_values("entry_date")["patient_id"].tolist() == ["a4", "a2", "a1", "a3"]
    cohort = Cohort(out)
    assert len(cohort) == 4 and cohort.n_events == 1
    assert export.columns[1] == "Age"  # the input is not changed


def test_unmapped_value_is_an_error_naming_rows_and_values(export):
    export.loc[2, "status"] = "lost"
    mapping = ColumnMapping.from_dict(yaml.safe_load(MAPPING))
    with pytest.raises(CohortValidationError) as caught:
        mapping.apply(export, source="export.csv")
    text = str(caught.value)
    assert "export.csv" in text and "event" in text and "lost" in text and "[2]" in text


def test_bad_date_names_the_row_and_format(export):
    export.loc[1, "enrolled"] = "2011-02-01"
    mapping = ColumnMapping.from_dict(yaml.safe_load(MAPPING))
    with pytest.raises(CohortValidationError, match=r"entry_date.*\[1\].*'%d/%m/%Y'"):
        mapping.apply(export)


def test_missing_source_column_suggests_the_closest(export):
    mapping = ColumnMapping(columns={"age": "age "})
    with pytest.raises(CohortValidationError, match="did you mean 'Age'"):
        mapping.apply(export)


def test_missing_values_stay_missing_not_miscoded(export):
    export.loc[0, "SEX"] = None
    out = ColumnMapping(values={"SEX": {"female": "F", "male": "M"}}).apply(export)
    assert pd.isna(out.loc[0, "SEX"]) and out.loc[1, "SEX"] == "M"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"colums": {}}, r"unknown key\(s\) \['colums'\]"),
        ({"time_unit": "hours"}, "time_unit: 'hours' is not one of"),
        ({"values": {"sex": "F"}}, "values.sex must map source values"),
    ],
)
def test_config_errors_name_the_key(section, message):
    with pytest.raises(ValueError, match=message):
        ColumnMapping.from_dict(section, where="cohort.mapping")


def test_canonical_column_spelt_differently_is_refused_not_dropped(export):
    """Without a mapping, 'Age' and 'Prior Fracture' would silently be left out."""
    table = pd.DataFrame(
        {"Age": [60, 70], "Prior Fracture": [0, 1], "time": [1.0, 2.0], "event": [0, 1]}
    )
    with pytest.raises(CohortValidationError) as caught:
        Cohort(table)
    text = str(caught.value)
    assert "looks like the column 'age'" in text and "rename it to 'age'" in text
    assert "looks like the column 'prior_fracture'" in text


def test_round_trip_of_the_mapping():
    mapping = ColumnMapping.from_dict(yaml.safe_load(MAPPING))
    assert ColumnMapping.from_dict(mapping.to_dict()).apply(
        pd.DataFrame(
            {
                "ID": ["x"],
                "Age": [60],
                "SEX": ["male"],
                "Prior Fracture": ["no"],
                "FU days": [10.0],
                "status": ["none"],
                "enrolled": ["01/01/2010"],
            }
        )
    )["sex"].tolist() == ["M"]
