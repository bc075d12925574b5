"""The :class:`Cohort`: one row per patient, plus the role of each column."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._io import atomic_path, file_sha256
from fracrisk.data.mapping import ColumnMapping
from fracrisk.data.schema import BINARY_RISK_FACTORS, CANONICAL_CLINICAL, COLUMN_SPECS
from fracrisk.data.validation import find_problems, missing_mask, problem_at
from fracrisk.exceptions import CohortValidationError, DataWarning, ValidationProblem

__all__ = [
    "Cohort",
    "MissingReport",
    "as_cohort",
    "manifest_image_path",
    "read_table",
    "resolve_image_path",
    "table_and_ids",
]

_MISSING_POLICIES = ("error", "drop", "impute")
_ROLES_KEY = b"fracrisk.cohort"


@dataclass(frozen=True)
class MissingReport:
    """What the ``missing=`` policy did.

    Attributes
    ----------
    policy : str
        ``"error"``, ``"drop"`` or ``"impute"``.
    n_rows_in, n_rows_out : int
        Rows before and after the policy.
    missing_by_column : dict
        Number of missing values per column, before the policy.
    dropped_rows : tuple
        Index labels of the rows dropped (``"drop"`` only).
    """

    policy: str
    n_rows_in: int
    n_rows_out: int
    missing_by_column: dict[str, int] = field(default_factory=dict)
    dropped_rows: tuple = ()

    def __str__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.missing_by_column.items()) or "none"
        action = {
            "error": "none allowed",
            "drop": f"dropped {len(self.dropped_rows)} row(s)",
            "impute": "kept; imputed by each model from its training data",
        }[self.policy]
        return (
            f"missing={self.policy!r}: {self.n_rows_in} rows in, {self.n_rows_out} out; "
            f"missing values by column: {counts}; {action}"
        )


class Cohort:
    """A cohort table: one row per patient, with the role of each column.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient. Must hold the outcome columns; the canonical clinical columns
        (``fracrisk.data.CANONICAL_CLINICAL``: FRAX's inputs) are validated whenever present.
    time_col : str, default "time"
        Follow-up time in **years** from baseline to the first event or censoring (> 0).
    event_col : str, default "event"
        0 censored, 1 fracture, 2 death (a competing event). Plain 0/1 is allowed.
    id_col : str or None, default "patient_id"
        Patient identifier, unique. ``None`` if the table has none; a column of that name
        is used only if present when left at its default.
    image_cols : sequence of str, default ()
        Columns holding image file paths (CT volumes, radiographs). Relative paths start
        from ``image_root``.
    covariates : sequence of str, default ()
        Extra covariates beyond the canonical clinical columns that models may use.
    missing : {"error", "drop", "impute"}, default "error"
        What to do with missing values in the outcome, id, covariate and image columns.
        ``"error"`` rejects them (listing every row); ``"drop"`` removes the rows and warns
        with the counts; ``"impute"`` keeps missing covariates so that each model imputes
        them from its *training* data (median for numbers, most frequent value for flags
        and categories); a missing outcome or id is still an error. The counts are in
        :attr:`missing_report`.
    truth : pandas.DataFrame, optional
        Simulated ground truth aligned row for row with ``df`` (never used as covariates).
    source : str, optional
        Where the table came from, quoted in error messages.
    image_root : path-like, optional
        Directory that relative image paths start from (:attr:`image_root`). Default: the
        working directory. :meth:`read` sets it to the manifest's directory.

    Attributes
    ----------
    image_root : pathlib.Path or None
        Directory that relative image paths in the table start from (None: the working
        directory). :class:`~fracrisk.data.ImageCohortDataset` uses it when it is given
        no ``image_root`` of its own.

    Notes
    -----
    **Image paths in files.** :meth:`save` writes the paths of the ``image_cols`` relative
    to the file's directory when the image lies under it (POSIX separators), and absolute
    otherwise; :meth:`read` resolves relative paths against the file's directory (or its
    ``image_root=``), never the working directory, and gives absolute paths. A folder
    holding a manifest and its images can therefore be moved, copied or mounted elsewhere
    and still be read.

    Raises
    ------
    CohortValidationError
        Listing every problem with its column, rows, reason and values.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"time": [1.5, 3.0], "event": [1, 0], "age": [71, 64]})
    >>> cohort = Cohort(df)
    >>> cohort.n_events
    1
    >>> Cohort(pd.DataFrame({"time": [-1.0], "event": [1]}))
    Traceback (most recent call last):
    ...
    fracrisk.exceptions.CohortValidationError: 1 problem(s) found:
      - column 'time', row [0]: follow-up time must be > 0 years; got -1.0
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        time_col: str = "time",
        event_col: str = "event",
        id_col: str | None = "patient_id",
        image_cols: Sequence[str] = (),
        covariates: Sequence[str] = (),
        missing: str = "error",
        truth: pd.DataFrame | None = None,
        source: str | None = None,
        image_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        if missing not in _MISSING_POLICIES:
            raise ValueError(f"missing must be one of {_MISSING_POLICIES}, got {missing!r}")
        if id_col == "patient_id" and id_col not in df.columns:
            id_col = None
        self.time_col, self.event_col, self.id_col = time_col, event_col, id_col
        self.image_cols = tuple(image_cols)
        self.covariates = tuple(covariates)
        self.source = source
        self.image_root = None if image_root is None else Path(image_root)
        if truth is not None and len(truth) != len(df):
            raise ValueError(f"truth has {len(truth)} rows but df has {len(df)}")

        role_cols = [c for c in self._role_columns() if c in df.columns]
        missing_counts = {c: int(n) for c in role_cols if (n := missing_mask(df[c]).sum())}
        allow = role_cols if missing in ("drop", "impute") else []
        problems = find_problems(
            df,
            time_col=time_col,
            event_col=event_col,
            id_col=id_col,
            covariates=self.covariates,
            image_cols=self.image_cols,
            allow_missing=allow,
        )
        if missing == "impute":
            # The outcome, the id and image paths cannot be imputed.
            for column in (time_col, event_col, id_col, *self.image_cols):
                if column and column in df.columns and missing_mask(df[column]).any():
                    problems.append(
                        problem_at(
                            df,
                            column,
                            missing_mask(df[column]),
                            "missing value cannot be imputed",
                            id_col,
                            show_values=False,
                        )
                    )
        if problems:
            raise CohortValidationError(problems, source)

        df = df.copy()
        dropped: tuple = ()
        if missing == "drop" and missing_counts:
            rows_missing = df[list(missing_counts)].isna().any(axis=1).to_numpy()
            dropped = tuple(df.index[rows_missing].tolist())
            df = df.loc[~rows_missing]
            if truth is not None:
                truth = truth.loc[~rows_missing]
            if len(df) == 0:
                raise CohortValidationError(
                    [
                        ValidationProblem(
                            "<table>", dropped, "every row has a missing value; nothing is left"
                        )
                    ],
                    source,
                )
        self.missing_report = MissingReport(
            missing, len(df) + len(dropped), len(df), missing_counts, dropped
        )
        if missing != "error" and missing_counts:
            warnings.warn(str(self.missing_report), DataWarning, stacklevel=2)
        self.df = _normalise_dtypes(df, time_col, event_col)
        self.truth = (
            truth.reset_index(drop=True).set_axis(self.df.index) if truth is not None else None
        )

    # ------------------------------------------------------------------ roles
    def _role_columns(self) -> list[str]:
        cols = [
            self.time_col,
            self.event_col,
            *([self.id_col] if self.id_col else []),
            *CANONICAL_CLINICAL,
            *self.covariates,
            *self.image_cols,
        ]
        return list(dict.fromkeys(cols))

    @property
    def clinical_columns(self) -> list[str]:
        """Canonical clinical columns present in the table, in canonical order."""
        return [c for c in CANONICAL_CLINICAL if c in self.df.columns]

    @property
    def default_covariates(self) -> list[str]:
        """Covariates a model uses when none are named: the clinical columns plus extras.

        The femoral-neck T-score is a linear transform of the BMD (FRAX takes either),
        so when both are present only the T-score is used: together they are collinear.
        """
        columns = self.clinical_columns
        if "femoral_neck_t_score" in columns and "femoral_neck_bmd" in columns:
            columns.remove("femoral_neck_bmd")
        return list(dict.fromkeys([*columns, *self.covariates]))

    @property
    def time(self) -> np.ndarray:
        """Follow-up time in years, float64, shape (n_patients,)."""
        return self.df[self.time_col].to_numpy(dtype=np.float64)

    @property
    def event(self) -> np.ndarray:
        """Event code (0 censored, 1 fracture, 2 competing death), int64, shape (n_patients,)."""
        return self.df[self.event_col].to_numpy(dtype=np.int64)

    @property
    def ids(self) -> pd.Index:
        """Patient ids if the table has an id column, else the row labels."""
        return pd.Index(self.df[self.id_col], name=self.id_col) if self.id_col else self.df.index

    @property
    def n_events(self) -> int:
        """Number of fractures (event code 1)."""
        return int((self.event == 1).sum())

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        counts = np.bincount(self.event, minlength=3)
        return (
            f"Cohort(n={len(self)}, fractures={counts[1]}, deaths={counts[2]}, "
            f"censored={counts[0]}, median follow-up={np.median(self.time):.2f} y, "
            f"covariates={self.default_covariates})"
        )

    def without(self, labels: Sequence) -> Cohort:
        """A new cohort without the rows ``labels`` (row labels of :attr:`df`), same roles.

        For leaving out rows found unusable after validation (e.g. an unreadable image);
        a label that is not a row is an error, so nothing is left out by mistake.
        """
        labels = pd.Index(labels)
        absent = labels.difference(self.df.index)
        if len(absent):
            raise KeyError(f"not rows of the cohort: {list(absent[:5])}")
        return self._with_rows(self.df.index.difference(labels, sort=False))

    def _with_rows(self, index: pd.Index) -> Cohort:
        """A new cohort restricted to the rows ``index`` (labels), sharing the roles."""
        new = object.__new__(Cohort)
        new.__dict__.update(self.__dict__)
        new.df = self.df.loc[index]
        new.truth = self.truth.loc[index] if self.truth is not None else None
        return new

    def check_covariates(self, columns: Sequence[str]) -> None:
        """Validate ``columns`` as covariates: present, and complete unless imputing.

        A model may use columns that were not declared when the cohort was built; they get
        the same checks here (missing values are an error unless the cohort's policy is
        ``"impute"``), so nothing is imputed or dropped silently.
        """
        # Under "impute" every column may hold gaps (the models impute them from their
        # training rows), not only the covariates asked for here.
        allow = list(self.df.columns) if self.missing_report.policy == "impute" else []
        problems = find_problems(
            self.df,
            time_col=self.time_col,
            event_col=self.event_col,
            id_col=None,
            covariates=list(columns),
            allow_missing=allow,
        )
        if problems:
            raise CohortValidationError(problems, self.source)

    def roles(self) -> dict:
        """Column roles as a JSON-serialisable dict (used by :meth:`save`)."""
        return {
            "time_col": self.time_col,
            "event_col": self.event_col,
            "id_col": self.id_col,
            "image_cols": list(self.image_cols),
            "covariates": list(self.covariates),
            "missing": self.missing_report.policy,
        }

    # ------------------------------------------------------------------ splits
    def split(
        self,
        test_size: float = 0.2,
        *,
        method: str = "stratified",
        by: str | None = None,
        seed: int = 0,
    ) -> tuple[Cohort, Cohort]:
        """Split into (train, test) cohorts; see :func:`fracrisk.data.split_cohort`."""
        from fracrisk.data.splits import split_cohort

        return split_cohort(self, test_size, method=method, by=by, seed=seed)

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the table to CSV or Parquet (by extension), atomically, with its roles.

        Parquet keeps the roles in the file's metadata; CSV gets a sidecar
        ``<name>.cohort.json`` with the roles and column dtypes, so :meth:`read`
        round-trips exactly. ``truth`` (if any) is written beside as ``<stem>.truth<ext>``.

        Image paths (the ``image_cols``) are written relative to the file's directory when
        the image lies under it, else absolute (:func:`manifest_image_path`; a relative path
        in the table is first taken from :attr:`image_root`, or the working directory), so
        that the folder can be moved. :meth:`read` gives them back absolute.

        Parameters
        ----------
        path : path-like
            ``.csv`` or ``.parquet`` file.
        overwrite : bool, default False
            Replace an existing file.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it")
        meta = {
            "roles": self.roles(),
            "dtypes": {c: str(t) for c, t in self.df.dtypes.items()},
            "index": list(self.df.index.names),
        }
        df = self.df
        columns = [c for c in self.image_cols if c in df.columns]
        if columns:
            df = df.copy()
            for column in columns:
                df[column] = [
                    manifest_image_path(value, path.parent, image_root=self.image_root)
                    for value in df[column]
                ]
        if self.truth is not None:
            meta["truth_sha256"] = _replace_truth(self.truth, path)
        _write_table(df, path, meta)
        for stale in (_truth_paths(path)[1],):  # the previous truth is no longer needed
            stale.unlink(missing_ok=True)
        return path

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        *,
        image_root: str | os.PathLike[str] | None = None,
        confine_to_root: bool | None = None,
        mapping: ColumnMapping | None = None,
        **kwargs,
    ) -> Cohort:
        """Read a cohort from CSV or Parquet; roles come from the file, then from ``kwargs``.

        Parameters
        ----------
        path : path-like
            ``.csv`` or ``.parquet`` file (a plain table, or one written by :meth:`save`).
        image_root : path-like, optional
            Directory that relative image paths in the file start from. Default: the
            file's own directory (not the working directory), so that a moved folder of a
            manifest and its images still reads.
        confine_to_root : bool, optional
            Refuse image paths that resolve outside the image root (``../``, absolute
            paths elsewhere, symlinks out): a :class:`CohortValidationError` names their
            rows. Default: True when ``image_root`` is given, else False.
        mapping : ColumnMapping, optional
            Applied to the table first (renames, recodes, dates, time unit), for exports
            whose names and codes are not fracrisk's.
        **kwargs
            Roles and options of :class:`Cohort` (e.g. ``image_cols=``, ``missing=``),
            overriding those stored in the file.

        Returns
        -------
        Cohort
            With the ``image_cols`` as absolute paths (:func:`resolve_image_path`) and
            :attr:`image_root` set to the directory they were resolved against (used by
            :class:`~fracrisk.data.ImageCohortDataset` for any other relative path column).
        """
        path = Path(path)
        df, meta = read_table(path)
        if mapping is not None:
            df = mapping.apply(df, source=str(path))
        roles = dict(meta.get("roles", {})) if meta else {}
        roles.update(kwargs)
        if "truth" not in roles:
            truth = _read_truth(path, (meta or {}).get("truth_sha256"))
            if truth is not None:
                roles["truth"] = truth
        root = Path(os.path.abspath(path.parent if image_root is None else image_root))
        confine = image_root is not None if confine_to_root is None else bool(confine_to_root)
        problems = []
        for column in roles.get("image_cols", ()):
            if column in df.columns:
                df[column] = [resolve_image_path(value, root) for value in df[column]]
                if confine:
                    outside = _outside_root(df[column], root)
                    if outside.any():
                        problems.append(
                            problem_at(
                                df,
                                column,
                                outside,
                                f"the image path resolves outside the image root {str(root)!r}; "
                                "pass confine_to_root=False to allow it",
                                roles.get("id_col", "patient_id"),
                            )
                        )
        if problems:
            raise CohortValidationError(problems, str(path))
        return cls(df, source=str(path), image_root=root, **roles)


def table_and_ids(data: Cohort | pd.DataFrame) -> tuple[pd.DataFrame, pd.Index]:
    """The table and the patient labels every prediction is indexed by.

    A :class:`Cohort` gives its ids; a DataFrame its ``patient_id`` column when it has one,
    else its index.
    """
    if isinstance(data, Cohort):
        return data.df, data.ids
    if isinstance(data, pd.DataFrame):
        if "patient_id" in data.columns:
            return data, pd.Index(data["patient_id"], name="patient_id")
        return data, data.index
    raise TypeError(f"expected a fracrisk Cohort or a pandas DataFrame, got {type(data).__name__}")


def as_cohort(data: Cohort | pd.DataFrame, **kwargs) -> Cohort:
    """Return ``data`` if it is a :class:`Cohort`, else validate the DataFrame into one."""
    if isinstance(data, Cohort):
        return data
    if isinstance(data, pd.DataFrame):
        return Cohort(data, **kwargs)
    raise TypeError(f"expected a fracrisk Cohort or a pandas DataFrame, got {type(data).__name__}")


def _is_path_value(value) -> bool:
    """A path to rewrite: a non-blank string or path object (missing values are kept)."""
    return isinstance(value, (str, os.PathLike)) and bool(str(value).strip())


def manifest_image_path(
    value,
    manifest_dir: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
):
    """How a manifest in ``manifest_dir`` stores an image path: relative when it can be.

    Parameters
    ----------
    value : str or path-like
        The image path as the table holds it; a relative path starts from ``image_root``.
        Anything else (a missing value) is returned unchanged.
    manifest_dir : path-like
        Directory of the manifest file.
    image_root : path-like, optional
        Directory that a relative ``value`` starts from (default: the working directory).

    Returns
    -------
    str or object
        The path relative to ``manifest_dir``, with ``/`` separators, when the image lies
        under it (also through a symlinked directory); else the absolute path.

    Examples
    --------
    >>> manifest_image_path("/study/images/p1.nii.gz", "/study")
    'images/p1.nii.gz'
    >>> manifest_image_path("/elsewhere/p1.nii.gz", "/study")
    '/elsewhere/p1.nii.gz'
    >>> manifest_image_path("p1.png", "/study", image_root="/study/xray")
    'xray/p1.png'
    """
    if not _is_path_value(value):
        return value
    image = Path(value)
    if not image.is_absolute():
        image = Path(image_root if image_root is not None else os.getcwd()) / image
    image = Path(os.path.abspath(image))
    base = Path(os.path.abspath(manifest_dir))
    candidates = [(image, base)]
    # The same directories reached through symlinks (the image's own name is kept, so a
    # symlinked image file is stored as the link, not its target).
    candidates.append(
        (Path(os.path.realpath(image.parent)) / image.name, Path(os.path.realpath(base)))
    )
    for path, root in candidates:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(image)


def _outside_root(values: pd.Series, root: Path) -> np.ndarray:
    """Which paths resolve (symlinks followed) outside ``root``; missing values do not."""
    real_root = os.path.realpath(root)
    out = np.zeros(len(values), dtype=bool)
    for k, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            continue
        try:
            target = os.path.realpath(str(value))
        except (OSError, RuntimeError):  # a symlink loop
            out[k] = True
            continue
        out[k] = os.path.commonpath([real_root, target]) != real_root
    return out


def resolve_image_path(value, base: str | os.PathLike[str]):
    """An image path read from a manifest, made absolute against ``base``.

    Parameters
    ----------
    value : str or path-like
        The path as the manifest stores it. Absolute paths and missing values are
        returned unchanged.
    base : path-like
        The directory relative paths start from: the manifest's directory, or the
        ``image_root`` given.

    Returns
    -------
    str or object
        ``str(base / value)`` for a relative path (``base`` made absolute), else ``value``.

    Examples
    --------
    >>> resolve_image_path("images/p1.nii.gz", "/study")
    '/study/images/p1.nii.gz'
    >>> resolve_image_path("/data/p1.nii.gz", "/study")
    '/data/p1.nii.gz'
    """
    if not _is_path_value(value) or Path(value).is_absolute():
        return value
    return str(Path(os.path.abspath(base)) / value)


def _normalise_dtypes(df: pd.DataFrame, time_col: str, event_col: str) -> pd.DataFrame:
    """Give validated columns stable dtypes so that save/load round-trips exactly."""
    df[time_col] = df[time_col].astype(np.float64)
    if not df[event_col].isna().any():
        df[event_col] = df[event_col].astype(np.int64)
    for name in BINARY_RISK_FACTORS:
        if name in df.columns and not df[name].isna().any():
            df[name] = df[name].astype(np.int64)
    for name, spec in COLUMN_SPECS.items():
        if name in df.columns and spec.kind == "numeric":
            df[name] = df[name].astype(np.float64)
    return df


_SIDECAR_FORMAT = "fracrisk-cohort-sidecar/2"


def _truth_paths(path: Path) -> tuple[Path, Path]:
    """The truth beside a table, and the previous truth kept while the table is replaced."""
    return (
        path.with_name(f"{path.stem}.truth{path.suffix}"),
        path.with_name(f"{path.stem}.truth.previous{path.suffix}"),
    )


def _replace_truth(truth: pd.DataFrame, path: Path) -> str:
    """Write the new truth; keep the one the current table refers to as ``.previous``.

    With the table's metadata naming its truth's SHA-256, a kill at any moment leaves the
    old table with its old truth, or the new table with its new truth. Returns the digest.
    """
    current, previous = _truth_paths(path)
    wanted = None
    if path.exists():
        try:
            wanted = (read_table(path)[1] or {}).get("truth_sha256")
        except (OSError, ValueError):
            wanted = None
    if wanted is not None:
        if current.exists() and file_sha256(current) == wanted:
            os.replace(current, previous)  # atomic; the old table now reads this one
        elif not (previous.exists() and file_sha256(previous) == wanted):
            previous.unlink(missing_ok=True)
    _write_table(truth, current, None)
    return file_sha256(current)


def _read_truth(path: Path, digest: str | None) -> pd.DataFrame | None:
    """The truth that belongs to the table at ``path`` (by its SHA-256 when recorded)."""
    for candidate in _truth_paths(path):
        if candidate.exists() and (digest is None or file_sha256(candidate) == digest):
            return read_table(candidate)[0]
        if digest is None:
            return None  # an older save: only the plain truth file counts
    if digest is not None and any(p.exists() for p in _truth_paths(path)):
        warnings.warn(
            f"the truth file beside {str(path)!r} belongs to another version of the table; "
            "it is left out",
            DataWarning,
            stacklevel=3,
        )
    return None


def _sidecar_versions(sidecar: Path) -> dict[str, dict]:
    """The sidecar's metadata per CSV digest ({} if absent or unreadable; old format: '')."""
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict) and data.get("format") == _SIDECAR_FORMAT:
        return dict(data.get("versions", {}))
    return {"": data} if isinstance(data, dict) else {}


def _write_table(df: pd.DataFrame, path: Path, meta: dict | None) -> None:
    """Write a table atomically; a CSV's metadata goes to a sidecar that survives a kill.

    The sidecar maps the SHA-256 of each CSV it describes to that CSV's metadata. While a
    CSV is replaced it lists the old and the new one, so whichever file a kill leaves in
    place reads back with its own roles and dtypes; afterwards only the new one.
    """
    from fracrisk._io import atomic_write_json

    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"unsupported table format {path.suffix!r}; use .csv or .parquet")
    sidecar = path.with_name(path.name + ".cohort.json")
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=True)
            if meta is not None:
                table = table.replace_schema_metadata(
                    {**(table.schema.metadata or {}), _ROLES_KEY: json.dumps(meta).encode()}
                )
            pq.write_table(table, tmp)
        else:
            df.to_csv(tmp, index=meta is not None)  # the truth table is aligned by position
            if meta is not None:
                digest = file_sha256(tmp)
                versions = {digest: meta}
                if path.exists():
                    old = _sidecar_versions(sidecar)
                    current = file_sha256(path)
                    if current in old:
                        versions[current] = old[current]
                    elif "" in old:  # an old-format sidecar describes the current CSV
                        versions[current] = old[""]
                atomic_write_json(sidecar, {"format": _SIDECAR_FORMAT, "versions": versions})
    if suffix == ".csv" and meta is not None:
        atomic_write_json(sidecar, {"format": _SIDECAR_FORMAT, "versions": {digest: meta}})


def _read_csv_plain(path: Path) -> pd.DataFrame:
    """A CSV as pandas reads it (UTF-8), with a clear error for other encodings."""
    try:
        return pd.read_csv(path, float_precision="round_trip")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); save it "
            "as UTF-8 (e.g. Excel: CSV UTF-8), or read it with pandas.read_csv(path, "
            "encoding='latin-1' or 'utf-16') and pass the DataFrame"
        ) from err


def read_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict | None]:
    """Read a CSV or Parquet table and the fracrisk metadata stored with it (or None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such table: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_ROLES_KEY)
        return table.to_pandas(), (json.loads(raw) if raw else None)
    if suffix == ".csv":
        sidecar = path.with_name(path.name + ".cohort.json")
        if not sidecar.exists():
            return _read_csv_plain(path), None
        versions = _sidecar_versions(sidecar)
        meta = versions.get("") or versions.get(file_sha256(path))
        if meta is None:
            warnings.warn(
                f"{str(sidecar)!r} describes another version of {str(path)!r} (the CSV was "
                "changed after fracrisk saved it); read as a plain table, without the saved "
                "roles and dtypes",
                DataWarning,
                stacklevel=2,
            )
            return _read_csv_plain(path), None
        index_names = meta.get("index", [None])
        dtypes = meta.get("dtypes", {})
        dates = [c for c, t in dtypes.items() if t.startswith("datetime64")]
        plain = {c: t for c, t in dtypes.items() if c not in dates}
        df = pd.read_csv(
            path,
            index_col=list(range(len(index_names))),
            dtype=plain,
            parse_dates=dates,
            float_precision="round_trip",  # the default fast parser may change the last digit
        )
        df.index.names = index_names
        return df, meta
    raise ValueError(f"unsupported table format {path.suffix!r}; use .csv or .parquet")
