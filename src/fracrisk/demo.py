"""The end-to-end demo on the embedded simulator: ``fracrisk demo`` / ``make demo``.

Simulate a cohort -> temporal split -> fit CoxPH and DeepSurv on the FRAX inputs ->
absolute survival curves -> held-out C-index and calibration -> a report with plots. It
grows with the package (image encoders, the FRAX-style baseline, bootstrap CIs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._io import atomic_path, atomic_write_json, prepare_output_dir
from fracrisk.data.cohort import Cohort
from fracrisk.metrics import harrell_c
from fracrisk.models import CoxPH, DeepSurv
from fracrisk.models._base import SurvivalEstimator
from fracrisk.nonparametric import kaplan_meier
from fracrisk.simulate import clinical_cohort

__all__ = ["DemoResult", "calibration_by_decile", "run_demo"]

_MARKER = "run.json"


@dataclass
class DemoResult:
    """What the demo measured; also written to ``run.json``."""

    out_dir: Path
    n_train: int
    n_test: int
    c_index: dict[str, float] = field(default_factory=dict)
    mean_risk_5y: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def calibration_by_decile(
    risk: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float, groups: int = 10
) -> pd.DataFrame:
    """Mean predicted risk vs Kaplan-Meier observed risk by ``horizon``, per risk group.

    Groups are quantiles of the predicted risk. Observed risk is ``1 - KM(horizon)`` with
    competing events censored, matching the cause-specific risk the Cox models predict.
    """
    edges = np.quantile(risk, np.linspace(0, 1, groups + 1))
    group = np.clip(np.searchsorted(edges, risk, side="right") - 1, 0, groups - 1)
    rows = []
    for g in range(groups):
        member = group == g
        if not member.any():
            continue
        _, surv = kaplan_meier(time[member], event[member], times=[horizon])
        rows.append(
            {
                "group": g + 1,
                "n": int(member.sum()),
                "predicted": float(risk[member].mean()),
                "observed": float(1 - surv[0]),
            }
        )
    return pd.DataFrame(rows)


def _plot_curves(
    path: Path, models: dict[str, SurvivalEstimator], cohort: Cohort, patients: pd.Index
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = np.linspace(
        0.0, min(10.0, max(m.baseline_hazard_.max_time_ for m in models.values())), 121
    )
    subset = cohort._with_rows(patients)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lowest = 1.0
    colours = plt.get_cmap("tab10").colors
    styles = ["-", "--", ":"]
    for (name, model), style in zip(models.items(), styles, strict=False):
        surv = model.predict_survival(subset, times=times)
        lowest = min(lowest, float(surv.to_numpy().min()))
        for k, (_, row) in enumerate(surv.iterrows()):
            ax.step(
                times,
                row.to_numpy(),
                where="post",
                linestyle=style,
                color=colours[k % 10],
                label=f"{name}" if k == 0 else None,
            )
    if subset.truth is not None:
        for k, (_, row) in enumerate(subset.truth.iterrows()):
            ax.plot(
                [2, 5, 10],
                1 - row[["risk_2y", "risk_5y", "risk_10y"]].to_numpy(float),
                "o",
                color=colours[k % 10],
                label="true (competing death)" if k == 0 else None,
            )
    ax.set_xlabel("years since baseline")
    ax.set_ylabel("probability of no fracture")
    ax.set_title("Per-patient survival curves (one colour per patient)")
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _plot_calibration(path: Path, tables: dict[str, pd.DataFrame], horizon: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(max(t["predicted"].max(), t["observed"].max()) for t in tables.values()) * 1.1
    ax.plot([0, top], [0, top], color="grey", linewidth=1, label="perfect calibration")
    for name, table in tables.items():
        ax.plot(table["predicted"], table["observed"], "o-", label=name)
    ax.set_xlabel(f"predicted {horizon:g}-year fracture risk")
    ax.set_ylabel(f"observed {horizon:g}-year risk (Kaplan-Meier)")
    ax.set_title("Calibration by risk decile, held-out patients")
    ax.legend()
    ax.grid(alpha=0.3)
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
    overwrite: bool = False,
    progress: bool = True,
    log=print,
) -> DemoResult:
    """Run the demo and write its outputs under ``out_dir``; returns what it measured.

    Outputs: ``cohort.parquet`` (+ truth), ``models/``, ``predictions.csv``,
    ``survival_curves.png``, ``calibration.png``, ``report.md`` and ``run.json``.
    """
    out = prepare_output_dir(out_dir, overwrite=overwrite, is_ours=lambda p: (p / _MARKER).exists())
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

    models: dict[str, SurvivalEstimator] = {}
    log("[2/5] fitting CoxPH (Efron ties) on the FRAX inputs ...")
    t0 = time.perf_counter()
    models["CoxPH"] = CoxPH().fit(train)
    seconds["fit CoxPH"] = time.perf_counter() - t0
    log("[3/5] fitting DeepSurv (early stopping on a validation split) ...")
    t0 = time.perf_counter()
    models["DeepSurv"] = DeepSurv(seed=seed, progress=progress).fit(train)
    seconds["fit DeepSurv"] = time.perf_counter() - t0
    for name, model in models.items():
        model.save(out / "models" / name.lower())

    log("[4/5] predicting absolute risks and survival curves ...")
    c_index = {
        "truth (oracle)": harrell_c(test.time, test.event, test.truth["true_log_hazard"].to_numpy())
    }
    predictions = pd.DataFrame(index=test.ids)
    tables, mean_risk = {}, {}
    for name, model in models.items():
        log_hazard = model.predict_log_hazard(test)
        risk = model.predict_risk(test, horizon=horizon)
        c_index[name] = harrell_c(test.time, test.event, log_hazard.to_numpy())
        predictions[f"{name}_log_hazard"] = log_hazard.to_numpy()
        predictions[f"{name}_risk_{horizon:g}y"] = risk.to_numpy()
        tables[name] = calibration_by_decile(risk.to_numpy(), test.time, test.event, horizon)
        mean_risk[name] = float(risk.mean())
    _, km = kaplan_meier(test.time, test.event, times=[horizon])
    mean_risk["observed (Kaplan-Meier)"] = float(1 - km[0])
    predictions[f"true_risk_{horizon:g}y"] = test.truth[f"risk_{horizon:g}y"].to_numpy()
    with atomic_path(out / "predictions.csv") as tmp:
        predictions.to_csv(tmp)

    log("[5/5] writing plots and report ...")
    # five patients spread over the predicted risk: the 5th, 25th, 50th, 75th, 95th centile
    ranked = np.argsort(predictions["CoxPH_log_hazard"].to_numpy())
    examples = test.df.index[
        ranked[(np.array([0.05, 0.25, 0.5, 0.75, 0.95]) * (len(test) - 1)).astype(int)]
    ]
    _plot_curves(out / "survival_curves.png", models, test, examples)
    _plot_calibration(out / "calibration.png", tables, horizon)
    seconds["total"] = time.perf_counter() - start
    result = DemoResult(out, len(train), len(test), c_index, mean_risk, seconds)
    _write_report(out, result, cohort, test, tables, horizon, models)
    atomic_write_json(
        out / _MARKER,
        {
            "n": n,
            "seed": seed,
            "horizon": horizon,
            "c_index": c_index,
            "mean_risk": mean_risk,
            "seconds": seconds,
        },
    )
    log("")
    log("held-out Harrell C: " + ", ".join(f"{k} {v:.3f}" for k, v in c_index.items()))
    log(f"mean {horizon:g}-year risk: " + ", ".join(f"{k} {v:.3f}" for k, v in mean_risk.items()))
    log(f"report: {out / 'report.md'}")
    return result


def _write_report(
    out: Path,
    result: DemoResult,
    cohort: Cohort,
    test: Cohort,
    tables: dict[str, pd.DataFrame],
    horizon: float,
    models: dict[str, SurvivalEstimator],
) -> None:
    counts = np.bincount(cohort.event, minlength=3)
    lines = [
        "# fracrisk demo report",
        "",
        "Simulated clinical cohort (`fracrisk.simulate.clinical_cohort`, non-linear effects), "
        "temporal split by entry date (the last 30% of entrants are the test set).",
        "",
        f"- patients: {len(cohort)} ({result.n_train} train / {result.n_test} test)",
        f"- events: {counts[1]} fractures, {counts[2]} deaths (competing), "
        f"{counts[0]} censored; median follow-up {np.median(cohort.time):.2f} years",
        f"- test fractures: {test.n_events}",
        "",
        "## Discrimination on held-out patients",
        "",
        "| model | Harrell C |",
        "|---|---|",
        *[f"| {k} | {v:.3f} |" for k, v in result.c_index.items()],
        "",
        "Harrell's C treats competing death as censoring (cause-specific). Bootstrap CIs and "
        "time-dependent metrics come with the evaluation suite.",
        "",
        f"## Calibration at {horizon:g} years",
        "",
        "| model | mean predicted | observed (KM) |",
        "|---|---|---|",
        *[
            f"| {k} | {result.mean_risk_5y[k]:.4f} | "
            f"{result.mean_risk_5y['observed (Kaplan-Meier)']:.4f} |"
            for k in models
        ],
        "",
        "The models estimate the cause-specific risk (death censored), so the observed "
        "column is 1 - Kaplan-Meier with deaths censored.",
        "",
        "![calibration](calibration.png)",
        "",
        "![survival curves](survival_curves.png)",
        "",
    ]
    for name, table in tables.items():
        lines += [f"### {name}: by risk decile", "", _markdown_table(table.round(4)), ""]
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
