"""The end-to-end demo on the embedded simulator: ``fracrisk demo`` / ``make demo``.

Simulate a cohort -> temporal split -> FRAX-style baselines, CoxPH and DeepSurv on the
FRAX inputs -> absolute survival curves -> discrimination with bootstrap CIs, paired
comparisons, calibration and decision curves on held-out patients -> a report with plots.
It grows with the package (image encoders on simulated CT and radiographs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._io import atomic_path, atomic_write_json, staged_output_dir
from fracrisk.baselines import FraxStyleCalculator, FraxStyleRefit
from fracrisk.data.cohort import Cohort
from fracrisk.metrics import (
    bootstrap,
    calibration,
    compare,
    cumulative_dynamic_auc,
    harrell_c,
    integrated_brier_score,
    net_benefit,
    uno_c,
)
from fracrisk.models import CoxPH, DeepSurv
from fracrisk.simulate import clinical_cohort

__all__ = ["DemoResult", "run_demo"]

_MARKER = "run.json"
_TRUTH = "truth (oracle)"


@dataclass
class DemoResult:
    """What the demo measured; also written to ``run.json``."""

    out_dir: Path
    n_train: int
    n_test: int
    metrics: pd.DataFrame
    comparisons: list[str]
    seconds: dict[str, float] = field(default_factory=dict)


def _evaluate(
    models: dict, train: Cohort, test: Cohort, horizon: float, n_boot: int, seed: int, log
) -> tuple[pd.DataFrame, dict, list[str]]:
    """Every metric for every model (and the simulator's truth) on the test patients."""
    t, e = test.time, test.event
    censoring = {"train_time": train.time, "train_event": train.event}
    auc_times = np.array([1.0, 2.0, horizon])
    grid = np.arange(0.25, horizon + 1e-9, 0.25)
    scores = {name: m.predict_score(test) for name, m in models.items()}
    scores[_TRUTH] = test.truth["true_log_hazard"].to_numpy()
    risks = {name: m.predict_risk(test, horizon).to_numpy() for name, m in models.items()}
    risks[_TRUTH] = test.truth[f"risk_{horizon:g}y"].to_numpy()
    rows, calibrations = [], {}
    for name, score in scores.items():
        log(f"      {name}: bootstrap CIs ({n_boot} resamples) ...")
        harrell = bootstrap(harrell_c, t, e, score, n=n_boot, seed=seed)
        uno = bootstrap(uno_c, t, e, score, n=n_boot, seed=seed, tau=horizon, **censoring)
        auc, mean_auc = cumulative_dynamic_auc(t, e, score, auc_times, **censoring)
        calibrations[name] = calibration(t, e, risks[name], horizon)
        row = {
            "model": name,
            "risk": models[name].risk_label if name in models else "true absolute risk",
            "Harrell C (95% CI)": _with_ci(harrell),
            f"Uno C, tau {horizon:g} y (95% CI)": _with_ci(uno),
            **{f"AUC({x:g} y)": round(float(a), 3) for x, a in zip(auc_times, auc, strict=True)},
            "mean AUC": round(mean_auc, 3),
        }
        if name in models:
            surv = models[name].predict_survival(test, grid).to_numpy()
            row["IBS"] = round(integrated_brier_score(t, e, surv, grid, **censoring), 4)
        rows.append(row)
    comparisons = []
    for reference in ("FRAX-style refit", "CoxPH"):
        result = compare(
            uno_c,
            t,
            e,
            scores[reference],
            scores["DeepSurv"],
            n=n_boot,
            seed=seed,
            tau=horizon,
            **censoring,
        )
        comparisons.append(f"DeepSurv vs {reference}, Uno C: {result}")
    return pd.DataFrame(rows), calibrations, comparisons


def _with_ci(result) -> str:
    return f"{result.estimate:.3f} ({result.lower:.3f}-{result.upper:.3f})"


def _plot_curves(path: Path, models: dict, cohort: Cohort, patients: pd.Index) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = min(10.0, float(cohort.time.max()))
    times = np.linspace(0.0, last, 121)
    subset = cohort._with_rows(patients)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lowest = 1.0
    colours = plt.get_cmap("tab10").colors
    for (name, model), style in zip(models.items(), ["-", "--", ":"], strict=False):
        surv = model.predict_survival(subset, times=times)
        lowest = min(lowest, float(surv.to_numpy().min()))
        for k, (_, row) in enumerate(surv.iterrows()):
            ax.step(
                times,
                row.to_numpy(),
                where="post",
                linestyle=style,
                color=colours[k % 10],
                label=name if k == 0 else None,
            )
    for k, (_, row) in enumerate(subset.truth.iterrows()):
        ax.plot(
            [2, 5, 10],
            1 - row[["risk_2y", "risk_5y", "risk_10y"]].to_numpy(float),
            "o",
            color=colours[k % 10],
            label="truth (death competing)" if k == 0 else None,
        )
    ax.set_xlabel("years since baseline")
    ax.set_ylabel("probability of no fracture")
    ax.set_title("Per-patient survival curves (one colour per patient)")
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    _save(fig, path)


def _plot_calibration(path: Path, calibrations: dict, horizon: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name, result in calibrations.items():
        result.plot(ax, label=name)
    ax.set_title(f"Calibration at {horizon:g} years, held-out patients")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _plot_decision(path: Path, curves: dict[str, pd.DataFrame], horizon: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    first = next(iter(curves.values()))
    ax.plot(first["threshold"], first["treat_all"], color="grey", label="treat all")
    ax.axhline(0, color="black", linewidth=1, label="treat none")
    for name, curve in curves.items():
        ax.plot(curve["threshold"], curve["model"], label=name)
    ax.set_ylim(-0.01, max(0.01, float(first["treat_all"].max()) * 1.3))
    ax.set_xlabel(f"treatment threshold ({horizon:g}-year risk)")
    ax.set_ylabel("net benefit")
    ax.set_title("Decision curves, held-out patients")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    n: int = 8000,
    seed: int = 0,
    horizon: float = 5.0,
    n_boot: int = 1000,
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> DemoResult:
    """Run the demo and write its outputs under ``out_dir``; returns what it measured.

    Outputs: ``cohort.parquet`` (+ truth), ``models/``, ``predictions.csv``,
    ``metrics.csv``, ``survival_curves.png``, ``calibration.png``, ``decision_curve.png``,
    ``report.md`` and ``run.json``. An existing run is replaced only with ``overwrite``.
    """
    final = Path(out_dir)
    with staged_output_dir(
        final, overwrite=overwrite, is_ours=lambda p: (p / _MARKER).exists()
    ) as out:
        result = _run_into(
            out, final, n=n, seed=seed, horizon=horizon, n_boot=n_boot, progress=progress, log=log
        )
    log(f"report: {final / 'report.md'}")
    return result


def _run_into(
    out: Path, final: Path, *, n: int, seed: int, horizon: float, n_boot: int, progress: bool, log
) -> DemoResult:
    """The demo's work, written into the staging directory ``out``."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    log(f"[1/5] simulating {n} patients (seed {seed}) ...")
    cohort = clinical_cohort(n, seed=seed, effects="nonlinear")
    cohort.save(out / "cohort.parquet")
    train, test = cohort.split(0.3, method="temporal", by="entry_date")
    seconds["simulate"] = time.perf_counter() - start
    log(f"      {cohort!r}")
    log(
        f"      temporal split by entry_date: {len(train)} train, {len(test)} test "
        f"({test.n_events} test fractures)"
    )

    models: dict = {}
    log("[2/5] FRAX-style baselines and CoxPH (Efron ties) on the FRAX inputs ...")
    t0 = time.perf_counter()
    models["FRAX-style calculator"] = FraxStyleCalculator("UK")
    models["FRAX-style refit"] = FraxStyleRefit().fit(train)
    models["CoxPH"] = CoxPH().fit(train)
    seconds["fit baselines and CoxPH"] = time.perf_counter() - t0
    log("[3/5] fitting DeepSurv (early stopping on a validation split) ...")
    t0 = time.perf_counter()
    models["DeepSurv"] = DeepSurv(seed=seed, progress=progress).fit(train)
    # The same network with a fracture and a death head: the absolute risk, death competing.
    models["DeepSurv (death competing)"] = DeepSurv(
        head="cause_specific", seed=seed, progress=progress
    ).fit(train)
    seconds["fit DeepSurv"] = time.perf_counter() - t0
    for name in ("CoxPH", "DeepSurv"):
        models[name].save(out / "models" / name.lower())

    log("[4/5] evaluating on held-out patients ...")
    t0 = time.perf_counter()
    table, calibrations, comparisons = _evaluate(models, train, test, horizon, n_boot, seed, log)
    seconds["evaluate"] = time.perf_counter() - t0
    predictions = pd.DataFrame(index=test.ids)
    for name, model in models.items():
        predictions[f"{name}_score"] = model.predict_score(test)
        predictions[f"{name}_risk_{horizon:g}y"] = model.predict_risk(test, horizon).to_numpy()
    predictions[f"true_risk_{horizon:g}y"] = test.truth[f"risk_{horizon:g}y"].to_numpy()
    with atomic_path(out / "predictions.csv") as tmp:
        predictions.to_csv(tmp)
    with atomic_path(out / "metrics.csv") as tmp:
        table.to_csv(tmp, index=False)

    log("[5/5] writing plots and report ...")
    ranked = np.argsort(predictions["CoxPH_score"].to_numpy())
    centiles = (np.array([0.05, 0.25, 0.5, 0.75, 0.95]) * (len(test) - 1)).astype(int)
    curve_models = {
        k: models[k]
        for k in ("CoxPH", "DeepSurv", "DeepSurv (death competing)", "FRAX-style refit")
    }
    _plot_curves(out / "survival_curves.png", curve_models, test, test.df.index[ranked[centiles]])
    _plot_calibration(out / "calibration.png", calibrations, horizon)
    thresholds = np.linspace(0.01, 0.4, 40)
    curves = {
        name: net_benefit(
            test.time, test.event, predictions[f"{name}_risk_{horizon:g}y"], horizon, thresholds
        )
        for name in models
    }
    _plot_decision(out / "decision_curve.png", curves, horizon)
    seconds["total"] = time.perf_counter() - start
    result = DemoResult(final, len(train), len(test), table, comparisons, seconds)
    _write_report(out, result, cohort, test, calibrations, horizon, models)
    atomic_write_json(
        out / _MARKER,
        {
            "n": n,
            "seed": seed,
            "horizon": horizon,
            "n_boot": n_boot,
            "metrics": table.to_dict(orient="records"),
            "comparisons": comparisons,
            "calibration": {
                k: {
                    "O/E": c.observed_expected,
                    "slope": c.slope,
                    "intercept": c.intercept,
                    "ICI": c.ici,
                }
                for k, c in calibrations.items()
            },
            "seconds": seconds,
        },
    )
    log("")
    log(table.to_string(index=False))
    for line in comparisons:
        log(line)
    return result


def _write_report(
    out: Path,
    result: DemoResult,
    cohort: Cohort,
    test: Cohort,
    calibrations: dict,
    horizon: float,
    models: dict,
) -> None:
    counts = np.bincount(cohort.event, minlength=3)
    calib = pd.DataFrame(
        [
            {
                "model": k,
                "risk": models[k].risk_label if k in models else "true absolute risk",
                "observed": round(c.observed, 4),
                "mean predicted": round(c.expected, 4),
                "O/E": round(c.observed_expected, 3),
                "intercept": round(c.intercept, 3),
                "slope": round(c.slope, 3),
                "ICI": round(c.ici, 4),
                "E90": round(c.e90, 4),
            }
            for k, c in calibrations.items()
        ]
    )
    lines = [
        "# fracrisk demo report",
        "",
        "Simulated clinical cohort (`fracrisk.simulate.clinical_cohort`, non-linear effects), "
        "temporal split by entry date (the last 30% of entrants are the test set). "
        "Machine: this run's; timings below.",
        "",
        f"- patients: {len(cohort)} ({result.n_train} train / {result.n_test} test)",
        f"- events: {counts[1]} fractures, {counts[2]} deaths (competing), "
        f"{counts[0]} censored; median follow-up {np.median(cohort.time):.2f} years",
        f"- test fractures: {test.n_events}",
        "",
        "## Discrimination on held-out patients",
        "",
        _markdown_table(result.metrics),
        "",
        "Paired bootstrap comparisons (the same resamples for both models):",
        "",
        *[f"- {line}" for line in result.comparisons],
        "",
        "The FRAX-style calculator uses published gradients of risk and UK tables (no "
        "training); the FRAX-style refit is FRAX's structure refitted on the training cohort "
        "with competing mortality (Kim et al. 2024's clinical model). "
        "Concordance treats competing death as censoring (cause-specific). Uno's C and the "
        "AUC weight by the censoring distribution of the training data. 95% intervals are "
        "percentile bootstrap intervals.",
        "",
        f"## Calibration at {horizon:g} years",
        "",
        _markdown_table(calib),
        "",
        "Observed risk is the Aalen-Johansen cumulative incidence, with death competing. "
        "CoxPH and DeepSurv treat death as censoring, so they estimate the cause-specific "
        "risk, which exceeds the absolute risk where mortality is high; DeepSurv (death "
        "competing), the FRAX-style models and the truth compute the risk with death "
        "competing. The FRAX-style "
        "calculator is calibrated to UK FRAX, not to this cohort.",
        "",
        "![calibration](calibration.png)",
        "",
        "![decision curve](decision_curve.png)",
        "",
        "![survival curves](survival_curves.png)",
        "",
    ]
    for name, c in calibrations.items():
        lines += [f"### {name}: by risk decile", "", _markdown_table(c.table.round(4)), ""]
    lines += [
        "## CoxPH coefficients (log hazard ratio per unit)",
        "",
        _markdown_table(models["CoxPH"].summary_.round(4).reset_index()),
        "",
        "## Timings (seconds, this machine)",
        "",
        *[f"- {k}: {v:.1f}" for k, v in result.seconds.items()],
        "",
    ]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))


def _markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured markdown table."""
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
