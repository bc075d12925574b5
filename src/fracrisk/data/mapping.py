"""From a hospital export to a cohort table: rename columns, recode values, parse dates.

A :class:`ColumnMapping` says which column of the file holds each fracrisk column
(``age: Age``), how coded values read (``sex: {female: F, male: M}``, ``event: {no: 0,
fracture: 1, died: 2}``), how dates are written (``entry_date: "%d/%m/%Y"``) and the unit of
the follow-up time. :meth:`ColumnMapping.apply` returns the renamed, recoded table and
raises a :class:`~fracrisk.exceptions.CohortValidationError` that names every column, row and
value it cannot map: a value missing from a recoding is an error, never a silent NaN.

Row numbers in messages are the table's index labels: for a CSV or Parquet file read by
fracrisk, the 0-based data rows (header excluded), the same in Python and in the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fracrisk.data.validation import missing_mask, problem_at, suggest_column
from fracrisk.exceptions import CohortValidationError, ValidationProblem

__all__ = ["TIME_UNITS", "ColumnMapping"]

#: Years per unit of follow-up time.
TIME_UNITS: dict[str, float] = {
    "years": 1.0,
    "months": 1.0 / 12.0,
    "weeks": 7.0 / 365.25,
    "days": 1.0 / 365.25,
}

# YAML 1.1 reads yes/no/on/off as booleans: a recoding {yes: 1, no: 0} arrives as
# {True: 1, False: 0}, and then matches every spelling of the word.
_BOOLEAN_WORDS = {
    True: ("true", "yes", "y", "on"),
    False: ("false", "no", "n", "off"),
}


def _expand_booleans(codes: Mapping) -> dict:
    """A recoding with YAML's boolean keys spelt out as the words they stand for."""
    out = {}
    for source_value, value in codes.items():
        if isinstance(source_value, bool):
            out.update(dict.fromkeys(_BOOLEAN_WORDS[source_value], value))
        else:
            out[source_value] = value
    return out


def _key(value) -> str:
    """A value compared loosely: stripped, lower case; 1.0 and 1 are the same."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


@dataclass
class ColumnMapping:
    """How the columns and codes of a source table map to fracrisk's.

    Attributes
    ----------
    columns : dict of str to str
        fracrisk column name -> the source table's column (``{"age": "Age"}``).
    values : dict of str to dict
        fracrisk column -> {source value: fracrisk value}. Matching ignores case and
        surrounding spaces; every non-missing value must be covered.
    dates : dict of str to str
        fracrisk column -> ``strptime`` format of its dates (``"%d/%m/%Y"``); parsed to
        datetimes, so a temporal split sorts by date, not by text.
    time_unit : {"years", "months", "weeks", "days"}, default "years"
        Unit of the follow-up time in the source; converted to years.
    time_col : str, default "time"
        The fracrisk name of the follow-up time (after renaming).
    """

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict] = field(default_factory=dict)
    dates: dict[str, str] = field(default_factory=dict)
    time_unit: str = "years"
    time_col: str = "time"

    @classmethod
    def from_dict(cls, data: Mapping | None, *, where: str = "mapping") -> ColumnMapping:
        """Build from a config section; errors name the key (``where.key``)."""
        data = dict(data or {})
        allowed = {"columns", "values", "dates", "time_unit"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        for key in ("columns", "values", "dates"):
            if not isinstance(data.get(key, {}), Mapping):
                raise ValueError(f"{where}.{key} must be a mapping, got {data[key]!r}")
        for name, codes in dict(data.get("values", {})).items():
            if not isinstance(codes, Mapping) or not codes:
                raise ValueError(
                    f"{where}.values.{name} must map source values to fracrisk values, "
                    f"got {codes!r}"
                )
        unit = data.get("time_unit", "years")
        if unit not in TIME_UNITS:
            raise ValueError(f"{where}.time_unit: {unit!r} is not one of {sorted(TIME_UNITS)}")
        columns = {str(k): str(v) for k, v in dict(data.get("columns", {})).items()}
        dates = {str(k): str(v) for k, v in dict(data.get("dates", {})).items()}
        values = {str(k): _expand_booleans(v) for k, v in dict(data.get("values", {})).items()}
        return cls(columns=columns, values=values, dates=dates, time_unit=unit)

    def to_dict(self) -> dict:
        """The mapping as plain data (the inverse of :meth:`from_dict`)."""
        return {
            "columns": dict(self.columns),
            "values": {k: {str(a): b for a, b in v.items()} for k, v in self.values.items()},
            "dates": dict(self.dates),
            "time_unit": self.time_unit,
        }

    def apply(self, df: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
        """The table renamed, recoded and with dates parsed; the input is not changed.

        Raises
        ------
        CohortValidationError
            Listing every source column that is absent (with the closest name), every
            value no recoding covers and every date that does not match its format.
        """
        if df.columns.has_duplicates:
            repeated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
            raise CohortValidationError(
                [
                    ValidationProblem(c, (), "the column name appears more than once")
                    for c in repeated
                ],
                source,
            )
        problems: list[ValidationProblem] = []
        sources = list(self.columns.values())
        repeated = sorted({s for s in sources if sources.count(s) > 1})
        for column in repeated:
            targets = [t for t, s in self.columns.items() if s == column]
            problems.append(
                ValidationProblem(column, (), f"is mapped to several columns {targets}")
            )
        for target, column in self.columns.items():
            if column not in df.columns:
                problems.append(
                    ValidationProblem(
                        column,
                        (),
                        f"mapped to {target!r} but not in the table"
                        f"{suggest_column(column, df.columns)}",
                    )
                )
            elif target != column and target in df.columns and target not in sources:
                problems.append(
                    ValidationProblem(
                        target,
                        (),
                        f"the table already has a column {target!r}, and {column!r} is "
                        "mapped to it too: drop one of them",
                    )
                )
        if problems:
            raise CohortValidationError(problems, source)
        out = df.rename(columns={s: t for t, s in self.columns.items()})
        for column, codes in self.values.items():
            problems += self._recode(out, column, codes)
        for column, fmt in self.dates.items():
            problems += self._parse_dates(out, column, fmt)
        if self.time_unit != "years" and self.time_col in out.columns:
            numeric = pd.to_numeric(out[self.time_col], errors="coerce")
            out[self.time_col] = numeric * TIME_UNITS[self.time_unit]
        if problems:
            raise CohortValidationError(problems, source)
        return out

    @staticmethod
    def _recode(out: pd.DataFrame, column: str, codes: Mapping) -> list[ValidationProblem]:
        if column not in out.columns:
            return [
                ValidationProblem(
                    column,
                    (),
                    f"has a recoding under values: but is not in the table"
                    f"{suggest_column(column, out.columns)}",
                )
            ]
        codes = _expand_booleans(codes)
        lookup = {_key(source_value): value for source_value, value in codes.items()}
        series = out[column]
        absent = missing_mask(series)
        keys = series.map(lambda v: None if v is None else _key(v))
        unknown = ~absent & ~keys.isin(list(lookup)).to_numpy()
        if unknown.any():
            known = ", ".join(repr(k) for k in codes)
            return [
                problem_at(
                    out,
                    column,
                    unknown,
                    f"value not in the recoding (values: {column}: covers {known})",
                    None,
                )
            ]
        mapped = keys.map(lookup)
        mapped[absent] = np.nan
        out[column] = mapped.infer_objects()
        return []

    @staticmethod
    def _parse_dates(out: pd.DataFrame, column: str, fmt: str) -> list[ValidationProblem]:
        if column not in out.columns:
            return [
                ValidationProblem(
                    column,
                    (),
                    f"has a date format under dates: but is not in the table"
                    f"{suggest_column(column, out.columns)}",
                )
            ]
        series = out[column]
        absent = missing_mask(series)
        parsed = pd.to_datetime(series.astype("string").str.strip(), format=fmt, errors="coerce")
        bad = ~absent & parsed.isna().to_numpy()
        if bad.any():
            return [problem_at(out, column, bad, f"not a date in the format {fmt!r}", None)]
        out[column] = parsed
        return []
