"""Validation of a cohort table at the boundary.

Every check returns :class:`~fracrisk.exceptions.ValidationProblem` objects naming the column,
the offending rows (index labels), the reason and the bad values; the caller raises them all at
once as a :class:`~fracrisk.exceptions.CohortValidationError`. Nothing here changes the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from fracrisk.data.schema import CANONICAL_CLINICAL, COLUMN_SPECS, EVENT_CODES, ColumnSpec
from fracrisk.exceptions import ValidationProblem

__all__ = ["find_problems", "missing_mask", "problem_at"]


def problem_at(
    df: pd.DataFrame,
    column: str,
    mask: np.ndarray,
    reason: str,
    id_col: str | None,
    *,
    show_values: bool = True,
) -> ValidationProblem:
    """A problem in ``column`` at the rows where ``mask`` is True, with their ids and values."""
    rows = df.index[mask]
    values = tuple(df.loc[mask, column].tolist()) if show_values else ()
    ids = tuple(df.loc[mask, id_col].tolist()) if id_col and id_col in df.columns else None
    return ValidationProblem(column, tuple(rows.tolist()), reason, values, ids)


def normalise_name(name: str) -> str:
    """A column name compared loosely: case, spaces, hyphens and dots ignored."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def suggest_column(name: str, columns) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``columns``, or ``""``."""
    import difflib

    by_loose = {normalise_name(c): str(c) for c in columns}
    if normalise_name(name) in by_loose:
        return f" (did you mean {by_loose[normalise_name(name)]!r}?)"
    close = difflib.get_close_matches(str(name), [str(c) for c in columns], n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def missing_mask(series: pd.Series) -> np.ndarray:
    """Boolean mask of missing entries (NaN, None, NaT, pandas NA)."""
    return series.isna().to_numpy()


def _numeric_view(df, column, id_col, problems) -> np.ndarray | None:
    """Return the column as float64, or record a wrong-type problem and return None."""
    series = df[column]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float)
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float, na_value=np.nan)
    coerced = pd.to_numeric(series, errors="coerce")
    bad = (coerced.isna() & series.notna()).to_numpy()
    problems.append(
        problem_at(df, column, bad, "expected numbers, found non-numeric values", id_col)
        if bad.any()
        else ValidationProblem(column, (), f"expected a numeric dtype, found {series.dtype}")
    )
    return None


def _check_numeric(df, spec: ColumnSpec, id_col, problems, *, allow_nan: bool) -> None:
    values = _numeric_view(df, spec.name, id_col, problems)
    if values is None:
        return
    nan = np.isnan(values)
    if nan.any() and not allow_nan:
        problems.append(
            problem_at(df, spec.name, nan, "missing value (NaN)", id_col, show_values=False)
        )
    inf = np.isinf(values)
    if inf.any():
        problems.append(problem_at(df, spec.name, inf, "value is infinite", id_col))
    finite = np.isfinite(values)
    if spec.low is not None and spec.high is not None:
        out = finite & ((values < spec.low) | (values > spec.high))
        if out.any():
            unit = f" {spec.unit}" if spec.unit else ""
            problems.append(
                problem_at(
                    df,
                    spec.name,
                    out,
                    f"out of range: {spec.description or spec.name} must be within "
                    f"[{spec.low:g}, {spec.high:g}]{unit}",
                    id_col,
                )
            )


def _check_binary(df, spec: ColumnSpec, id_col, problems, *, allow_nan: bool) -> None:
    values = _numeric_view(df, spec.name, id_col, problems)
    if values is None:
        return
    nan = np.isnan(values)
    if nan.any() and not allow_nan:
        problems.append(
            problem_at(df, spec.name, nan, "missing value (NaN)", id_col, show_values=False)
        )
    bad = ~nan & (values != 0) & (values != 1)
    if bad.any():
        problems.append(problem_at(df, spec.name, bad, "must be 0 or 1", id_col))


def _check_category(df, spec: ColumnSpec, id_col, problems, *, allow_nan: bool) -> None:
    series = df[spec.name]
    nan = missing_mask(series)
    if nan.any() and not allow_nan:
        problems.append(
            problem_at(df, spec.name, nan, "missing value (NaN)", id_col, show_values=False)
        )
    bad = ~nan & ~series.isin(spec.categories).to_numpy()
    if bad.any():
        problems.append(
            problem_at(
                df,
                spec.name,
                bad,
                f"unknown code; allowed codes are {', '.join(spec.categories)}",
                id_col,
            )
        )


def _check_time(df, column, id_col, problems, *, allow_nan: bool) -> None:
    if pd.api.types.is_bool_dtype(df[column]):
        problems.append(
            ValidationProblem(
                column, (), "follow-up time is True/False, not years; give the time in years"
            )
        )
        return
    values = _numeric_view(df, column, id_col, problems)
    if values is None:
        return
    nan = np.isnan(values)
    if nan.any() and not allow_nan:
        problems.append(
            problem_at(df, column, nan, "missing follow-up time (NaN)", id_col, show_values=False)
        )
    inf = np.isinf(values)
    if inf.any():
        problems.append(problem_at(df, column, inf, "follow-up time must be finite", id_col))
    nonpos = np.isfinite(values) & (values <= 0)
    if nonpos.any():
        problems.append(problem_at(df, column, nonpos, "follow-up time must be > 0 years", id_col))


def _check_event(df, column, id_col, problems, *, allow_nan: bool) -> None:
    values = _numeric_view(df, column, id_col, problems)
    if values is None:
        return
    nan = np.isnan(values)
    if nan.any() and not allow_nan:
        problems.append(
            problem_at(df, column, nan, "missing event code (NaN)", id_col, show_values=False)
        )
    bad = ~nan & ~np.isin(values, list(EVENT_CODES))
    if bad.any():
        codes = ", ".join(f"{k} {v}" for k, v in EVENT_CODES.items())
        problems.append(
            problem_at(df, column, bad, f"unknown event code; allowed: {codes}", id_col)
        )


def _check_id(df, column, problems, *, allow_nan: bool) -> None:
    series = df[column]
    nan = missing_mask(series)
    if nan.any() and not allow_nan:
        problems.append(problem_at(df, column, nan, "missing patient id", None, show_values=False))
    dup = series.duplicated(keep=False).to_numpy() & ~nan
    if dup.any():
        problems.append(problem_at(df, column, dup, "duplicated patient id", None))
    if series.dtype == object:  # ids of one type only: 1 and "1" are not the same patient
        kinds = np.array([_id_kind(v) for v in series], dtype=object)
        known = kinds[~nan]
        if len(set(known)) > 1:
            values, counts = np.unique(known.astype(str), return_counts=True)
            minority = kinds == values[np.argmin(counts)]
            problems.append(
                problem_at(
                    df,
                    column,
                    minority & ~nan,
                    f"patient ids mix types ({', '.join(sorted(values))}); these rows differ "
                    f"from the rest: make them one type, e.g. df[{column!r}].astype(str)",
                    None,
                )
            )


def _id_kind(value) -> str:
    """``number``, ``text`` or the type name of one patient id."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    ):
        return "number"
    return type(value).__name__


def _check_extra(df, column, id_col, problems, *, allow_nan: bool) -> None:
    series = df[column]
    nan = missing_mask(series)
    if nan.any() and not allow_nan:
        problems.append(
            problem_at(df, column, nan, "missing value (NaN)", id_col, show_values=False)
        )
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        inf = np.isinf(series.to_numpy(dtype=float, na_value=np.nan))
        if inf.any():
            problems.append(problem_at(df, column, inf, "value is infinite", id_col))


def find_problems(
    df: pd.DataFrame,
    *,
    time_col: str,
    event_col: str,
    id_col: str | None,
    covariates: Sequence[str],
    image_cols: Iterable[str] = (),
    allow_missing: Iterable[str] = (),
) -> list[ValidationProblem]:
    """Check a cohort table and return every problem found (an empty list if valid).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    time_col, event_col : str
        Outcome columns: time in years (> 0, finite) and event code (0, 1 or 2).
    id_col : str or None
        Patient id column (unique, not missing), if any.
    covariates : sequence of str
        Extra covariates the user named; canonical clinical columns are always checked
        when present, whether or not they are named here.
    image_cols : iterable of str
        Image path columns; they must exist and not be missing.
    allow_missing : iterable of str
        Columns in which missing values are accepted (the ``missing="impute"`` policy).
    """
    problems: list[ValidationProblem] = []
    allow = set(allow_missing)
    if df.columns.has_duplicates:
        repeated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        return [
            ValidationProblem(
                c, (), "the column name appears more than once; rename or drop the copies"
            )
            for c in repeated
        ]
    required = [time_col, event_col, *([id_col] if id_col else []), *covariates, *image_cols]
    absent = [c for c in dict.fromkeys(required) if c not in df.columns]
    for column in absent:
        hint = suggest_column(column, df.columns)
        problems.append(
            ValidationProblem(
                column,
                (),
                f"required column is missing{hint}; the table has: "
                f"{', '.join(map(str, df.columns))}",
            )
        )
    # A canonical column spelt differently ("Age", "SEX", "Prior Fracture") would silently be
    # left out of the covariates: refuse it with the name to use.
    present = {normalise_name(c): c for c in df.columns if isinstance(c, str)}
    for name in (*CANONICAL_CLINICAL, time_col, event_col):
        found = present.get(normalise_name(name))
        if name not in df.columns and found is not None and found not in required:
            problems.append(
                ValidationProblem(
                    str(found),
                    (),
                    f"looks like the column {name!r} but is not named so, and would be left "
                    f"out; rename it to {name!r} (in a run config: columns: {{{name}: "
                    f"{found!r}}})",
                )
            )
    if df.index.has_duplicates:
        dup = df.index.duplicated(keep=False)
        problems.append(
            ValidationProblem(
                "<index>", tuple(df.index[dup].tolist()), "duplicated row labels; reset the index"
            )
        )
    if len(df) == 0:
        problems.append(ValidationProblem("<table>", (), "the table has no rows"))
    if problems:
        return problems

    _check_time(df, time_col, id_col, problems, allow_nan=time_col in allow)
    _check_event(df, event_col, id_col, problems, allow_nan=event_col in allow)
    if id_col:
        _check_id(df, id_col, problems, allow_nan=id_col in allow)
    checkers = {"numeric": _check_numeric, "binary": _check_binary, "category": _check_category}
    for name, spec in COLUMN_SPECS.items():
        if name in df.columns:
            checkers[spec.kind](df, spec, id_col, problems, allow_nan=name in allow)
    for column in covariates:
        if column not in COLUMN_SPECS:
            _check_extra(df, column, id_col, problems, allow_nan=column in allow)
    for column in image_cols:
        nan = missing_mask(df[column])
        if nan.any() and column not in allow:
            problems.append(
                problem_at(df, column, nan, "missing image path", id_col, show_values=False)
            )
    return problems
