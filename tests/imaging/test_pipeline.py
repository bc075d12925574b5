"""The dictionary-transform pipeline: each step, the cached head, the random tail."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import fracrisk.imaging.io as io
from fracrisk.imaging.drr import render_drr
from fracrisk.imaging.patches import vertebral_patches
from fracrisk.imaging.pipeline import (
    CutVertebralPatchesd,
    LoadRadiographd,
    NormaliseRadiographd,
    PersistentPipeline,
    RenderDRRd,
    ResizeVolumed,
    StepError,
    drr_pipeline,
    patch_pipeline,
    volume_pipeline,
)
from fracrisk.imaging.store import TensorStore
from fracrisk.imaging.transforms import Compose, EnsureFloat32, RandRotate
from fracrisk.simulate import cohort

SIZE = (32, 32)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Two simulated patients with a hip CT and a lateral spine radiograph each."""
    return cohort(2, seed=4, images=("hip_ct", "spine"), out_dir=tmp_path_factory.mktemp("img"))


def _item(path, **extra) -> dict:
    return {"path": path, "source": str(path), "keypoints": None, "counts": {}, **extra}


def _keypoints(sim, row: int) -> np.ndarray:
    import json

    return np.asarray(json.loads(sim.df["spine_keypoints"].iloc[row]), float).reshape(5, 4, 2)


def test_the_drr_steps_give_what_load_ct_and_render_drr_give(sim):
    path = sim.df["hip_ct_path"].iloc[0]
    item = _item(path)
    for step in drr_pipeline(ct_spacing=1.0, views=("frontal", "lateral"), size=SIZE):
        item = step(item)
    ct = io.load_ct(path, spacing=1.0)
    expected = render_drr(ct.volume_hu, ct.spacing, views=("frontal", "lateral"), size=SIZE)
    assert torch.equal(item["image"], expected.to(torch.float32))
    assert "ct" not in item  # the volume is not carried past the renderer
    assert item["counts"] == {"loaded": 1, "rendered": 1}


def test_each_view_is_cached_apart_so_a_subset_of_views_reads_no_ct(sim, tmp_path, monkeypatch):
    path = sim.df["hip_ct_path"].iloc[0]
    views = TensorStore(tmp_path / "views")
    three = ("frontal", "lateral", "axial")
    steps = drr_pipeline(ct_spacing=1.0, views=three, size=SIZE, view_store=views)
    drr = TensorStore(tmp_path / "drr")
    first = PersistentPipeline(steps, drr, "views").prepare(0, _item(path))
    assert first.error is None and first.counts == {"loaded": 1, "rendered": 1}
    full = drr.get(Path(first.file).stem, "views")

    def no_reading(*args, **kwargs):
        raise AssertionError("every view is cached: the CT must not be read")

    monkeypatch.setattr(io, "load_ct", no_reading)
    for channels in (("lateral",), ("axial", "frontal")):
        steps = drr_pipeline(ct_spacing=1.0, views=channels, size=SIZE, view_store=views)
        store = TensorStore(tmp_path / f"drr-{len(channels)}")
        result = PersistentPipeline(steps, store, "views").prepare(0, _item(path))
        assert result.error is None and result.counts == {}  # nothing read, nothing rendered
        image = store.get(Path(result.file).stem, "views")
        expected = full[[three.index(v) for v in channels]]
        assert torch.equal(image, expected)  # the same pixels as the three-view render
    # Another option (here the CT spacing) is another view: it is rendered, so read.
    steps = drr_pipeline(ct_spacing=2.0, views=("lateral",), size=SIZE, view_store=views)
    with pytest.raises(AssertionError, match="must not be read"):
        steps[0](_item(path))


def test_the_patch_steps_cut_the_normalised_radiograph_at_the_tables_corners(sim):
    path = sim.df["spine_xray_path"].iloc[0]
    corners = _keypoints(sim, 0)
    item = _item(path, keypoints=corners)
    for step in patch_pipeline(size=SIZE, margin=0.1):
        item = step(item)
    image = io.load_radiograph(path).image.astype(np.float64)
    z = ((image - image.mean()) / image.std()).astype(np.float32)
    expected = vertebral_patches(z, corners, size=SIZE, margin=0.1)[:, 0].to(torch.float32)
    assert torch.equal(item["image"], expected)
    assert item["counts"] == {"loaded": 1, "cut": 1}  # the detector never ran
    assert item["keypoints_from"] == "table"


def test_a_warm_store_is_found_by_the_key_without_reading_the_image(sim, tmp_path, monkeypatch):
    path = sim.df["hip_ct_path"].iloc[1]
    steps = drr_pipeline(ct_spacing=1.0, views=("axial",), size=SIZE)
    first = PersistentPipeline(steps, TensorStore(tmp_path), "views").prepare(0, _item(path))
    assert first.error is None and first.counts == {"loaded": 1, "rendered": 1}

    def no_reading(*args, **kwargs):
        raise AssertionError("a warm store must not read the CT")

    monkeypatch.setattr(io, "load_ct", no_reading)
    again = PersistentPipeline(steps, TensorStore(tmp_path), "views").prepare(0, _item(path))
    assert again.counts == {"from_cache": 1} and again.file == first.file
    # Any option of any step is part of the key.
    other = drr_pipeline(ct_spacing=2.0, views=("axial",), size=SIZE)
    with pytest.raises(AssertionError, match="must not read"):
        PersistentPipeline(other, TensorStore(tmp_path), "views").prepare(0, _item(path))


def test_the_cache_stops_at_the_first_random_transform(sim, tmp_path):
    path = sim.df["hip_ct_path"].iloc[0]
    rotate, ensure = RandRotate(max_degrees=10.0), EnsureFloat32()
    steps = [*drr_pipeline(ct_spacing=1.0, views=("frontal",), size=SIZE), rotate, ensure]
    pipeline = PersistentPipeline(steps, TensorStore(tmp_path), "views")
    assert [type(s) for s in pipeline.head] == [RenderDRRd]
    assert pipeline.tail == [rotate, ensure]
    prepared = pipeline.prepare(0, _item(path))
    cached = TensorStore(tmp_path).get(
        pipeline.key(_item(path, identity=_identity_of(path))), "views"
    )
    assert prepared.file is not None and cached is not None
    a = pipeline.augment(cached, torch.Generator().manual_seed(3))
    b = pipeline.augment(cached, torch.Generator().manual_seed(3))
    c = pipeline.augment(cached, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)  # the tail is redrawn, never stored


def _identity_of(path) -> str:
    from pathlib import Path

    from fracrisk.imaging.store import file_identity

    return file_identity(Path(path), str(path))


def test_a_compose_tail_is_the_random_part_too(sim, tmp_path):
    tail = Compose([RandRotate(max_degrees=5.0), EnsureFloat32()])
    pipeline = PersistentPipeline([LoadRadiographd(), tail], TensorStore(None), "x")
    assert pipeline.tail == [tail] and len(pipeline.head) == 1


def test_a_bad_file_is_a_step_error_naming_the_image_and_it_pickles(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a volume")
    steps = drr_pipeline(ct_spacing=1.0, views=("frontal",), size=SIZE)
    result = PersistentPipeline(steps, TensorStore(None), "views").prepare(7, _item(bad))
    assert result.position == 7 and result.error.key == "path"
    assert "NIfTI" in result.error.reason
    back = pickle.loads(pickle.dumps(result.error))  # crosses worker processes intact
    assert (back.key, back.reason) == (result.error.key, result.error.reason)


def test_corners_outside_the_radiograph_are_a_keypoint_error(sim):
    item = _item(sim.df["spine_xray_path"].iloc[0], keypoints=np.full((5, 4, 2), 1e6))
    item = NormaliseRadiographd()(LoadRadiographd()(item))
    with pytest.raises(StepError) as caught:
        CutVertebralPatchesd(SIZE)(item)
    assert caught.value.key == "keypoints"


def test_a_constant_radiograph_cannot_be_normalised():
    item = {"radiograph": np.ones((8, 8), np.float32)}
    with pytest.raises(StepError, match="constant"):
        NormaliseRadiographd("zscore")(item)
    assert NormaliseRadiographd(None)(dict(item))["radiograph"] is item["radiograph"]
    with pytest.raises(ValueError, match="radiograph_normalisation"):
        NormaliseRadiographd("minmax")


def test_resize_volume_averages_blocks_when_shrinking_and_keeps_hu_per_1000():
    hu = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4) * 10.0
    ct = io.CTVolume(hu, (1.0, 1.0, 1.0), "ct.nii.gz", None)
    image = ResizeVolumed((2, 2, 2))({"ct": ct})["image"]
    assert image.shape == (1, 2, 2, 2) and image.dtype == torch.float32
    blocks = hu.reshape(2, 2, 2, 2, 2, 2).mean(axis=(1, 3, 5)) / 1000.0
    np.testing.assert_allclose(image[0].numpy(), blocks, rtol=1e-6)


def test_resize_volume_windows_and_clips_and_grows_trilinearly():
    hu = np.array([-1000.0, 0.0, 1000.0], dtype=np.float32).reshape(3, 1, 1) * np.ones((3, 2, 2))
    ct = io.CTVolume(hu.astype(np.float32), (1.0, 1.0, 1.0), "ct.nii.gz", None)
    step = ResizeVolumed((3, 4, 4), window=(-500.0, 500.0))
    image = step({"ct": ct})["image"][0]
    np.testing.assert_allclose(image[:, 0, 0].numpy(), [0.0, 0.5, 1.0])  # clipped, linear
    assert step.key_options() == {"volume_size": [3, 4, 4], "hu_window": (-500.0, 500.0)}
    steps = volume_pipeline(ct_spacing=1.0, size=(3, 4, 4))
    assert [type(s).__name__ for s in steps] == ["LoadCTd", "ResizeVolumed"]
