"""Plots of an :class:`~fracrisk.evaluation.Evaluation`, drawn from its tables alone.

Each function returns a matplotlib ``Figure`` (Agg backend, nothing shown), so a report can
be redrawn from ``evaluation.json`` without the models. :func:`png_bytes` encodes one.
"""

from __future__ import annotations

import io

import numpy as np

from fracrisk.evaluation.evaluate import ORACLE, Evaluation

__all__ = [
    "auc_over_time",
    "calibration_plot",
    "decision_curves",
    "discrimination_forest",
    "example_curves",
    "km_by_quartile",
    "png_bytes",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def _colours(evaluation: Evaluation) -> dict[str, tuple]:
    plt = _pyplot()
    palette = plt.get_cmap("tab10").colors
    names = list(evaluation.models["model"])
    return {name: "black" if name == ORACLE else palette[k % 10] for k, name in enumerate(names)}


def discrimination_forest(evaluation: Evaluation):
    """Harrell's and Uno's C with 95% intervals, one row per model."""
    plt = _pyplot()
    table = evaluation.discrimination
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(table) + 1.4))
    y = np.arange(len(table))[::-1]
    for offset, key, marker in ((0.12, "harrell", "o"), (-0.12, "uno", "s")):
        est = table[key].to_numpy(float)
        lo, hi = table[f"{key}_lower"].to_numpy(float), table[f"{key}_upper"].to_numpy(float)
        # a percentile interval need not contain the estimate on small samples
        below = np.clip(np.nan_to_num(est - lo), 0.0, None)
        above = np.clip(np.nan_to_num(hi - est), 0.0, None)
        ax.errorbar(
            est,
            y + offset,
            xerr=[below, above],
            fmt=marker,
            capsize=3,
            label=f"{key.capitalize()} C",
        )
    ax.set_yticks(y, table["model"])
    ax.axvline(0.5, color="grey", linewidth=1, linestyle=":")
    ax.set_xlabel("C-index (95% bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def auc_over_time(evaluation: Evaluation):
    """Cumulative/dynamic AUC at each whole year, one line per model."""
    plt = _pyplot()
    colours = _colours(evaluation)
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    for name, rows in evaluation.auc.groupby("model", sort=False):
        ax.plot(rows["time"], rows["auc"], marker="o", color=colours[name], label=name)
    ax.set_xlabel("years since baseline")
    ax.set_ylabel("time-dependent AUC")
    ax.set_title("td-AUC over time (cumulative cases, dynamic controls)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def calibration_plot(evaluation: Evaluation, horizon: float):
    """Observed against predicted risk at ``horizon``, a panel per model.

    Points are deciles of predicted risk with the observed risk's 95% interval; the line
    is the smoothed calibration curve; the dashed diagonal is perfect calibration.
    """
    plt = _pyplot()
    colours = _colours(evaluation)
    groups = evaluation.calibration_groups
    groups = groups[groups["horizon"] == horizon]
    curves = evaluation.calibration_curves
    curves = curves[curves["horizon"] == horizon]
    summary = evaluation.calibration[evaluation.calibration["horizon"] == horizon]
    names = [m for m in evaluation.models["model"] if (groups["model"] == m).any()]
    columns = min(3, max(1, len(names)))
    rows = int(np.ceil(len(names) / columns)) or 1
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(3.6 * columns, 3.5 * rows),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    top = max(
        float(groups["predicted"].max()) if len(groups) else 0.0,
        float(np.nanmax(groups["observed"])) if len(groups) else 0.0,
    )
    top = max(top * 1.15, 0.02)
    for ax, name in zip(axes.flat, names, strict=False):
        g = groups[groups["model"] == name]
        c = curves[curves["model"] == name]
        s = summary[summary["model"] == name].iloc[0]
        observed = g["observed"].to_numpy(float)
        lower = np.clip(np.nan_to_num(observed - g["observed_lower"].to_numpy(float)), 0, None)
        upper = np.clip(np.nan_to_num(g["observed_upper"].to_numpy(float) - observed), 0, None)
        ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--")
        ax.errorbar(
            g["predicted"],
            observed,
            yerr=[lower, upper],
            fmt="o",
            markersize=4,
            capsize=2,
            color=colours[name],
        )
        ax.plot(c["predicted"], c["observed"], color=colours[name], linewidth=1.2, alpha=0.8)
        ax.set_title(
            f"{name}\nO/E {s['oe']:.2f}, slope {s['slope']:.2f}, ICI {s['ici']:.3f}", fontsize=8
        )
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].set_xlim(0, top)
    axes.flat[0].set_ylim(0, top)
    for ax in axes[-1, :]:
        ax.set_xlabel(f"predicted {horizon:g}-year risk")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"observed {horizon:g}-year risk")
    fig.suptitle(f"Calibration at {horizon:g} years (deciles with 95% CI)", fontsize=10)
    return fig


def decision_curves(evaluation: Evaluation, horizon: float):
    """Net benefit against the treatment threshold at ``horizon``, with treat all / none."""
    plt = _pyplot()
    colours = _colours(evaluation)
    rows = evaluation.decision[evaluation.decision["horizon"] == horizon]
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    treat_all = rows[rows["model"] == "treat all"]
    ax.plot(treat_all["threshold"], treat_all["net_benefit"], color="grey", label="treat all")
    ax.axhline(0, color="black", linewidth=1, label="treat none")
    for name, curve in rows[rows["model"] != "treat all"].groupby("model", sort=False):
        ax.plot(curve["threshold"], curve["net_benefit"], color=colours[name], label=name)
    best = float(treat_all["net_benefit"].max()) if len(treat_all) else 0.01
    ax.set_ylim(-0.01, max(0.01, best * 1.4))
    ax.set_xlabel(f"treatment threshold ({horizon:g}-year risk)")
    ax.set_ylabel("net benefit")
    ax.set_title(f"Decision curves at {horizon:g} years")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def km_by_quartile(evaluation: Evaluation):
    """Kaplan-Meier fracture-free survival by quartile of predicted risk, a panel per model."""
    plt = _pyplot()
    names = list(dict.fromkeys(evaluation.km_quartiles["model"]))
    columns = min(3, max(1, len(names)))
    rows = int(np.ceil(len(names) / columns)) or 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.0 * columns, 3.2 * rows), squeeze=False, sharey=True
    )
    shades = plt.get_cmap("viridis")(np.linspace(0.1, 0.85, 4))
    lowest = 1.0
    for ax, name in zip(axes.flat, names, strict=False):
        data = evaluation.km_quartiles[evaluation.km_quartiles["model"] == name]
        for q, curve in data.groupby("quartile"):
            ax.step(
                curve["time"],
                curve["survival"],
                where="post",
                color=shades[int(q) - 1],
                label=f"Q{int(q)}",
            )
            lowest = min(lowest, float(curve["survival"].min()))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("years")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fracture-free (KM)")
    axes.flat[0].set_ylim(max(0.0, lowest - 0.03), 1.005)
    axes.flat[0].legend(fontsize=7, title="risk quartile", title_fontsize=7)
    return fig


def example_curves(evaluation: Evaluation):
    """Per-patient survival curves (one colour per patient, one line style per model)."""
    plt = _pyplot()
    palette = plt.get_cmap("tab10").colors
    styles = ["-", "--", ":", "-."]
    curves = evaluation.curves
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    patients = list(dict.fromkeys(curves["patient"]))
    lowest = 1.0
    for m, (name, rows) in enumerate(curves.groupby("model", sort=False)):
        for p, patient in enumerate(patients):
            curve = rows[rows["patient"] == patient]
            ax.step(
                curve["time"],
                curve["survival"],
                where="post",
                linestyle=styles[m % len(styles)],
                color=palette[p % 10],
                linewidth=1.3,
                label=name if p == 0 else None,
            )
            lowest = min(lowest, float(curve["survival"].min()))
    truth = evaluation.truth_points
    if len(truth) and len(curves):
        truth = truth[truth["time"] <= float(curves["time"].max()) + 1e-9]
    for p, patient in enumerate(patients):
        points = truth[truth["patient"] == patient] if len(truth) else truth
        if len(points):
            ax.plot(
                points["time"],
                points["survival"],
                "o",
                color=palette[p % 10],
                label="truth (death competing)" if p == 0 else None,
            )
            lowest = min(lowest, float(points["survival"].min()))
    ax.set_xlabel("years since baseline")
    ax.set_ylabel("probability of no fracture")
    ax.set_title("Example patients at the 5th-95th centile of reference risk")
    ax.set_ylim(max(0.0, lowest - 0.05), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return fig
