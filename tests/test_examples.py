"""The examples run as documented."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs(capsys):
    namespace = runpy.run_path(str(EXAMPLES / "quickstart.py"))
    namespace["main"](n=1500)
    out = capsys.readouterr().out
    assert "CoxPH: held-out Harrell C" in out
    assert "DeepSurv: held-out Harrell C" in out


def test_simulated_images_montage_is_saved(tmp_path):
    namespace = runpy.run_path(str(EXAMPLES / "simulated_images.py"))
    path = namespace["make_montage"](str(tmp_path / "montage.png"))
    assert (tmp_path / "montage.png").stat().st_size > 50_000
    assert path.endswith("montage.png")


def test_spine_keypoints_figure_is_saved(tmp_path):
    namespace = runpy.run_path(str(EXAMPLES / "spine_keypoints.py"))
    namespace["make_figure"](str(tmp_path / "keypoints.png"))
    assert (tmp_path / "keypoints.png").stat().st_size > 30_000


def test_drr_geometry_figure_is_saved(tmp_path):
    namespace = runpy.run_path(str(EXAMPLES / "drr_geometry.py"))
    namespace["make_figure"](str(tmp_path / "drr.png"))
    assert (tmp_path / "drr.png").stat().st_size > 50_000


def test_image_model_example_runs(tmp_path, capsys):
    namespace = runpy.run_path(str(EXAMPLES / "image_model.py"))
    path = namespace["main"](n=200, epochs=1, out=str(tmp_path / "cam.png"))
    out = capsys.readouterr().out
    assert "held-out Harrell C" in out
    assert (tmp_path / "cam.png").stat().st_size > 30_000
    assert (tmp_path / "cam_curves.png").stat().st_size > 10_000 and path.endswith("cam.png")
