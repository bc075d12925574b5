"""fracrisk.evaluation.report: a self-contained HTML report, checked in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from fracrisk.evaluation import (
    Evaluation,
    ModelCard,
    read_evaluations,
    render_html,
    write_report,
)
from fracrisk.evaluation.figures import png_bytes
from tests.browser import find_chromium, load_page


def _images(html: str) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', html)


def test_html_is_self_contained(evaluation):
    html = render_html(evaluation, title="unit test")
    sources = _images(html)
    # forest, td-AUC, a calibration plot and a decision curve per horizon, KM, examples
    assert len(sources) == 2 + 2 * len(evaluation.horizons) + 2
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from the network
    assert "<script" not in html


def test_html_holds_tables_card_and_risk_types(evaluation):
    card = ModelCard(data="simulated kong2022-like cohort", split="temporal by entry date")
    html = render_html(evaluation, card=card)
    for name in evaluation.models["model"]:
        assert name in html
    assert "simulated kong2022-like cohort" in html and "temporal by entry date" in html
    assert "absolute risk (death competing)" in html
    assert "cause-specific risk (death censored)" in html
    assert "stratified 60/40" in html  # the evaluation's context reaches the card
    assert "Not computed" in html and "horizon 30 years" in html


def test_model_names_are_escaped(evaluation):
    data = evaluation.to_dict()
    old = data["models"][0]["model"]
    for rows in data.values():
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("model") == old:
                row["model"] = "<b>bold</b>"
    html = render_html(Evaluation.from_dict(data))
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_write_report_writes_three_files_that_read_back(evaluation, tmp_path):
    paths = write_report(evaluation, tmp_path / "run", title="round trip")
    assert {p.name for p in paths.values()} == {"report.html", "report.md", "evaluation.json"}
    again = Evaluation.read_json(paths["json"])
    assert render_html(again, title="round trip") == paths["html"].read_text()
    assert not list((tmp_path / "run").glob("*.tmp*"))  # no temporary files left


def test_report_loads_in_headless_chromium(evaluation, tmp_path):
    """Every image decodes, no console error appears, and a screenshot is saved."""
    if find_chromium() is None:
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium; see README")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow([[0, 1], [1, 0]])
    paths = write_report(
        evaluation,
        tmp_path,
        title="browser test",
        extra_figures=[("Grad-CAM stand-in", png_bytes(fig))],
    )
    page = load_page(paths["html"], tmp_path / "report.png")
    assert page.title == "browser test"
    assert len(page.images) == len(_images(paths["html"].read_text())) == 9
    broken = [img["alt"] for img in page.images if not img["complete"] or img["width"] <= 0]
    assert not broken, f"images that did not load: {broken}"
    assert page.console_errors == []
    assert page.screenshot.stat().st_size > 50_000  # a rendered page, not a blank one
    keep = os.environ.get("FRACRISK_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(page.screenshot, Path(keep) / "report.png")


def test_browser_check_catches_a_broken_image(tmp_path):
    """The check can fail: a page with a corrupt image and a script error is caught."""
    if find_chromium() is None:
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium; see README")
    page_file = tmp_path / "broken.html"
    page_file.write_text(
        '<html><head><title>t</title></head><body><img alt="bad" src="data:image/png;base64,AAAA">'
        "<script>console.error('boom')</script></body></html>"
    )
    page = load_page(page_file, tmp_path / "broken.png")
    assert page.images[0]["width"] == 0
    assert any("boom" in e for e in page.console_errors)


def test_several_studies_in_one_report(evaluation, tmp_path):
    studies = {"Spine (kong2022)": evaluation, "Hip CT (kim2024)": evaluation}
    paths = write_report(studies, tmp_path)
    html = paths["html"].read_text()
    assert html.count('<h1 class="study"') == 2
    assert len(_images(html)) == 2 * (2 + 2 * len(evaluation.horizons) + 2)
    assert len(set(re.findall(r'id="([^"]+)"', html))) == len(re.findall(r'id="([^"]+)"', html))
    again = read_evaluations(paths["json"])
    assert list(again) == list(studies)
    assert again["Hip CT (kim2024)"].summary_table().equals(evaluation.summary_table())
    assert "# Spine (kong2022)" in paths["markdown"].read_text()


def test_intervals_not_containing_the_estimate_still_plot(evaluation):
    """Percentile intervals on small samples can miss the estimate; the plot must not fail."""
    from fracrisk.evaluation.figures import discrimination_forest

    odd = Evaluation.from_dict(evaluation.to_dict())
    odd.discrimination.loc[0, "harrell_lower"] = odd.discrimination.loc[0, "harrell"] + 0.01
    odd.discrimination.loc[1, "uno_upper"] = float("nan")
    assert len(png_bytes(discrimination_forest(odd))) > 1000


def test_a_report_without_any_calibration_still_renders(evaluation, tmp_path):
    # a small test set where every calibration attempt failed: the frames are empty and
    # column-less, as evaluate() builds them from no rows
    import dataclasses

    import pandas as pd

    empty = pd.DataFrame()
    uncalibrated = dataclasses.replace(
        evaluation,
        calibration=empty,
        calibration_groups=empty,
        calibration_curves=empty,
        notes=[*evaluation.notes, "CoxPH: calibration at 2 years failed (unit test)"],
    )
    summary = uncalibrated.summary_table()
    assert (summary["O/E 2 y"] == "n/a").all() and len(summary) == len(evaluation.models)
    markdown = uncalibrated.to_markdown()
    assert "No calibration could be computed" in markdown and "unit test" in markdown
    write_report(uncalibrated, tmp_path / "report")
    assert "O/E" in (tmp_path / "report" / "report.html").read_text()
