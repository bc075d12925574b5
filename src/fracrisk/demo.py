"""The end-to-end demo on the embedded simulator: ``fracrisk demo`` / ``make demo``.

Three studies, each simulated -> split by entry date (the last 30% of entrants are the test
set) -> fitted -> evaluated on held-out patients with bootstrap CIs
(:func:`fracrisk.evaluation.evaluate`) -> one self-contained HTML report:

* **population**: a FRAX-like general population with up to 20 years of follow-up (5- and
  10-year results); FRAX-style calculator and refit, CoxPH, DeepSurv and DeepSurv with
  death competing.
* **kong2022**: lateral spine radiographs (Kong et al. 2022). The keypoint detector finds
  the vertebral corners, L1-L5 patches are cut, and a vertebral-patch CNN is trained on the
  dense targets (DXA T-score and Genant grade per vertebra of the training patients), then
  a penalised Cox stage on its predictions: images only, and images + clinical covariates.
* **kim2024**: hip CT projected to frontal, lateral and axial DRRs (Kim et al. 2024), with
  the 2.5D multi-view CNN trained the same way.

Grad-CAM maps of the images + clinical CNN (the image part of its Cox stage) go into the
report. Small defaults keep the whole run within minutes on two CPU cores. ``full=True``
runs the published cohort sizes with paper-sized training, for a GPU, and adds the seed
papers' end-to-end CNN (images and covariates into a DeepSurv head). ``cohort=`` runs the
clinical part on the user's own table.
"""

from __future__ import annotations

import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._io import atomic_path, atomic_write_json, package_versions, staged_output_dir
from fracrisk.baselines import FraxStyleCalculator, FraxStyleRefit
from fracrisk.data.cohort import Cohort
from fracrisk.data.schema import BINARY_RISK_FACTORS
from fracrisk.evaluation import Evaluation, ModelCard, evaluate, write_report
from fracrisk.exceptions import FracriskWarning, OutOfRangeWarning
from fracrisk.models import CoxPH, DeepSurv, ImageSurvivalModel
from fracrisk.run import RUN_MARKER, model_dir_name, predict_table

__all__ = ["STUDIES", "DemoResult", "DemoStudy", "run_demo"]

_MARKER = RUN_MARKER


@dataclass(frozen=True)
class DemoStudy:
    """One study of the demo: a simulator preset, its images and its image models."""

    key: str
    heading: str
    preset: str
    n: int
    horizons: tuple[float, ...]
    images: str | None = None  # simulator image kind: "spine" or "hip_ct"
    kind: str | None = None  # ImageCohortDataset kind: "patches" or "drr"
    image_size: int = 64
    encoder: str | None = None
    encoder_kwargs: dict = field(default_factory=dict)
    auxiliary: dict = field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 64
    end_to_end: bool = False
    data: str = ""


_T_SCORE = "femoral_neck_t_score"

#: The demo's studies at their small defaults (``full=True`` scales them up).
STUDIES: dict[str, DemoStudy] = {
    "population": DemoStudy(
        key="population",
        heading="Population cohort (clinical covariates)",
        preset="population",
        n=8000,
        horizons=(5.0, 10.0),
        data="simulated FRAX-like general population aged 50-90 (Kanis 2008), non-linear "
        "covariate effects, entry staggered over 10 years, up to 20 years of follow-up",
    ),
    "kong2022": DemoStudy(
        key="kong2022",
        heading="Spine radiographs (Kong et al. 2022 design)",
        preset="kong2022",
        n=1500,
        horizons=(2.0, 3.0),
        images="spine",
        kind="patches",
        image_size=64,
        encoder="vertebral_patches",
        encoder_kwargs={"backbone": "resnet10t", "pooling": "attention"},
        auxiliary={_T_SCORE: 1.0, **{f"genant_{v}": 1.0 for v in ("L1", "L2", "L3", "L4", "L5")}},
        epochs=3,
        batch_size=64,
        data="simulated Kong et al. 2022 design (Endocrinol Metab 37:674-683): women and men "
        "aged 50-75 with a lateral spine radiograph, vertebral fractures, 5.4 years of "
        "follow-up",
    ),
    "kim2024": DemoStudy(
        key="kim2024",
        heading="Hip CT projected to DRRs (Kim et al. 2024 design)",
        preset="kim2024",
        n=1000,
        horizons=(2.0, 3.0),
        images="hip_ct",
        kind="drr",
        image_size=64,
        encoder="multiview_drr",
        encoder_kwargs={"backbone": "resnet10t", "shared_backbone": False, "pooling": "concat"},
        auxiliary={_T_SCORE: 1.0},
        epochs=2,
        batch_size=32,
        data="simulated Kim et al. 2024 design (Radiology 310:e230614): patients aged 62-97 "
        "with a prior fracture and a hip CT, high competing mortality, 7.5 years of follow-up",
    ),
}

#: Paper-sized settings of ``full=True`` (published cohort sizes; meant for a GPU).
_FULL = {
    "population": {"n": 20000},
    "kong2022": {"n": 1595, "epochs": 20, "image_size": 64, "end_to_end": True},
    "kim2024": {"n": 1480, "epochs": 20, "image_size": 128, "end_to_end": True},
}


@dataclass
class DemoResult:
    """What the demo measured; ``run.json`` holds the same."""

    out_dir: Path
    evaluations: dict[str, Evaluation]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    studies: tuple[str, ...] = ("population", "kong2022", "kim2024"),
    n: int | None = None,
    epochs: int | None = None,
    full: bool = False,
    cohort: str | Path | None = None,
    seed: int = 0,
    n_boot: int = 500,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo and write its outputs under ``out_dir``; returns what it measured.

    Parameters
    ----------
    out_dir : path-like, default "runs/demo"
        The run directory. An existing run is replaced only with ``overwrite``, and only
        when it holds a fracrisk run; the new run is swapped in whole.
    studies : tuple of str, default all three
        Any of :data:`STUDIES`.
    n : int, optional
        Patients per study (default: each study's own).
    epochs : int, optional
        Training epochs of the image CNNs (default: each study's own).
    full : bool, default False
        Published cohort sizes and paper-sized training (for a GPU).
    cohort : path-like, optional
        The user's own cohort table (CSV or Parquet, :meth:`Cohort.read`): the clinical
        models on it instead of the simulated studies.
    seed : int, default 0
    n_boot : int, default 500
        Bootstrap resamples of every interval.

    Outputs: ``report.html`` (all studies), ``report.md``, ``evaluation.json`` and
    ``run.json`` (settings, package versions, timings); per study ``<study>/cohort.parquet``,
    ``<study>/predictions.csv`` (risks at each horizon and survival at each whole year,
    per test patient) and ``<study>/models/``.
    """
    unknown = [s for s in studies if s not in STUDIES]
    if unknown:
        raise ValueError(f"unknown demo studies {unknown}; choose from {sorted(STUDIES)}")
    if n is not None and n < 200:
        raise ValueError(f"n must be at least 200 patients per study, got {n}")
    chosen = []
    for key in ("population",) if cohort is not None else studies:
        study = STUDIES[key]
        if full:
            study = replace(study, **_FULL[key])
        if n is not None:
            study = replace(study, n=n)
        if epochs is not None:
            study = replace(study, epochs=epochs)
        chosen.append(study)
    final = Path(out_dir)
    with staged_output_dir(
        final, overwrite=overwrite, is_ours=lambda p: (p / _MARKER).exists()
    ) as out:
        result = _run_into(out, final, chosen, cohort, seed, n_boot, full, progress, log)
    log(f"report: {final / 'report.html'}")
    return result


def _run_into(out, final, studies, cohort_path, seed, n_boot, full, progress, log) -> DemoResult:
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    evaluations: dict[str, Evaluation] = {}
    cards: dict[str, ModelCard] = {}
    extras: dict[str, list] = {}
    settings: dict[str, dict] = {}
    for k, study in enumerate(studies, start=1):
        t0 = time.perf_counter()
        log(f"[{k}/{len(studies)}] {study.heading}")
        with (
            tempfile.TemporaryDirectory(prefix=f"fracrisk-demo-{study.key}-") as work,
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always", FracriskWarning)
            evaluation, card, extra, used = _run_study(
                study, out / study.key, Path(work), cohort_path, seed, n_boot, progress, log
            )
        _note_warnings(caught, evaluation, log)
        heading = study.heading if cohort_path is None else f"Your cohort: {Path(cohort_path).name}"
        evaluations[heading], cards[heading], extras[heading] = evaluation, card, extra
        settings[study.key] = used
        seconds[study.key] = round(time.perf_counter() - t0, 1)
        log(f"      done in {seconds[study.key]:.0f} s")
        log(_indent(evaluation.summary_table().to_string(index=False)))
    log("writing report.html ...")
    write_report(
        evaluations,
        out,
        title="fracrisk demo",
        subtitle="Simulated cohorts with known truth; every number is measured in this run."
        if cohort_path is None
        else f"Clinical models on {Path(cohort_path).name}",
        card=cards,
        extra_figures=extras,
    )
    seconds["total"] = round(time.perf_counter() - start, 1)
    atomic_write_json(
        out / _MARKER,
        {
            "command": "fracrisk demo",
            "full": full,
            "seed": seed,
            "n_boot": n_boot,
            "cohort": str(cohort_path) if cohort_path else None,
            "studies": settings,
            "seconds": seconds,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {platform.system()}",
            "versions": package_versions(),
        },
    )
    log(f"total {seconds['total']:.0f} s")
    return DemoResult(final, evaluations, seconds)


def _run_study(study: DemoStudy, out: Path, work: Path, cohort_path, seed, n_boot, progress, log):
    """Simulate (or read), split, fit, evaluate one study; returns its report parts."""
    from fracrisk.simulate import clinical_cohort
    from fracrisk.simulate import cohort as simulate_cohort

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if cohort_path is not None:
        data = Cohort.read(cohort_path)
        log(f"      read {data!r}")
    elif study.images is None:
        # staggered entry over 10 years: the late entrants of the test set reach 10 years
        data = clinical_cohort(study.n, seed=seed, effects="nonlinear", max_follow_up=20.0)
    else:
        log(f"      simulating {study.n} patients with {study.images} images ...")
        data = simulate_cohort(
            study.n,
            preset=study.preset,
            seed=seed,
            images=(study.images,),
            out_dir=work / "images",
            progress=progress,
        )
    data.save(out / "cohort.parquet")
    if "entry_date" in data.df:
        train, test = data.split(0.3, method="temporal", by="entry_date")
        split = "temporal by entry date: the last 30% of entrants are the test set"
    else:
        train, test = data.split(0.3, method="stratified", seed=seed)
        split = "stratified random 70/30 (no entry_date column)"
    log(
        f"      {len(train)} train / {len(test)} test patients ({test.n_events} test "
        f"fractures); {time.perf_counter() - t0:.0f} s"
    )
    models, image_data, used = _fit_models(study, train, test, work, seed, progress, log)
    for name, model in models.items():
        if hasattr(model, "save"):
            model.save(out / "models" / model_dir_name(name))
    log(f"      evaluating on {len(test)} held-out patients ({n_boot} bootstrap resamples) ...")
    evaluation = evaluate(
        models,
        test,
        horizons=study.horizons,
        train=train,
        n_boot=n_boot,
        seed=seed,
        progress=progress,
        context={
            "split": split,
            "training patients": f"{len(train)} ({train.n_events} fractures)",
            "seed": seed,
        },
    )
    _write_predictions(out / "predictions.csv", models, test, study.horizons)
    extra = _grad_cam_figures(models, image_data, test) if image_data else []
    card = ModelCard(data=study.data or "your cohort", split=split)
    return evaluation, card, extra, used


def _fit_models(study: DemoStudy, train: Cohort, test: Cohort, work: Path, seed, progress, log):
    """The clinical models, and on image studies the image models; returns them fitted."""
    from fracrisk.simulate import with_labels

    models: dict = {}
    used: dict = asdict(study)
    # FRAX's inputs where they vary in training (kim2024: everyone has a prior fracture)
    varying = [c for c in train.default_covariates if train.df[c].nunique() > 1]
    used["clinical_covariates"] = varying
    log("      FRAX-style calculator and refit, CoxPH, DeepSurv ...")
    models["FRAX-style calculator"] = FraxStyleCalculator("UK")
    models["FRAX-style refit"] = FraxStyleRefit().fit(train)
    models["CoxPH"] = CoxPH().fit(train, covariates=varying)
    models["DeepSurv"] = DeepSurv(seed=seed, progress=progress).fit(train, covariates=varying)
    if study.images is None:
        models["DeepSurv (death competing)"] = DeepSurv(
            head="cause_specific", seed=seed, progress=progress
        ).fit(train, covariates=varying)
        return models, None, used
    # the image models get FRAX's clinical inputs without DXA: the images stand in for it
    frax = [c for c in varying if c in ("age", "sex", "bmi", *BINARY_RISK_FACTORS)]
    options = {"size": (study.image_size, study.image_size), "cache_dir": str(work / "cache")}
    if study.kind == "patches":
        options["keypoint_columns"] = ()  # the shipped detector finds the corners
    labelled = with_labels(train, list(study.auxiliary))
    targets = {k: w for k, w in study.auxiliary.items() if _informative(labelled.df[k])}
    if len(targets) < len(study.auxiliary):
        left = sorted(set(study.auxiliary) - set(targets))
        log(
            f"      dense targets {left}: fewer than 10 training patients off the usual "
            "value, left out"
        )
    used["auxiliary"] = targets
    common = {
        "head": "deepsurv",
        "auxiliary": targets,
        "training": "two_stage",
        "max_epochs": study.epochs,
        "patience": 3,
        "batch_size": study.batch_size,
        "seed": seed,
        "progress": progress,
        "logger": None,
    }
    for name, covariates in (("images only (CNN)", []), ("images + clinical (CNN)", frax)):
        log(f"      {name}: {study.encoder} on {study.kind}, two-stage, {study.epochs} epochs ...")
        models[name] = ImageSurvivalModel(
            study.encoder,
            dict(study.encoder_kwargs),
            image_options={**options, "covariates": covariates},
            **common,
        ).fit(labelled)
    if study.end_to_end:
        name = "images + clinical (CNN, end to end)"
        log(f"      {name}: DeepSurv head, {study.epochs} epochs ...")
        models[name] = ImageSurvivalModel(
            study.encoder,
            dict(study.encoder_kwargs),
            image_options={**options, "covariates": frax},
            **{**common, "auxiliary": None, "training": "end_to_end"},
        ).fit(train)
    used["image_model_covariates"] = frax
    return models, True, used


def _informative(values: pd.Series) -> bool:
    """Whether a dense target varies enough to learn: >= 10 patients off its commonest value."""
    counts = values.dropna().value_counts()
    return len(counts) > 1 and int(counts.sum() - counts.iloc[0]) >= 10


def _grad_cam_figures(models: dict, image_data, test: Cohort) -> list[tuple[str, bytes]]:
    """Grad-CAM overlays of each image + clinical CNN for the three highest-risk test patients."""
    from fracrisk.evaluation.figures import png_bytes
    from fracrisk.explain import plot_grad_cam

    figures = []
    for name, model in models.items():
        if not isinstance(model, ImageSurvivalModel) or not model.covariate_names_:
            continue
        score = np.asarray(model.predict_score(test))
        top = [int(i) for i in np.argsort(-score)[:3]]
        images, maps = model.grad_cam(test, positions=top)
        ids = [str(i) for i in np.asarray(test.ids)[top]]
        fig = plot_grad_cam(
            images, maps, labels=model.item_names_, titles=[f"patient {i}" for i in ids]
        )
        what = (
            "the image part of its Cox stage"
            if model.training_ == "two_stage"
            else "its log hazard"
        )
        caption = (
            f"{name}: Grad-CAM of {what} for the three highest-risk test patients (warm "
            "colours: regions whose features raise it above the average test patient's)."
        )
        figures.append((caption, png_bytes(fig)))
    return figures


def _write_predictions(path: Path, models: dict, test: Cohort, horizons) -> None:
    """The test patients' predictions (:func:`fracrisk.run.predict_table`) and true risks."""
    table = predict_table(models, test, horizons=horizons)
    if test.truth is not None:
        for h in horizons:
            column = f"risk_{h:g}y"
            if column in test.truth:
                table[f"truth | risk {h:g} y"] = test.truth[column].to_numpy(float)
    with atomic_path(path) as tmp:
        table.to_csv(tmp)


def _note_warnings(caught, evaluation: Evaluation, log) -> None:
    """The warnings of one study, once each, in the report's notes and the log.

    Out-of-range warnings (test values beyond the training range) are summarised by
    feature; every other warning is kept once per distinct message.
    """
    ours = [w for w in caught if issubclass(w.category, FracriskWarning)]
    for w in caught:
        if not issubclass(w.category, FracriskWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    beyond = sorted(
        {str(w.message).split("'")[1] for w in ours if issubclass(w.category, OutOfRangeWarning)}
    )
    messages = list(
        dict.fromkeys(str(w.message) for w in ours if not issubclass(w.category, OutOfRangeWarning))
    )
    if beyond:
        shown = ", ".join(beyond[:8]) + (" ..." if len(beyond) > 8 else "")
        messages.append(
            f"test values beyond the training range by more than 10% in {len(beyond)} "
            f"feature(s) ({shown}): those predictions extrapolate"
        )
    for message in messages:
        evaluation.notes.append(f"warning: {message}")
        log(f"      warning: {message}")


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())
