"""Runs from a configuration: fit, evaluate, predict and report, as ``fracrisk`` commands do.

A run directory holds ``run.json`` (the configuration, package versions, timings), the
fitted models under ``models/<name>/`` (safetensors + JSON, loaded without executing
code), ``predictions.csv`` of the test patients, and the report (``report.html``,
``report.md``, ``evaluation.json``). It is written into a staging folder and swapped in
whole; an existing run is replaced only with ``overwrite``.

With ``cohort.on_error: skip`` every image model first prepares each patient's images once
(cached for the run): a patient whose image any of them cannot use is left out of the whole
run before the split, so that every model is trained and tested on the same patients, and
is listed with the file and the reason in ``left_out.csv``, ``run.json`` and the report.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._io import atomic_path, atomic_write_json, package_versions, staged_output_dir
from fracrisk.config import RunConfig
from fracrisk.data.cohort import Cohort
from fracrisk.evaluation import ModelCard, evaluate, write_report

__all__ = [
    "LEFT_OUT_FILE",
    "RUN_MARKER",
    "fit_run",
    "load_cohort",
    "model_dir_name",
    "predict_table",
]

#: The file that marks a directory as a fracrisk run.
RUN_MARKER = "run.json"
#: The patients left out of a run (``cohort.on_error: skip``), with file and reason.
LEFT_OUT_FILE = "left_out.csv"


def model_dir_name(name: str) -> str:
    """A model's folder name in a run: lower case, runs of other characters as ``_``."""
    keep = "".join(c if c.isalnum() else "_" for c in name.lower())
    return "_".join(part for part in keep.split("_") if part) or "model"


def load_cohort(config: RunConfig | None, path: str | Path, **roles) -> Cohort:
    """Read a table as a cohort: the config's column mapping first, then its roles.

    Roles come, in rising precedence, from the file (a cohort written by
    :meth:`~fracrisk.data.Cohort.save`), from the keys the config's ``cohort:`` section
    sets, and from ``roles``. Relative image paths start at the file's directory.
    """
    if config is None:
        return Cohort.read(path, **roles)
    return Cohort.read(path, mapping=config.cohort.mapping, **{**config.cohort.roles(), **roles})


def fit_run(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Fit every model of ``config``, evaluate on the test split, write the run directory.

    Returns the run directory (``out``, else ``config.out``, else ``runs/<config name>``).
    """
    final = Path(out) if out is not None else config.out
    if final is None:
        stem = config.source.stem if config.source is not None else "run"
        final = Path("runs") / stem
    with staged_output_dir(
        final, overwrite=overwrite, is_ours=lambda p: (p / RUN_MARKER).exists()
    ) as staging:
        _fit_into(config, staging, progress, log)
    log(f"run: {final}  (report: {final / 'report.html'})")
    return final


def _fit_into(config: RunConfig, out: Path, progress: bool, log) -> None:
    with tempfile.TemporaryDirectory(prefix="fracrisk-images-") as cache:
        _fit_and_evaluate(config, out, progress, log, Path(cache))


def _leave_out_unusable_images(
    cohort: Cohort, models: dict, cache: Path, log
) -> tuple[Cohort, pd.DataFrame]:
    """``on_error: skip``: rows whose image any image model cannot use leave the run.

    Each image model prepares every row's images once (kept in ``cache`` for its fit and
    predictions). A failed row is left out before the split, for every model alike, and
    listed with its file and reason. Returns the cohort kept and the table of rows left out.
    """
    found: dict = {}
    for name, model in models.items():
        if not hasattr(model, "check_images"):
            continue
        log(f"checking the images of {name} ...")
        for failure in model.check_images(cohort):
            found.setdefault(failure.row, {**vars(failure), "found_by": name})
    table = pd.DataFrame(
        list(found.values()),
        columns=["row", "patient_id", "column", "path", "reason", "found_by"],
    )
    if found:
        log(f"{len(found)} of {len(cohort)} patients left out: their image cannot be used")
        cohort = cohort.without(list(found))
    return cohort, table


def _with_image_cache(models: dict, cache: Path) -> dict:
    """Give image models without a ``cache_dir`` the run's; returns their own options."""
    own = {}
    for name, model in models.items():
        options = getattr(model, "image_options", None)
        if hasattr(model, "check_images") and "cache_dir" not in (options or {}):
            own[name] = options
            model.set_params(image_options={**(options or {}), "cache_dir": str(cache / name)})
    return own


def _fit_and_evaluate(config: RunConfig, out: Path, progress: bool, log, cache: Path) -> None:
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    cohort = load_cohort(config, config.cohort.path)
    log(f"cohort: {cohort!r}")
    models = {}
    for spec in config.models:
        model = spec.build()
        if hasattr(model, "progress"):
            model.set_params(progress=progress)
        if spec.type == "image_survival" and spec.covariates is not None:
            # an image model reads its covariates with its images
            options = {**(model.image_options or {}), "covariates": list(spec.covariates)}
            model.set_params(image_options=options)
        models[spec.name] = model
    left_out = pd.DataFrame()
    own_options: dict = {}
    if config.cohort.on_error == "skip":
        own_options = _with_image_cache(models, cache)
        cohort, left_out = _leave_out_unusable_images(cohort, models, cache, log)
    split = config.split
    train, test = cohort.split(split.test_size, method=split.method, by=split.by, seed=split.seed)
    log(f"split: {split.describe()}: {len(train)} train / {len(test)} test patients")
    for k, spec in enumerate(config.models, start=1):
        t0 = time.perf_counter()
        log(f"[{k}/{len(config.models)}] fitting {spec.name} ({spec.type}) ...")
        model = models[spec.name]
        if spec.covariates is None or spec.type == "image_survival":
            model.fit(train)
        else:
            model.fit(train, covariates=spec.covariates)
        if hasattr(model, "save"):
            path = out / "models" / model_dir_name(spec.name)
            if spec.name in own_options:
                _save_without_run_cache(model, own_options[spec.name], path)
            else:
                model.save(path)
        seconds[spec.name] = round(time.perf_counter() - t0, 2)
    ev = config.evaluation
    log(f"evaluating on {len(test)} test patients ({ev.n_boot} bootstrap resamples) ...")
    evaluation = evaluate(
        models,
        test,
        horizons=ev.horizons,
        reference=ev.reference,
        train=train,
        n_boot=ev.n_boot,
        seed=ev.seed,
        subgroups=ev.subgroups,
        progress=progress,
        context={
            "training patients": f"{len(train)} ({train.n_events} fractures)",
            "config": str(config.source) if config.source else "Python",
        },
    )
    predictions = predict_table(models, test, horizons=evaluation.horizons)
    with atomic_path(out / "predictions.csv") as tmp:
        predictions.to_csv(tmp)
    if not left_out.empty:
        with atomic_path(out / LEFT_OUT_FILE) as tmp:
            left_out.to_csv(tmp, index=False)
    card = ModelCard(
        data=f"{config.cohort.path.name}",
        split=split.describe(),
        left_out=left_out if not left_out.empty else None,
    )
    write_report(evaluation, out, title=f"fracrisk run: {config.cohort.path.name}", card=card)
    seconds["total"] = round(time.perf_counter() - start, 2)
    atomic_write_json(
        out / RUN_MARKER,
        {
            "command": "fracrisk fit",
            "config": config.to_dict(),
            "models": {
                name: {"class": type(m).__name__, "params": _jsonable(m)}
                for name, m in models.items()
            },
            "n_left_out": len(left_out),
            "n_train": len(train),
            "n_test": len(test),
            "seconds": seconds,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {platform.system()}",
            "versions": package_versions(),
        },
    )
    log(evaluation.summary_table().to_string(index=False))


def _save_without_run_cache(model, own_options: dict | None, path: Path) -> None:
    """Save an image model with its own image options, not the run's temporary cache."""
    lent = model.image_options
    model.set_params(image_options=own_options)
    try:
        model.save(path)
    finally:
        model.set_params(image_options=lent)


def _jsonable(model) -> dict:
    params = model.get_params() if hasattr(model, "get_params") else {}
    out = {}
    for key, value in params.items():
        if isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)):
            out[key] = value
        else:
            out[key] = repr(value)
    return out


def predict_table(
    models: dict,
    cohort: Cohort,
    *,
    horizons: Sequence[float] = (5.0, 10.0),
    times: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Per patient and model: score, risk by each horizon and survival at ``times``.

    Columns are ``"<model> | score"``, ``"<model> | risk 5 y"`` and ``"<model> | S(2 y)"``;
    rows are the patients (``patient_id``). ``times`` defaults to each whole year up to
    the last horizon. Each model's risk type is in ``attrs["risk_types"]``.
    """
    horizons = [float(h) for h in horizons]
    if times is None:
        times = np.arange(1.0, np.floor(max(horizons)) + 1.0)
    times = np.asarray(sorted({float(t) for t in times}), dtype=np.float64)
    if len(times) == 0 or np.any(times <= 0) or not np.all(np.isfinite(times)):
        raise ValueError(f"times must be positive numbers of years, got {list(times)}")
    columns: dict[str, np.ndarray] = {}
    risk_types = {}
    for name, model in models.items():
        risk_types[name] = getattr(model, "risk_type", "cause_specific")
        columns[f"{name} | score"] = np.asarray(model.predict_score(cohort), dtype=float)
        for h in horizons:
            columns[f"{name} | risk {h:g} y"] = np.asarray(model.predict_risk(cohort, h), float)
        if hasattr(model, "predict_survival"):
            surv = np.asarray(model.predict_survival(cohort, times), dtype=float)
            for j, t in enumerate(times):
                columns[f"{name} | S({t:g} y)"] = surv[:, j]
    table = pd.DataFrame(columns, index=pd.Index(np.asarray(cohort.ids), name="patient_id"))
    table.attrs["risk_types"] = risk_types
    return table
