"""Reports of an :class:`~fracrisk.evaluation.Evaluation`: one self-contained HTML file.

The HTML report is rendered with Jinja2 (``templates/report.html.j2``). Every plot is a PNG
embedded as a ``data:`` URI and the styles are inline, so the file opens offline, can be
mailed, and loads nothing from the network. It holds the C-index and td-AUC tables with
intervals, td-AUC over time, calibration plots at each horizon with observed-risk
intervals, decision curves, Kaplan-Meier curves by risk quartile, example per-patient
curves, optional image explanations (Grad-CAM) and a model card in the spirit of
TRIPOD-AI (Collins et al., BMJ 2024;385:e078378).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fracrisk._io import atomic_path
from fracrisk.evaluation import figures
from fracrisk.evaluation.evaluate import Evaluation

__all__ = ["ModelCard", "render_html", "write_report"]

_TEMPLATE = "report.html.j2"


@dataclass
class ModelCard:
    """What a reader of the report needs to judge the models (TRIPOD-AI items, abridged).

    Attributes
    ----------
    data : str
        Source of the cohort: who, where, when; "simulated" for the embedded simulator.
    split : str
        How the test patients were set apart (temporal, random, external).
    intended_use : str
        The population and decision the models are meant for.
    limitations : str
        What the models are not validated for.
    extra : dict
        Any further item (training settings, seeds, hardware), printed as given.
    """

    data: str = "not stated"
    split: str = "not stated"
    intended_use: str = (
        "Research: estimating the risk of a first major osteoporotic fracture over the "
        "stated horizons in adults like the development cohort."
    )
    limitations: str = (
        "Not a medical device and not validated for individual treatment decisions. "
        "Performance outside the development population, scanners and coding practices "
        "is unknown until validated externally."
    )
    extra: dict = field(default_factory=dict)

    def items(self, evaluation: Evaluation) -> list[tuple[str, str]]:
        """The card as (label, text) rows, with the evaluation's own facts added."""
        info = evaluation.info
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        context = {str(k): str(v) for k, v in {**info.get("context", {}), **self.extra}.items()}
        data = context.pop("data", self.data) if self.data == "not stated" else self.data
        split = context.pop("split", self.split) if self.split == "not stated" else self.split
        rows = [
            ("Data", data),
            ("Split", split),
            (
                "Test set",
                f"{info['n']} patients, {info['fractures']} fractures, {info['deaths']} "
                f"deaths, median follow-up {info['median_follow_up']:.2f} years",
            ),
            ("Horizons", ", ".join(f"{h:g} years" for h in evaluation.horizons)),
            ("Bootstrap", f"{info['n_boot']} resamples, seed {info['seed']}"),
            ("Intended use", self.intended_use),
            ("Limitations", self.limitations),
            (
                "Risk types",
                "; ".join(f"{m}: {r}" for m, r in evaluation.models[["model", "risk"]].values),
            ),
        ]
        rows += [(k[:1].upper() + k[1:], v) for k, v in context.items()]
        rows += [("Software", f"Python {info.get('python', '?')}; {versions}")]
        rows += [("Machine", str(info.get("machine", "?")))]
        return rows


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _html_table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return ""
    return df.to_html(
        index=False, border=0, na_rep="n/a", escape=True, float_format="{:.3f}".format
    )


def render_html(
    evaluation: Evaluation,
    *,
    title: str = "fracrisk report",
    subtitle: str = "",
    card: ModelCard | None = None,
    extra_figures: Sequence[tuple[str, bytes]] = (),
) -> str:
    """The report as one HTML string (see the module docstring for its contents).

    Parameters
    ----------
    evaluation : Evaluation
    title, subtitle : str
    card : ModelCard, optional
        Default: a card with the evaluation's own facts and generic use and limitations.
    extra_figures : sequence of (caption, PNG bytes)
        Further figures, for example Grad-CAM overlays of an image model.
    """
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fracrisk.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    card = card or ModelCard(
        data="simulated (fracrisk's ground-truth simulator)"
        if evaluation.info.get("simulated")
        else "not stated"
    )
    horizons = evaluation.horizons
    figs = {
        "forest": _data_uri(figures.png_bytes(figures.discrimination_forest(evaluation))),
        "auc": _data_uri(figures.png_bytes(figures.auc_over_time(evaluation)))
        if not evaluation.auc.empty
        else None,
        "calibration": [
            (f"{h:g}", _data_uri(figures.png_bytes(figures.calibration_plot(evaluation, h))))
            for h in horizons
            if not evaluation.calibration_groups.empty
            and (evaluation.calibration_groups["horizon"] == h).any()
        ],
        "decision": [
            (f"{h:g}", _data_uri(figures.png_bytes(figures.decision_curves(evaluation, h))))
            for h in horizons
            if not evaluation.decision.empty and (evaluation.decision["horizon"] == h).any()
        ],
        "km": _data_uri(figures.png_bytes(figures.km_by_quartile(evaluation)))
        if not evaluation.km_quartiles.empty
        else None,
        "examples": _data_uri(figures.png_bytes(figures.example_curves(evaluation)))
        if not evaluation.curves.empty
        else None,
    }
    auc_wide = (
        evaluation.auc.pivot(index="model", columns="time", values="auc")
        .rename(columns=lambda x: f"AUC {x:g} y")
        .reset_index()
        if not evaluation.auc.empty
        else pd.DataFrame()
    )
    summary = evaluation.summary_table()
    if not auc_wide.empty:
        summary = summary.merge(auc_wide, on="model", how="left")
    tables = {
        "summary": Markup(_html_table(summary)),
        "comparisons": Markup(_html_table(evaluation.comparison_table())),
        "reclassification": Markup(_html_table(evaluation.reclassification)),
        "calibration": Markup(_html_table(evaluation.calibration_table())),
        "subgroups": Markup(_html_table(evaluation.subgroup_table())),
        "models": Markup(_html_table(evaluation.models)),
    }
    template = environment.get_template(_TEMPLATE)
    return template.render(
        title=title,
        subtitle=subtitle,
        info={**evaluation.info, "horizons": [f"{h:g}" for h in horizons]},
        tables=tables,
        figures=figs,
        extra=[(caption, _data_uri(png)) for caption, png in extra_figures],
        card=card.items(evaluation),
        notes=evaluation.notes,
    )


def write_report(
    evaluation: Evaluation,
    out_dir: str | Path,
    *,
    title: str = "fracrisk report",
    subtitle: str = "",
    card: ModelCard | None = None,
    extra_figures: Sequence[tuple[str, bytes]] = (),
    names: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``evaluation.json`` into ``out_dir``.

    Each file is written atomically (a temporary file, fsync, rename). ``names`` may
    rename them (keys ``"html"``, ``"markdown"``, ``"json"``). Returns the paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {"html": "report.html", "markdown": "report.md", "json": "evaluation.json"} | dict(
        names or {}
    )
    html = render_html(
        evaluation, title=title, subtitle=subtitle, card=card, extra_figures=extra_figures
    )
    paths = {key: out / name for key, name in names.items()}
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(html, encoding="utf-8")
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(evaluation.to_markdown(), encoding="utf-8")
    evaluation.save_json(paths["json"])
    return paths
