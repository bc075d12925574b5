r"""Do the image models extract what the images show? A benchmark against the simulator's truth.

On an independent simulated training and test cohort with images, it fits

* the FRAX-style refit and calculator without and with BMD (``frax_refit``,
  ``frax_refit_bmd``, ``frax_calculator``, ``frax_calculator_bmd``; absolute risk);
* Cox on the FRAX covariates without and with the DXA T-score (``cox_frax``,
  ``cox_frax_bmd``);
* the texture baseline, penalised Cox on the FRAX covariates plus texture features of the
  images, without and with DXA (``texture_frax``, ``texture_frax_bmd``);
* opportunistic FRAX, the FRAX-style refit on an image-estimated T-score
  (``opportunistic_frax``; no DXA at prediction);
* the trained image models (``image_frax``: images + FRAX covariates, no DXA;
  ``image_frax_bmd``; ``image_only``; on the spine also ``image_frax_graded``, the Genant
  grades learned as classes), unless ``--skip-end-to-end``:
  :class:`~fracrisk.ImageSurvivalModel` with ``training="two_stage"``, the CNN trained on
  the dense targets (the DXA T-score; on the spine also the Genant grade of each vertebra,
  as a radiologist's labels of the training patients), then a penalised Cox stage.
  Stage 1 never reads the covariates, so ``image_frax_bmd`` and ``image_only`` take
  ``image_frax``'s stage 1 and fit only their own Cox stage
  (:meth:`~fracrisk.ImageSurvivalModel.with_stage_two`; :data:`SHARED_STAGE_ONE`): the
  three differ only in their covariates, and their seconds are their Cox stage's;
* the seed papers' ablations on the texture model (``ablation_*``, see :data:`ABLATIONS`)
  and, on the hip CT unless ``--skip-end-to-end``, Kim's 3-D arm (``ablation_volume_3d``:
  the same two-stage training on a MONAI 3-D ResNet over the CT resized to 32 x 48 x 48
  voxels, :class:`~fracrisk.encoders.VolumeCTEncoder`);

and reports for each Harrell's C with a 95% bootstrap CI, paired Delta C against the
FRAX-style refit with and without BMD and against ``cox_frax_bmd``, the **modality
ceiling** (the C of the true terms the images and covariates could show,
:mod:`fracrisk.simulate.truth`), the share of (ceiling - ``cox_frax_bmd``) a model
captures, and the held-out R² of an image-estimated T-score against the DXA value.

Definitions
-----------
``c`` is Harrell's C against fracture with death censored. For the cause-specific models
the score is their log hazard; for the refitted absolute-risk models (FRAX-style refit,
opportunistic FRAX) it is the log hazard of their fracture sub-model
(``predict_fracture_log_hazard``), so that all rank the same quantity and the paired dC
compare like with like. The published FRAX-style calculator has only its 10-year
probability. Absolute-risk models are also ranked as absolute risks: ``c_wolbers`` is
Wolbers' competing-risks C (:func:`fracrisk.metrics.wolbers_c`) of their 10-year absolute
risk. Each table row says which risk type the model predicts.

Every setting is fixed here before the run; nothing is chosen on the test set (the
texture penalty and ridge penalties are chosen by cross-validation on the training rows).

Usage::

    python benchmarks/image_signal.py --preset kong2022 --n-train 3000 --n-test 3000 \
        --seed 1 --out runs/image-signal-kong2022

Writes ``DIR/results.json`` (stable form, see ``_results``), ``DIR/report.html`` and
``DIR/report.md``; the simulated cohorts and the image cache are kept under ``DIR/data``
and ``DIR/cache`` and reused by a rerun with the same preset, sizes and seed.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fracrisk import CoxPH, ImageSurvivalModel, OpportunisticFrax, TextureCox
from fracrisk.baselines import FraxStyleCalculator, FraxStyleRefit
from fracrisk.data import Cohort
from fracrisk.data.schema import BINARY_RISK_FACTORS
from fracrisk.metrics import harrell_c, wolbers_c
from fracrisk.metrics.bootstrap import bootstrap, compare

_T = "femoral_neck_t_score"
_DXA = (_T, "femoral_neck_bmd")
_REFERENCES = ("frax_refit", "frax_refit_bmd", "cox_frax_bmd")
#: Ridge penalty of every tabular Cox fit (standardised columns). Rare risk factors (alcohol
#: in 2%) can separate the events of a small training set and send an unpenalised
#: coefficient to -20; a penalty of 1 bounds them and barely moves real effects.
_COX_PENALIZER = 1.0
#: Every model the benchmark fits (``--models`` picks some; the references always run).
MODEL_NAMES = (
    "frax_refit",
    "frax_refit_bmd",
    "cox_frax",
    "cox_frax_bmd",
    "texture_frax",
    "texture_frax_bmd",
    "opportunistic_frax",
    "image_frax",
    "image_frax_bmd",
    "image_only",
    "image_frax_graded",
    *(f"ablation_{name}" for name in ("images_only", "no_morphometry", "masked")),
    *(f"ablation_{name}" for name in ("frontal", "lateral", "axial", "view_ensemble")),
    "ablation_volume_3d",
)
#: The seed papers' ablations, on the two-stage texture model with the FRAX covariates (no
#: DXA): Kong's images only / masked patches (and what the vertebrae's shape adds); Kim's
#: single views and the ensemble of the three single-view models (the mean of their log
#: hazards) against the model on all three views (``texture_frax``).
ABLATIONS = {
    "patches": ("images_only", "no_morphometry", "masked"),
    "drr": ("images_only", "frontal", "lateral", "axial", "view_ensemble"),
}

#: Models that take another's stage-1 encoder and fit only their own Cox stage (when that
#: model runs too): two-stage models that differ from it only in their covariates.
SHARED_STAGE_ONE = {"image_frax_bmd": "image_frax", "image_only": "image_frax"}

#: What each preset's images are and how the end-to-end model reads them (fixed settings).
PRESETS = {
    "kong2022": {
        "images": "spine",
        "kind": "patches",
        "modality": "spine_xray",
        "image_options": {"size": (64, 64)},
        "encoder": "vertebral_patches",
        "encoder_kwargs": {"backbone": "resnet10t", "pooling": "attention"},
        "batch_size": 64,
        # Dense targets of the image models: the DXA T-score and the radiologist's Genant
        # grade of each vertebra (training patients only; prediction reads images alone).
        "auxiliary": {_T: 1.0, **{f"genant_{v}": 1.0 for v in ("L1", "L2", "L3", "L4", "L5")}},
    },
    "kim2024": {
        "images": "hip_ct",
        "kind": "drr",
        "modality": "hip_ct",
        "image_options": {"size": (128, 128)},
        "encoder": "multiview_drr",
        # The T-score of a calibrated DRR is an intensity level: the per-view quantiles
        # join the CNN's embedding (chosen on benchmarks/probe_drr_t_score.py's seed-7
        # cohort, not on this benchmark's cohorts).
        "encoder_kwargs": {
            "backbone": "resnet10t",
            "shared_backbone": False,
            "pooling": "concat",
            "intensity_quantiles": (0.5, 0.75, 0.9, 0.95, 0.99),
        },
        "batch_size": 32,
        "auxiliary": {_T: 1.0},
    },
}


def _machine() -> str:
    memory = "unknown memory"
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}), {memory}, {gpu}; "
        f"torch {torch.__version__}; Python {platform.python_version()}"
    )


class _WithoutDXA:
    """A model fed the cohort without its DXA columns (the calculator without BMD)."""

    def __init__(self, model) -> None:
        self.model = model
        self.risk_type = getattr(model, "risk_type", "absolute")

    def predict_score(self, data: Cohort) -> np.ndarray:
        return self.model.predict_score(data.df.drop(columns=[c for c in _DXA if c in data.df]))


def _cohorts(args, preset: dict, log) -> tuple[Cohort, Cohort]:
    """The training and test cohorts with images, simulated once and reused."""
    from fracrisk.simulate import cohort

    data = Path(args.out) / "data"
    stamp = {
        "preset": args.preset,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "seed": args.seed,
    }
    stamp_file = data / "cohorts.json"
    parts = {"train": (args.n_train, args.seed), "test": (args.n_test, args.seed + 10_000)}
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        log(f"reusing the simulated cohorts in {data}")
        return tuple(Cohort.read(data / f"{name}.parquet") for name in parts)
    out = []
    for name, (n, seed) in parts.items():
        start = time.perf_counter()
        sim = cohort(
            n,
            preset=args.preset,
            seed=seed,
            images=(preset["images"],),
            out_dir=data / f"{name}_images",
            progress=args.progress,
        )
        sim.save(data / f"{name}.parquet", overwrite=True)
        log(f"simulated {name}: {sim!r} in {time.perf_counter() - start:.0f} s")
        out.append(Cohort.read(data / f"{name}.parquet"))
    stamp_file.write_text(json.dumps(stamp) + "\n")
    return tuple(out)


def _frax_covariates(train: Cohort) -> list[str]:
    """Age, sex, BMI and FRAX's risk factors, without those constant in training."""
    columns = ["age", "sex", "bmi", *BINARY_RISK_FACTORS]
    return [c for c in columns if train.df[c].nunique() > 1]


def _models(args, preset: dict, train: Cohort) -> dict:
    """Every model of the benchmark, unfitted, with its fixed settings."""
    frax = _frax_covariates(train)
    options = {**preset["image_options"], "cache_dir": str(Path(args.out) / "cache")}
    if preset["kind"] == "patches" and not args.manifest_keypoints:
        options["keypoint_columns"] = ()  # the keypoint detector finds the corners
    ridge = _COX_PENALIZER
    models = {
        "frax_refit": (FraxStyleRefit(with_bmd=False, penalizer=ridge), None),
        "frax_refit_bmd": (FraxStyleRefit(with_bmd=True, penalizer=ridge), None),
        "cox_frax": (CoxPH(penalizer=ridge), frax),
        "cox_frax_bmd": (CoxPH(penalizer=ridge), [*frax, _T]),
        "texture_frax": (TextureCox(preset["kind"], image_options=options), frax),
        "texture_frax_bmd": (TextureCox(preset["kind"], image_options=options), [*frax, _T]),
        "opportunistic_frax": (
            OpportunisticFrax(preset["kind"], image_options=options, penalizer=ridge),
            None,
        ),
    }
    for name in ABLATIONS[preset["kind"]]:
        if name == "view_ensemble":
            continue  # the mean of the single views' log hazards (see ``run``)
        settings, covariates = {"image_options": options}, frax
        if name == "images_only":
            covariates = []
        elif name == "no_morphometry":
            settings["morphometry"] = False
        elif name == "masked":
            from fracrisk.imaging.transforms import MaskVertebralBody

            settings["morphometry"] = False
            mask = MaskVertebralBody(margin=0.15)  # the patches' default margin
            settings["image_options"] = {**options, "transform": mask}
        else:  # one DRR view
            settings["image_options"] = {**options, "views": (name,)}
        models[f"ablation_{name}"] = (TextureCox(preset["kind"], **settings), covariates)
    if not args.skip_end_to_end:
        common = {
            "head": "deepsurv",
            "auxiliary": dict(preset["auxiliary"]),
            "training": "two_stage",
            "max_epochs": args.epochs,
            "patience": 3,
            "batch_size": preset["batch_size"],
            "seed": args.seed,
            "progress": args.progress,
            "logger": None,
            "accelerator": "auto",
        }
        for name, covariates in (("image_frax", frax), ("image_frax_bmd", [*frax, _T])):
            models[name] = (
                ImageSurvivalModel(
                    preset["encoder"],
                    dict(preset["encoder_kwargs"]),
                    image_options={**options, "covariates": covariates},
                    **common,
                ),
                "images",
            )
        graded = {c: 4 for c in preset["auxiliary"] if c.startswith("genant_")}  # grades 0-3
        if graded:  # the same model with the Genant grades as classes (cross-entropy)
            models["image_frax_graded"] = (
                ImageSurvivalModel(
                    preset["encoder"],
                    dict(preset["encoder_kwargs"]),
                    image_options={**options, "covariates": frax},
                    auxiliary_classes=graded,
                    **common,
                ),
                "images",
            )
        if preset["kind"] == "drr":  # Kim's 3-D arm: a MONAI 3-D ResNet on the CT itself
            volume = {k: v for k, v in options.items() if k != "size"}  # its own grid
            models["ablation_volume_3d"] = (
                ImageSurvivalModel(
                    "ct_volume",
                    image_options={**volume, "kind": "volume", "covariates": frax},
                    **common,
                ),
                "images",
            )
        models["image_only"] = (
            ImageSurvivalModel(
                preset["encoder"],
                dict(preset["encoder_kwargs"]),
                image_options={**options, "covariates": []},
                **common,
            ),
            "images",
        )
    return models


def _fit(model, covariates, train: Cohort):
    if covariates == "images":
        from fracrisk.simulate import with_labels

        return model.fit(with_labels(train, list(model.auxiliary)))
    if covariates is None:
        return model.fit(train)
    return model.fit(train, covariates=covariates)


def _r2(y: np.ndarray, estimate: np.ndarray) -> float:
    return float(1 - ((y - estimate) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def run(args, log=print) -> dict:
    """Run the benchmark; returns (and writes) ``results.json``."""
    from fracrisk.simulate.truth import modality_ceiling, oracle_c

    start = time.perf_counter()
    preset = PRESETS[args.preset]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"machine: {_machine()}")
    train, test = _cohorts(args, preset, log)
    time_, event = test.time, (test.event == 1).astype(int)

    scores, risk_types, seconds, r2, absolute = {}, {}, {}, {}, {}
    image_models, stage_one_of = {}, {}
    models = _models(args, preset, train)
    ensemble = "view_ensemble" in ABLATIONS[preset["kind"]]
    if getattr(args, "models", None):
        available = {*models, *(["ablation_view_ensemble"] if ensemble else [])}
        unknown = sorted(set(args.models) - available)
        if unknown:
            raise SystemExit(
                f"models {unknown} are not fitted for {args.preset}; choose from "
                f"{sorted(available)}"
            )
        keep = {*_REFERENCES, *args.models}
        if "ablation_view_ensemble" in keep:
            keep |= {"ablation_frontal", "ablation_lateral", "ablation_axial"}
        else:
            ensemble = False
        models = {name: spec for name, spec in models.items() if name in keep}
    for name, (model, covariates) in models.items():
        t0 = time.perf_counter()
        shared = image_models.get(SHARED_STAGE_ONE.get(name))
        if shared is not None:
            from fracrisk.simulate import with_labels

            labelled = with_labels(train, list(shared.auxiliary))
            stage_two = model.image_options["covariates"]
            fitted = shared.with_stage_two(labelled, covariates=stage_two)
            stage_one_of[name] = SHARED_STAGE_ONE[name]
        else:
            fitted = _fit(model, covariates, train)
        if isinstance(fitted, ImageSurvivalModel):
            image_models[name] = fitted
        hazard = getattr(fitted, "predict_fracture_log_hazard", None)
        if hazard is not None:  # absolute-risk models: rank by their fracture hazard
            scores[name] = hazard(test).to_numpy(dtype=np.float64)
            absolute[name] = np.asarray(fitted.predict_score(test), dtype=np.float64)
        else:
            scores[name] = np.asarray(fitted.predict_score(test), dtype=np.float64)
        risk_types[name] = fitted.risk_type
        seconds[name] = round(time.perf_counter() - t0, 1)
        estimate, train_r2 = None, None
        if isinstance(fitted, OpportunisticFrax):
            estimate = fitted.predict_t_score(test).to_numpy()
            train_r2 = fitted.t_score_r2_
        elif isinstance(fitted, ImageSurvivalModel) and _T in (fitted.auxiliary or {}):
            estimate = fitted.predict_auxiliary(test)[_T].to_numpy()
            train_r2 = getattr(fitted, "auxiliary_r2_", {}).get(_T, {}).get("validation")
        if estimate is not None:
            r2[name] = {
                "t_score_r2": _r2(test.df[_T].to_numpy(), estimate),
                "t_score_r2_true": _r2(test.truth["true_t_score"].to_numpy(), estimate),
                "t_score_r2_train_cv": train_r2,
            }
        shared_note = f" (stage 1 of {stage_one_of[name]})" if name in stage_one_of else ""
        log(f"{name}: fitted and scored in {seconds[name]:.0f} s{shared_note}")
        if name == "frax_refit_bmd":
            calculator = FraxStyleCalculator("UK")
            scores["frax_calculator"] = _WithoutDXA(calculator).predict_score(test)
            scores["frax_calculator_bmd"] = np.asarray(calculator.predict_score(test.df))
            absolute["frax_calculator"] = scores["frax_calculator"]
            absolute["frax_calculator_bmd"] = scores["frax_calculator_bmd"]
            risk_types["frax_calculator"] = risk_types["frax_calculator_bmd"] = "absolute"

    if ensemble:
        views = [scores[f"ablation_{v}"] for v in ("frontal", "lateral", "axial")]
        scores["ablation_view_ensemble"] = np.mean(views, axis=0)
        risk_types["ablation_view_ensemble"] = "cause_specific"
    for name, score in scores.items():
        if len(score) != len(test):
            raise RuntimeError(f"{name} scored {len(score)} of {len(test)} test patients")

    ceiling = modality_ceiling(test, preset["modality"])
    oracle = oracle_c(test)
    base = harrell_c(time_, event, scores["cox_frax_bmd"])
    results_models = {}
    for name, score in scores.items():
        ci = bootstrap(harrell_c, time_, event, score, n=args.n_boot, seed=args.seed)
        entry = {
            "c": ci.estimate,
            "c_low": ci.lower,
            "c_high": ci.upper,
            "risk_type": risk_types[name],
            "share_of_gap": (ci.estimate - base) / (ceiling - base) if ceiling > base else None,
            "seconds": seconds.get(name),
            "stage_one_of": stage_one_of.get(name),
        }
        if name in absolute:  # competing-risks concordance of the 10-year absolute risk
            wolbers = bootstrap(
                wolbers_c, time_, test.event, absolute[name], n=args.n_boot, seed=args.seed
            )
            entry.update(
                c_wolbers=wolbers.estimate,
                c_wolbers_low=wolbers.lower,
                c_wolbers_high=wolbers.upper,
            )
        entry.update(r2.get(name, {"t_score_r2": None}))
        results_models[name] = entry
    comparisons = []
    for name, score in scores.items():
        for reference in _REFERENCES:
            if reference == name:
                continue
            result = compare(
                harrell_c,
                time_,
                event,
                scores[reference],
                score,
                n=args.n_boot,
                seed=args.seed,
            )
            comparisons.append(
                {
                    "model": name,
                    "reference": reference,
                    "delta": result.difference,
                    "low": result.lower,
                    "high": result.upper,
                }
            )
    results = {
        "preset": args.preset,
        "seed": args.seed,
        "n_train": len(train),
        "n_test": len(test),
        "events_train": int((train.event == 1).sum()),
        "events_test": int(event.sum()),
        "seconds": round(time.perf_counter() - start, 1),
        "ceiling": ceiling,
        "ceiling_modality": preset["modality"],
        "oracle": oracle,
        "ceilings": {m: modality_ceiling(test, m) for m in ("clinical", "clinical_bmd")},
        "models": results_models,
        "comparisons": comparisons,
        "machine": _machine(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "settings": {
            "epochs": args.epochs,
            "n_boot": args.n_boot,
            "end_to_end": not args.skip_end_to_end,
            "keypoints": "manifest" if args.manifest_keypoints else "detector",
            "cox_penalizer": _COX_PENALIZER,
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = _markdown(results)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(_html(results))
    log(markdown)
    return results


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(results: dict) -> list[list[str]]:
    deltas = {(c["model"], c["reference"]): c for c in results["comparisons"]}
    rows = []
    for name, m in results["models"].items():
        label = name if not m.get("stage_one_of") else f"{name} (stage 1 of {m['stage_one_of']})"
        row = [label, m["risk_type"], f"{_fmt(m['c'])} ({_fmt(m['c_low'])}-{_fmt(m['c_high'])})"]
        for reference in _REFERENCES:
            d = deltas.get((name, reference))
            row.append(
                "-" if d is None else f"{d['delta']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})"
            )
        wolbers = "-"
        if m.get("c_wolbers") is not None:
            wolbers = (
                f"{_fmt(m['c_wolbers'])} ({_fmt(m['c_wolbers_low'])}-{_fmt(m['c_wolbers_high'])})"
            )
        row += [wolbers, _fmt(m["share_of_gap"], 2)]
        row += [_fmt(m.get("t_score_r2")), _fmt(m["seconds"], 0)]
        rows.append(row)
    return rows


_HEADER = [
    "model",
    "risk type",
    "Harrell C (95% CI)",
    "dC vs frax_refit",
    "dC vs frax_refit_bmd",
    "dC vs cox_frax_bmd",
    "Wolbers C, 10-y absolute risk (95% CI)",
    "share of gap",
    "T-score R2 (test)",
    "fit+score s",
]


def _preamble(results: dict) -> list[str]:
    return [
        f"preset {results['preset']}, seed {results['seed']}: {results['n_train']} training "
        f"patients ({results['events_train']} fractures), {results['n_test']} independent test "
        f"patients ({results['events_test']} fractures); {results['seconds']:.0f} s in all",
        f"modality ceiling ({results['ceiling_modality']}): C {results['ceiling']:.3f}; oracle "
        f"(every true term, falls included) {results['oracle']:.3f}; clinical terms only "
        f"{results['ceilings']['clinical']:.3f}; clinical + BMD "
        f"{results['ceilings']['clinical_bmd']:.3f}",
        "Harrell C: against fracture, death censored, of each model's fracture hazard "
        "(refitted absolute-risk models: their fracture sub-model's; the calculator: its 10-year "
        "probability), so that every row ranks the same cause-specific quantity; dC and the "
        "share of gap = (C - C cox_frax_bmd) / (ceiling - C cox_frax_bmd) use it. Absolute-risk "
        "models are also ranked by Wolbers' competing-risks C of their 10-year absolute risk "
        "(a fracture-free death counts as never fracturing). dC: paired bootstrap, 95% "
        "percentile CI.",
        f"machine: {results['machine']}",
        f"command: {results['command']}",
    ]


def _markdown(results: dict) -> str:
    lines = [f"- {p}" for p in _preamble(results)]
    lines += ["", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
    return "\n".join(lines) + "\n"


def _html(results: dict) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _rows(results)
    )
    notes = "".join(f"<p>{html.escape(p)}</p>" for p in _preamble(results))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fracrisk image signal "
        f"{html.escape(results['preset'])}</title><style>body{{font-family:sans-serif}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        f"</style></head><body><h1>Image signal: {html.escape(results['preset'])}</h1>{notes}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def _parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Image models against the simulator's truth (see the module docstring).",
        epilog="example: python benchmarks/image_signal.py --preset kong2022 --n-train 3000 "
        "--n-test 3000 --seed 1 --out runs/image-signal-kong2022",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-test", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="output directory (reused by a rerun)")
    parser.add_argument("--epochs", type=int, default=8, help="end-to-end models (default 8)")
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--skip-end-to-end", action="store_true", help="two-stage models only")
    parser.add_argument(
        "--manifest-keypoints",
        action="store_true",
        help="spine: use the simulator's true corners instead of the keypoint detector",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        choices=MODEL_NAMES,
        help="fit only these models (the references frax_refit, frax_refit_bmd and "
        "cox_frax_bmd are always fitted); default: all",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.n_train < 50 or args.n_test < 50:
        parser.error("--n-train and --n-test must be at least 50")
    return args


def main(argv=None) -> int:
    run(_parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
