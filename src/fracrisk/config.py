"""Run configurations of ``fracrisk fit``: one YAML file from cohort to evaluation.

.. code-block:: yaml

    cohort:
      path: hospital_export.csv         # CSV or Parquet; relative to this file
      mapping:                          # see fracrisk.data.mapping.ColumnMapping
        columns: {patient_id: ID, age: Age, sex: SEX, time: FU_days, event: status}
        values: {sex: {female: F, male: M}, event: {none: 0, fracture: 1, died: 2}}
        dates: {entry_date: "%d/%m/%Y"}
        time_unit: days
      missing: error                    # error | drop | impute (default: the file's, else error)
      image_columns: []                 # e.g. [spine_xray_path] (default: the file's, else none)
      on_error: raise                   # an unusable image: raise | skip (leave out, report)
    split: {method: temporal, by: entry_date, test_size: 0.3, seed: 0}
    models:
      - {name: FRAX-style refit, type: frax_refit}
      - {name: CoxPH, type: coxph, params: {ties: efron}}
      - {name: DeepSurv, type: deepsurv, params: {hidden: [32, 32]}, covariates: [age, sex, bmi]}
    evaluation: {horizons: [5, 10], reference: FRAX-style refit, n_boot: 1000, seed: 0}
    out: runs/my_study

Every key is checked before anything runs: an unknown key, a value of the wrong type or an
unknown model type is a :class:`ValueError` that names the key (``models[2].type``) and the
allowed values. Model ``type`` is a name of :func:`fracrisk.models.list_models`; ``params``
are its ``__init__`` settings, validated as its ``fit`` would.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fracrisk.data.mapping import ColumnMapping
from fracrisk.data.splits import SPLIT_METHODS

__all__ = [
    "CohortConfig",
    "EvaluationConfig",
    "ModelConfig",
    "RunConfig",
    "SplitConfig",
    "read_config",
]

_MISSING = ("error", "drop", "impute")
_ON_ERROR = ("raise", "skip")


def _check_keys(data: Mapping, allowed: set[str], where: str, required: set[str] = frozenset()):
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping of keys to values, got {data!r}")
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(sorted(allowed))}"
            )
    absent = sorted(required - set(data))
    if absent:
        raise ValueError(f"{where}: required key(s) {absent} missing")


def _number(value, where: str, *, low: float, high: float, integer: bool = False):
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not (low <= value <= high):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{where}: must be {what} in [{low:g}, {high:g}], got {value!r}")
    return value


@dataclass
class CohortConfig:
    """Where the cohort table is and how it maps to fracrisk's columns."""

    path: Path
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    missing: str | None = None
    image_columns: list[str] | None = None
    on_error: str = "raise"

    def roles(self) -> dict:
        """The :class:`~fracrisk.data.Cohort` options this section sets explicitly.

        A key left out of the file is not set here, so a cohort file written by
        :meth:`~fracrisk.data.Cohort.save` keeps its stored roles, and a plain table gets
        :class:`~fracrisk.data.Cohort`'s defaults (``missing="error"``, no image column).
        """
        roles: dict = {}
        if self.missing is not None:
            roles["missing"] = self.missing
        if self.image_columns is not None:
            roles["image_cols"] = list(self.image_columns)
        return roles

    @classmethod
    def from_dict(cls, data: Mapping, base: Path, where: str = "cohort") -> CohortConfig:
        """Validate the ``cohort:`` section; a relative path starts at ``base``."""
        allowed = {"path", "mapping", "missing", "image_columns", "on_error"}
        _check_keys(data, allowed, where, {"path"})
        path = Path(os.path.expanduser(str(data["path"])))
        path = path if path.is_absolute() else base / path
        missing = data.get("missing")
        if missing is not None and missing not in _MISSING:
            raise ValueError(f"{where}.missing: {missing!r} is not one of {list(_MISSING)}")
        images = data.get("image_columns")
        if images is not None and (
            not isinstance(images, list) or not all(isinstance(c, str) for c in images)
        ):
            raise ValueError(f"{where}.image_columns must be a list of column names")
        on_error = data.get("on_error", "raise")
        if on_error not in _ON_ERROR:
            raise ValueError(f"{where}.on_error: {on_error!r} is not one of {list(_ON_ERROR)}")
        mapping = ColumnMapping.from_dict(data.get("mapping"), where=f"{where}.mapping")
        return cls(
            path=path,
            mapping=mapping,
            missing=missing,
            image_columns=None if images is None else list(images),
            on_error=on_error,
        )


@dataclass
class SplitConfig:
    """How the test patients are set apart (:func:`fracrisk.data.split_cohort`)."""

    method: str = "temporal"
    by: str | None = "entry_date"
    test_size: float = 0.3
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping | None, where: str = "split") -> SplitConfig:
        """Validate the ``split:`` section (default: temporal by entry date, 30%)."""
        data = dict(data or {})
        _check_keys(data, {"method", "by", "test_size", "seed"}, where)
        method = data.get("method", "temporal")
        if method not in SPLIT_METHODS:
            raise ValueError(f"{where}.method: {method!r} is not one of {list(SPLIT_METHODS)}")
        by = data.get("by", "entry_date" if method == "temporal" else None)
        return cls(
            method=method,
            by=by,
            test_size=float(
                _number(data.get("test_size", 0.3), f"{where}.test_size", low=0.01, high=0.99)
            ),
            seed=int(
                _number(data.get("seed", 0), f"{where}.seed", low=0, high=2**32 - 1, integer=True)
            ),
        )

    def describe(self) -> str:
        """The split in words, for reports."""
        if self.method == "temporal":
            return f"temporal by {self.by}: the last {self.test_size:.0%} are the test set"
        return f"{self.method} {1 - self.test_size:.0%}/{self.test_size:.0%} (seed {self.seed})"


@dataclass
class ModelConfig:
    """One model: a report name, a registered type, its settings and covariates."""

    name: str
    type: str
    params: dict = field(default_factory=dict)
    covariates: list[str] | None = None

    @classmethod
    def from_dict(cls, data: Mapping, where: str) -> ModelConfig:
        """Validate one entry of ``models:`` (its type and settings) without fitting."""
        from fracrisk.models import list_models
        from fracrisk.models._base import _MODELS

        _check_keys(data, {"name", "type", "params", "covariates"}, where, {"type"})
        kind = data["type"]
        if kind not in list_models():
            close = difflib.get_close_matches(str(kind), list_models(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{where}.type: {kind!r} is not a registered model{hint}; choose from "
                f"{', '.join(list_models())}"
            )
        params = data.get("params", {}) or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}.params must be a mapping of settings, got {params!r}")
        cls_ = _MODELS[kind]
        allowed = cls_._param_names()
        for key in params:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"{where}.params: {kind} has no setting {key!r}{hint}; its settings: "
                    f"{', '.join(allowed)}"
                )
        try:
            cls_(**params)._validate_params()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}.params: {err}") from None
        covariates = data.get("covariates")
        if covariates is not None and (
            not isinstance(covariates, list) or not all(isinstance(c, str) for c in covariates)
        ):
            raise ValueError(f"{where}.covariates must be a list of column names")
        name = str(data.get("name", kind))
        return cls(name=name, type=kind, params=dict(params), covariates=covariates)

    def build(self):
        """The unfitted model."""
        from fracrisk.models import create_model

        return create_model(self.type, **self.params)


@dataclass
class EvaluationConfig:
    """Settings of :func:`fracrisk.evaluation.evaluate`."""

    horizons: list[float] = field(default_factory=lambda: [5.0, 10.0])
    reference: str | None = None
    n_boot: int = 1000
    seed: int = 0
    subgroups: bool = True

    @classmethod
    def from_dict(cls, data: Mapping | None, where: str = "evaluation") -> EvaluationConfig:
        """Validate the ``evaluation:`` section."""
        data = dict(data or {})
        _check_keys(data, {"horizons", "reference", "n_boot", "seed", "subgroups"}, where)
        horizons = data.get("horizons", [5.0, 10.0])
        if not isinstance(horizons, list) or not horizons:
            raise ValueError(f"{where}.horizons must be a non-empty list of years")
        horizons = [
            float(_number(h, f"{where}.horizons[{k}]", low=1e-6, high=100.0))
            for k, h in enumerate(horizons)
        ]
        subgroups = data.get("subgroups", True)
        if not isinstance(subgroups, bool):
            raise ValueError(f"{where}.subgroups must be true or false, got {subgroups!r}")
        return cls(
            horizons=horizons,
            reference=data.get("reference"),
            n_boot=int(
                _number(data.get("n_boot", 1000), f"{where}.n_boot", low=1, high=1e6, integer=True)
            ),
            seed=int(
                _number(data.get("seed", 0), f"{where}.seed", low=0, high=2**32 - 1, integer=True)
            ),
            subgroups=subgroups,
        )


@dataclass
class RunConfig:
    """A whole ``fracrisk fit`` run; see the module docstring for the YAML layout."""

    cohort: CohortConfig
    models: list[ModelConfig]
    split: SplitConfig = field(default_factory=SplitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    out: Path | None = None
    source: Path | None = None

    @classmethod
    def from_dict(cls, data: Mapping, *, base: Path = Path("."), source: Path | None = None):
        """Validate a whole configuration; relative paths start at ``base``."""
        _check_keys(
            data, {"cohort", "split", "models", "evaluation", "out"}, "config", {"cohort", "models"}
        )
        models_data = data["models"]
        if not isinstance(models_data, list) or not models_data:
            raise ValueError("config.models must be a non-empty list of models")
        models = [ModelConfig.from_dict(m, f"models[{k}]") for k, m in enumerate(models_data)]
        names = [m.name for m in models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"models: names {repeated} are used twice; give each a name:")
        evaluation = EvaluationConfig.from_dict(data.get("evaluation"))
        if evaluation.reference is not None and evaluation.reference not in names:
            raise ValueError(
                f"evaluation.reference: {evaluation.reference!r} is not one of the models {names}"
            )
        out = data.get("out")
        if out is not None:
            out = Path(os.path.expanduser(str(out)))
            out = out if out.is_absolute() else base / out
        return cls(
            cohort=CohortConfig.from_dict(data["cohort"], base),
            models=models,
            split=SplitConfig.from_dict(data.get("split")),
            evaluation=evaluation,
            out=out,
            source=source,
        )

    def to_dict(self) -> dict:
        """Plain data, as written to the run's ``run.json``."""
        return {
            "cohort": {
                "path": str(self.cohort.path),
                "mapping": self.cohort.mapping.to_dict(),
                "missing": self.cohort.missing,
                "image_columns": self.cohort.image_columns,
                "on_error": self.cohort.on_error,
            },
            "split": {
                "method": self.split.method,
                "by": self.split.by,
                "test_size": self.split.test_size,
                "seed": self.split.seed,
            },
            "models": [
                {"name": m.name, "type": m.type, "params": m.params, "covariates": m.covariates}
                for m in self.models
            ],
            "evaluation": {
                "horizons": self.evaluation.horizons,
                "reference": self.evaluation.reference,
                "n_boot": self.evaluation.n_boot,
                "seed": self.evaluation.seed,
                "subgroups": self.evaluation.subgroups,
            },
            "out": None if self.out is None else str(self.out),
        }


def read_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run configuration; relative paths start at its folder."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such config file: {str(path)!r}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a run config is a mapping with cohort: and models:")
    try:
        return RunConfig.from_dict(data, base=path.resolve().parent, source=path)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
