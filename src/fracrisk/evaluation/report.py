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
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fracrisk._io import atomic_path
from fracrisk.evaluation import figures
from fracrisk.evaluation.evaluate import Evaluation, markdown_table, read_evaluation_file

__all__ = ["ModelCard", "read_evaluations", "render_html", "write_report"]

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
    left_out : pandas.DataFrame, optional
        Patients left out of the analysis after validation, one row each with at least
        ``patient_id`` and ``reason`` (e.g. an unusable image under ``on_error="skip"``);
        listed in full in the report.
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
    left_out: pd.DataFrame | None = None

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
        if self.left_out is not None and len(self.left_out):
            rows += [
                ("Left out", f"{len(self.left_out)} patients, listed under 'Patients left out'")
            ]
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


def _study(
    key: str,
    heading: str,
    evaluation: Evaluation,
    card: ModelCard | None,
    extra_figures: Sequence[tuple[str, bytes]],
) -> dict:
    """Everything the template shows of one evaluation: tables, figures, card, notes."""
    from markupsafe import Markup

    card = card or ModelCard(
        data="simulated (fracrisk's ground-truth simulator)"
        if evaluation.info.get("simulated")
        else "not stated"
    )
    horizons = evaluation.horizons

    def png(fig) -> str:
        return _data_uri(figures.png_bytes(fig))

    def has(table: pd.DataFrame, horizon: float) -> bool:
        return not table.empty and bool((table["horizon"] == horizon).any())

    figs = {
        "forest": png(figures.discrimination_forest(evaluation)),
        "auc": png(figures.auc_over_time(evaluation)) if not evaluation.auc.empty else None,
        "calibration": [
            (f"{h:g}", png(figures.calibration_plot(evaluation, h)))
            for h in horizons
            if has(evaluation.calibration_groups, h)
        ],
        "decision": [
            (f"{h:g}", png(figures.decision_curves(evaluation, h)))
            for h in horizons
            if has(evaluation.decision, h)
        ],
        "km": png(figures.km_by_quartile(evaluation))
        if not evaluation.km_quartiles.empty
        else None,
        "examples": png(figures.example_curves(evaluation))
        if not evaluation.curves.empty
        else None,
    }
    summary = evaluation.summary_table()
    if not evaluation.auc.empty:
        auc_wide = (
            evaluation.auc.pivot(index="model", columns="time", values="auc")
            .rename(columns=lambda x: f"AUC {x:g} y")
            .reset_index()
        )
        summary = summary.merge(auc_wide, on="model", how="left")
    tables = {
        "summary": summary,
        "comparisons": evaluation.comparison_table(),
        "reclassification": evaluation.reclassification,
        "calibration": evaluation.calibration_table(),
        "subgroups": evaluation.subgroup_table(),
        "models": evaluation.models,
    }
    return {
        "key": key,
        "heading": heading,
        "info": {**evaluation.info, "horizons": [f"{h:g}" for h in horizons]},
        "tables": {name: Markup(_html_table(table)) for name, table in tables.items()},
        "figures": figs,
        "extra": [(caption, _data_uri(data)) for caption, data in extra_figures],
        "card": card.items(evaluation),
        "left_out": Markup(_html_table(card.left_out)) if card.left_out is not None else "",
        "notes": evaluation.notes,
    }


def render_html(
    evaluation: Evaluation | Mapping[str, Evaluation],
    *,
    title: str = "fracrisk report",
    subtitle: str = "",
    card: ModelCard | Mapping[str, ModelCard] | None = None,
    extra_figures: Sequence[tuple[str, bytes]] | Mapping[str, Sequence] = (),
) -> str:
    """The report as one HTML string (see the module docstring for its contents).

    Parameters
    ----------
    evaluation : Evaluation, or mapping of heading to Evaluation
        One evaluation, or several studies (for example one per cohort), each with its
        own heading and sections.
    title, subtitle : str
    card : ModelCard or mapping of heading to ModelCard, optional
        Default: a card with the evaluation's own facts and generic use and limitations.
    extra_figures : sequence of (caption, PNG bytes), or a mapping of heading to one
        Further figures, for example Grad-CAM overlays of an image model.
    """
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fracrisk.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    if isinstance(evaluation, Evaluation):
        studies = {"": evaluation}
        cards = {"": card}
        extras = {"": extra_figures}
    else:
        studies = dict(evaluation)
        if not studies:
            raise ValueError("no evaluation to report")
        cards = dict(card) if isinstance(card, Mapping) else dict.fromkeys(studies, card)
        extras = dict(extra_figures) if isinstance(extra_figures, Mapping) else {}
    rendered = [
        _study(f"s{k}", heading, study, cards.get(heading), extras.get(heading, ()))
        for k, (heading, study) in enumerate(studies.items())
    ]
    return environment.get_template(_TEMPLATE).render(
        title=title, subtitle=subtitle, studies=rendered
    )


def write_report(
    evaluation: Evaluation | Mapping[str, Evaluation],
    out_dir: str | Path,
    *,
    title: str = "fracrisk report",
    subtitle: str = "",
    card: ModelCard | Mapping[str, ModelCard] | None = None,
    extra_figures: Sequence[tuple[str, bytes]] | Mapping[str, Sequence] = (),
    names: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``evaluation.json`` into ``out_dir``.

    Each file is written atomically (a temporary file, fsync, rename). ``names`` may
    rename them (keys ``"html"``, ``"markdown"``, ``"json"``). With several studies the
    JSON maps each heading to its evaluation and the markdown has a section per study.
    Returns the paths.
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
    if isinstance(evaluation, Evaluation):
        markdown = evaluation.to_markdown()
        if isinstance(card, ModelCard) and card.left_out is not None and len(card.left_out):
            markdown += _left_out_markdown(card.left_out)
        data = evaluation.to_dict()
    else:
        markdown = "\n\n".join(
            ev.to_markdown().replace("# fracrisk evaluation", f"# {heading}", 1)
            for heading, ev in evaluation.items()
        )
        data = {"studies": {heading: ev.to_dict() for heading, ev in evaluation.items()}}
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return paths


def _left_out_markdown(table: pd.DataFrame) -> str:
    return f"\n\n## Patients left out ({len(table)})\n\n{markdown_table(table)}\n"


def read_evaluations(path: str | Path) -> Evaluation | dict[str, Evaluation]:
    """Read the ``evaluation.json`` of :func:`write_report`: one evaluation or studies."""

    def build(data):
        if isinstance(data, dict) and "studies" in data:
            return {k: Evaluation.from_dict(v) for k, v in data["studies"].items()}
        return Evaluation.from_dict(data)

    return read_evaluation_file(path, build)
