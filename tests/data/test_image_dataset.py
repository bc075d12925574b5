"""ImageCohortDataset on a small simulated cohort: items, caching, keypoints, workers, errors."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

import fracrisk.imaging.cache
import fracrisk.imaging.io
import fracrisk.imaging.keypoints
from fracrisk.data import ImageCohortDataset
from fracrisk.exceptions import DataWarning, NotFittedError
from fracrisk.imaging import (
    ConeBeam,
    ImageReadError,
    default_train_transform,
    load_ct,
    load_radiograph,
    render_drr,
    vertebral_patches,
)
from fracrisk.preprocessing import TabularPreprocessor
from fracrisk.simulate import cohort

N = 8
COVARIATES = ["age", "bmi", "sex", "femoral_neck_t_score"]
DRR_OPTIONS = {"size": (48, 48)}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """8 simulated patients with a hip CT and a lateral spine radiograph each."""
    out = tmp_path_factory.mktemp("images")
    simulated = cohort(N, seed=1, images=("hip_ct", "spine"), out_dir=out)
    codes = set(simulated.event.tolist())
    assert {0, 1, 2} <= codes  # censored, fracture and death all present
    return simulated


def _forbid(monkeypatch, *names):
    """Make these functions raise, to prove they are not called."""

    def fail(*args, **kwargs):
        raise AssertionError("must not be called")

    for name in names:
        monkeypatch.setattr(name, fail)


def _items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def _assert_same_items(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            assert u.dtype == v.dtype
            assert torch.equal(u, v)


def _zscore(image):
    values = image.astype(np.float64)
    return ((values - values.mean()) / values.std()).astype(np.float32)


# --------------------------------------------------------------------------- items


def test_drr_items_are_the_rendered_views_with_the_cohorts_outcome(sim):
    data = ImageCohortDataset(sim, "drr", covariates=COVARIATES, **DRR_OPTIONS)
    assert len(data) == N
    assert data.image_shape == (3, 48, 48)
    expected_x = TabularPreprocessor(COVARIATES).fit_transform(sim.df).astype(np.float32)
    for i, (image, x, time, event) in enumerate(_items(data)):
        assert image.dtype == torch.float32 and image.shape == (3, 48, 48)
        ct = load_ct(sim.df["hip_ct_path"].iloc[i])
        assert torch.equal(image, render_drr(ct.volume_hu, ct.spacing, size=(48, 48)))
        assert x.dtype == torch.float32 and x.shape == (len(COVARIATES),)
        assert torch.equal(x, torch.from_numpy(expected_x[i]))
        assert time.dtype == torch.float64 and time.shape == ()
        assert float(time) == sim.time[i]
        assert event.dtype == torch.int64
        assert int(event) == int(sim.event[i] == 1)  # fracture 1; censored and death 0
    assert data.event_code.tolist() == sim.event.tolist()
    assert list(data.patient_ids) == list(sim.df["patient_id"])


def test_patches_use_the_manifest_keypoints_and_never_the_detector(sim, monkeypatch):
    _forbid(
        monkeypatch,
        "fracrisk.imaging.keypoints.detect_keypoints",
        "fracrisk.imaging.keypoints.load_keypoint_detector",
    )
    data = ImageCohortDataset(sim, "patches", covariates=COVARIATES)
    assert data.keypoint_columns == ("spine_keypoints",)
    assert data.cache_info["detected"] == 0
    for i, (image, _, time, _) in enumerate(_items(data)):
        assert image.dtype == torch.float32 and image.shape == (5, 64, 64)
        radiograph = load_radiograph(sim.df["spine_xray_path"].iloc[i]).image
        keypoints = np.asarray(json.loads(sim.df["spine_keypoints"].iloc[i]))
        expected = vertebral_patches(_zscore(radiograph), keypoints)[:, 0]
        assert torch.equal(image, expected)
        assert float(time) == sim.time[i]


def test_the_detector_runs_once_per_radiograph_then_comes_from_the_cache(
    sim, tmp_path, monkeypatch
):
    calls = []
    detect = fracrisk.imaging.keypoints.detect_keypoints

    def counting(model, image, **kwargs):
        calls.append(image.shape)
        return detect(model, image, **kwargs)

    monkeypatch.setattr("fracrisk.imaging.keypoints.detect_keypoints", counting)
    kwargs = {"keypoint_columns": (), "cache_dir": tmp_path, "covariates": []}
    first = ImageCohortDataset(sim, "patches", **kwargs)
    assert len(calls) == N and first.cache_info["detected"] == N
    items = _items(first)
    # A new dataset with another patch size reuses the detected keypoints.
    other = ImageCohortDataset(sim, "patches", size=(32, 32), **kwargs)
    assert len(calls) == N and other.cache_info["detected"] == 0
    assert other.cache_info["cut"] == N
    _forbid(monkeypatch, "fracrisk.imaging.keypoints.detect_keypoints")
    again = ImageCohortDataset(sim, "patches", **kwargs)
    assert again.cache_info["from_cache"] == N
    _assert_same_items(items, _items(again))


def test_keypoints_are_those_the_patches_were_cut_at(sim, tmp_path, monkeypatch):
    table = ImageCohortDataset(sim, "patches", covariates=[])
    for i in range(N):
        given = np.asarray(json.loads(sim.df["spine_keypoints"].iloc[i])).reshape(5, 4, 2)
        np.testing.assert_array_equal(table.keypoints(i), given)
    assert table.cache_file(0) is None  # in memory
    kwargs = {"keypoint_columns": (), "cache_dir": tmp_path, "covariates": []}
    detected = ImageCohortDataset(sim, "patches", **kwargs)
    _forbid(monkeypatch, "fracrisk.imaging.keypoints.detect_keypoints")  # from the cache
    found = np.stack([detected.keypoints(i) for i in range(N)])
    truth = np.stack([table.keypoints(i) for i in range(N)])
    assert found.shape == (N, 5, 4, 2) and np.abs(found - truth).max() < 3.0  # pixels
    assert Path(detected.cache_file(0)).is_file()
    with pytest.raises(IndexError):
        detected.keypoints(N)
    with pytest.raises(ValueError, match="kind='patches' only"):
        ImageCohortDataset(sim, "drr", covariates=[], **DRR_OPTIONS).keypoints(0)


def test_a_missing_manifest_value_falls_back_to_the_detector_for_that_row(sim, monkeypatch):
    df = sim.df.copy()
    df.loc[df.index[2], "spine_keypoints"] = None
    calls = []
    detect = fracrisk.imaging.keypoints.detect_keypoints

    def counting(model, image, **kwargs):
        calls.append(1)
        return detect(model, image, **kwargs)

    monkeypatch.setattr("fracrisk.imaging.keypoints.detect_keypoints", counting)
    data = ImageCohortDataset(df, "patches", covariates=[])
    assert len(calls) == 1 and data.cache_info["detected"] == 1
    assert data[2][0].shape == (5, 64, 64)
    assert data[2][1].shape == (0,)


# --------------------------------------------------------------------------- caching


def test_a_warm_cache_gives_identical_tensors_without_reading_or_rendering(
    sim, tmp_path, monkeypatch
):
    first = ImageCohortDataset(sim, "drr", cache_dir=tmp_path, covariates=COVARIATES, **DRR_OPTIONS)
    assert first.cache_info["rendered"] == N and first.cache_info["loaded"] == N
    items = _items(first)
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    # one file of three views per row, and each view on its own
    assert sum(p.suffix == ".safetensors" for p in (tmp_path / "drr").rglob("*")) == N
    assert sum(p.suffix == ".safetensors" for p in (tmp_path / "drr_views").rglob("*")) == 3 * N

    _forbid(monkeypatch, "fracrisk.imaging.cache.render_drr", "fracrisk.imaging.io.load_ct")
    second = ImageCohortDataset(
        sim, "drr", cache_dir=tmp_path, covariates=COVARIATES, **DRR_OPTIONS
    )
    assert second.cache_info["from_cache"] == N
    assert second.cache_info["rendered"] == 0 and second.cache_info["loaded"] == 0
    for _ in range(2):  # epochs read the cache only
        _assert_same_items(items, _items(second))
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == files


def test_changing_a_render_option_renders_again(sim, tmp_path):
    ImageCohortDataset(sim, "drr", cache_dir=tmp_path, covariates=[], size=(32, 32))
    other = ImageCohortDataset(
        sim, "drr", cache_dir=tmp_path, covariates=[], size=(32, 32), window=(0.0, 40.0)
    )
    assert other.cache_info["rendered"] == N and other.cache_info["loaded"] == N


def test_a_subset_of_cached_views_reads_no_ct(sim, tmp_path, monkeypatch):
    three = ImageCohortDataset(sim, "drr", cache_dir=tmp_path, covariates=[], size=(32, 32))
    _forbid(monkeypatch, "fracrisk.imaging.io.load_ct")
    lateral = ImageCohortDataset(
        sim, "drr", cache_dir=tmp_path, covariates=[], size=(32, 32), views=("lateral",)
    )
    assert lateral.cache_info["rendered"] == 0 and lateral.cache_info["loaded"] == 0
    assert lateral[0][0].shape == (1, 32, 32)
    for i in range(N):
        assert torch.equal(lateral[i][0][0], three[i][0][1])  # the three-view set's channel 1


def test_a_cone_beam_geometry_renders_cone_beam_views_and_keys_the_cache(sim, tmp_path):
    cone = ConeBeam(source_to_detector=400.0, source_to_isocentre=200.0)
    data = ImageCohortDataset(
        sim,
        "drr",
        cache_dir=tmp_path,
        covariates=[],
        size=(32, 32),
        render_options={"geometry": cone},
    )
    ct = load_ct(sim.df["hip_ct_path"].iloc[0])
    expected = render_drr(ct.volume_hu, ct.spacing, size=(32, 32), geometry=cone)
    assert torch.equal(data[0][0], expected)
    assert not torch.equal(expected, render_drr(ct.volume_hu, ct.spacing, size=(32, 32)))
    # The same geometry given as its dict is the same cache entry; parallel beam is not.
    again = ImageCohortDataset(
        sim,
        "drr",
        cache_dir=tmp_path,
        covariates=[],
        size=(32, 32),
        render_options={"geometry": cone.to_dict()},
    )
    assert again.cache_info["rendered"] == 0
    parallel = ImageCohortDataset(sim, "drr", cache_dir=tmp_path, covariates=[], size=(32, 32))
    assert parallel.cache_info["rendered"] == N


def test_the_default_geometry_and_its_name_share_the_cache(sim, tmp_path):
    ImageCohortDataset(sim, "drr", cache_dir=tmp_path, covariates=[], size=(32, 32))
    named = ImageCohortDataset(
        sim,
        "drr",
        cache_dir=tmp_path,
        covariates=[],
        size=(32, 32),
        render_options={"geometry": "parallel"},
    )
    assert named.cache_info["from_cache"] == N and named.cache_info["loaded"] == 0


def test_stat_identity_also_hits_the_cache(sim, tmp_path):
    kwargs = {"cache_dir": tmp_path, "covariates": [], "file_identity": "stat", "size": (32, 32)}
    first = ImageCohortDataset(sim, "drr", **kwargs)
    second = ImageCohortDataset(sim, "drr", **kwargs)
    assert first.cache_info["rendered"] == N and second.cache_info["from_cache"] == N


def test_a_deleted_cache_file_is_made_again_on_reading(sim, tmp_path):
    data = ImageCohortDataset(sim, "patches", cache_dir=tmp_path, covariates=[])
    expected = data[3][0]
    for path in (tmp_path / "patches").rglob("*.safetensors"):
        path.unlink()
    assert torch.equal(data[3][0], expected)


def test_parallel_preparation_matches_serial(sim):
    serial = ImageCohortDataset(sim, "drr", covariates=COVARIATES, **DRR_OPTIONS)
    parallel = ImageCohortDataset(
        sim, "drr", covariates=COVARIATES, prepare_workers=2, **DRR_OPTIONS
    )
    assert parallel.cache_info["rendered"] == N
    _assert_same_items(_items(serial), _items(parallel))


# --------------------------------------------------------------------------- workers


@pytest.mark.parametrize("kind", ["drr", "patches"])
def test_two_workers_yield_the_same_batches_as_the_main_process(sim, tmp_path, kind):
    options = DRR_OPTIONS if kind == "drr" else {}
    data = ImageCohortDataset(sim, kind, covariates=COVARIATES, cache_dir=tmp_path, **options)
    serial = list(DataLoader(data, batch_size=3, num_workers=0))
    workers = list(DataLoader(data, batch_size=3, num_workers=2))
    _assert_same_items(serial, workers)
    assert torch.equal(torch.cat([b[2] for b in serial]), torch.from_numpy(sim.time))


def test_seeded_augmentation_depends_on_item_and_epoch_not_on_workers(sim):
    augmented = ImageCohortDataset(
        sim,
        "patches",
        covariates=COVARIATES,
        transform=default_train_transform("patches"),
        seed=0,
    )
    plain = ImageCohortDataset(sim, "patches", covariates=COVARIATES)
    serial = list(DataLoader(augmented, batch_size=4, num_workers=0))
    _assert_same_items(serial, list(DataLoader(augmented, batch_size=4, num_workers=2)))
    assert not torch.equal(serial[0][0], next(iter(DataLoader(plain, batch_size=4)))[0])
    augmented.set_epoch(1)
    epoch1 = augmented[0][0]
    assert not torch.equal(epoch1, serial[0][0][0])
    augmented.set_epoch(0)
    assert torch.equal(augmented[0][0], serial[0][0][0])


def test_the_dataset_survives_pickling(sim, tmp_path):
    data = ImageCohortDataset(sim, "drr", covariates=COVARIATES, cache_dir=tmp_path, **DRR_OPTIONS)
    _assert_same_items(_items(data), _items(pickle.loads(pickle.dumps(data))))


# --------------------------------------------------------------------------- bad files


@pytest.fixture
def broken(sim, tmp_path):
    """The cohort with row 1's CT and radiograph corrupted and row 4's files missing."""
    df = sim.df.copy()
    bad_ct = tmp_path / "broken_hip_ct.nii.gz"
    bad_ct.write_bytes(b"this is not a NIfTI volume")
    bad_png = tmp_path / "broken_spine.png"
    png = open(df["spine_xray_path"].iloc[1], "rb").read()
    bad_png.write_bytes(png[: len(png) // 3])  # truncated
    df.loc[df.index[1], "hip_ct_path"] = str(bad_ct)
    df.loc[df.index[1], "spine_xray_path"] = str(bad_png)
    df.loc[df.index[4], "hip_ct_path"] = str(tmp_path / "missing.nii.gz")
    df.loc[df.index[4], "spine_xray_path"] = str(tmp_path / "missing.png")
    return df


@pytest.mark.parametrize(
    ("kind", "column"), [("drr", "hip_ct_path"), ("patches", "spine_xray_path")]
)
def test_a_bad_file_stops_the_dataset_naming_patient_and_file(broken, kind, column):
    with pytest.raises(ImageReadError, match=r"broken_.*patient_id 'P000001'.*on_error='skip'"):
        ImageCohortDataset(broken, kind, covariates=COVARIATES, **DRR_OPTIONS)


@pytest.mark.parametrize(
    ("kind", "column"), [("drr", "hip_ct_path"), ("patches", "spine_xray_path")]
)
def test_skipped_rows_are_reported_never_dropped_silently(broken, kind, column):
    with pytest.warns(DataWarning, match=r"2 of 8 rows left out.*'P000001'.*'P000004'"):
        data = ImageCohortDataset(
            broken, kind, covariates=COVARIATES, on_error="skip", **DRR_OPTIONS
        )
    assert len(data) == N - 2
    report = data.failure_report()
    assert report["patient_id"].tolist() == ["P000001", "P000004"]
    assert report["row"].tolist() == [1, 4]
    assert report["column"].tolist() == [column, column]
    assert report["path"].tolist() == broken[column].iloc[[1, 4]].tolist()
    assert "no such file" in report["reason"].iloc[1]
    kept = [0, 2, 3, 5, 6, 7]
    assert list(data.patient_ids) == broken["patient_id"].iloc[kept].tolist()
    times = torch.stack([data[i][2] for i in range(len(data))]).numpy()
    np.testing.assert_array_equal(times, broken["time"].to_numpy()[kept])


def test_malformed_manifest_keypoints_name_row_patient_and_column(sim):
    df = sim.df.copy()
    corners = json.loads(df["spine_keypoints"].iloc[5])
    df.loc[df.index[5], "spine_keypoints"] = json.dumps(corners[:4])  # L5 missing
    with pytest.raises(ValueError, match=r"'P000005' \(row 5\), column 'spine_keypoints'.*20"):
        ImageCohortDataset(df, "patches", covariates=[])
    with pytest.warns(DataWarning, match="P000005"):
        data = ImageCohortDataset(df, "patches", covariates=[], on_error="skip")
    assert len(data) == N - 1
    assert data.failures[0].column == "spine_keypoints"


def test_forty_keypoint_columns_are_accepted(sim, monkeypatch):
    _forbid(monkeypatch, "fracrisk.imaging.keypoints.detect_keypoints")
    corners = np.stack([np.asarray(json.loads(v)) for v in sim.df["spine_keypoints"]])
    names = [f"k{i}" for i in range(40)]
    df = pd.concat(
        [
            sim.df.drop(columns="spine_keypoints"),
            pd.DataFrame(corners.reshape(N, 40), columns=names),
        ],
        axis=1,
    )
    from_columns = ImageCohortDataset(df, "patches", covariates=[], keypoint_columns=names)
    from_json = ImageCohortDataset(sim, "patches", covariates=[])
    assert torch.equal(from_columns[6][0], from_json[6][0])


# --------------------------------------------------------------------------- arguments


def test_a_fitted_preprocessor_is_reused(sim):
    train = sim.df.iloc[:6]
    pre = TabularPreprocessor(COVARIATES).fit(train)
    data = ImageCohortDataset(sim, "patches", preprocessor=pre)
    assert data.preprocessor is pre
    expected = pre.transform(sim.df).astype(np.float32)
    assert torch.equal(data[7][1], torch.from_numpy(expected[7]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"kind": "ct"}, ValueError, "kind must be one of", id="kind"),
        pytest.param({"image_column": "xray"}, ValueError, "'xray' is not in the table", id="col"),
        pytest.param({"on_error": "ignore"}, ValueError, "on_error", id="on_error"),
        pytest.param({"size": (0, 8)}, ValueError, "size", id="size"),
        pytest.param({"window": (2.0, 1.0)}, ValueError, "window", id="window"),
        pytest.param({"views": ("coronal",)}, ValueError, "views", id="views"),
        pytest.param({"covariates": ["height"]}, ValueError, "height", id="covariate"),
        pytest.param(
            {"covariates": ["age", "glucocorticoids"]}, ValueError, "constant", id="constant"
        ),
        pytest.param(
            {"preprocessor": TabularPreprocessor(["age"])}, NotFittedError, "not fitted", id="pre"
        ),
        pytest.param({"kind": "patches", "margin": -0.1}, ValueError, "margin", id="margin"),
        pytest.param(
            {"kind": "patches", "keypoint_columns": ["a", "b"]}, ValueError, "40", id="kp"
        ),
        pytest.param({"seed": -1}, ValueError, "seed", id="seed"),
    ],
)
def test_bad_arguments_are_rejected_before_any_image_is_read(
    sim, monkeypatch, kwargs, error, match
):
    _forbid(monkeypatch, "fracrisk.imaging.io.load_ct", "fracrisk.imaging.io.load_radiograph")
    kwargs = {"kind": "drr", **kwargs}
    with pytest.raises(error, match=match):
        ImageCohortDataset(sim, **kwargs)


def test_image_paths_relative_to_a_root(sim, tmp_path):
    df = sim.df.iloc[:2].copy()
    for i in range(2):
        source = df["spine_xray_path"].iloc[i]
        shutil.copy(source, tmp_path / f"x{i}.png")
        df.loc[df.index[i], "spine_xray_path"] = f"x{i}.png"
    data = ImageCohortDataset(df, "patches", covariates=[], image_root=tmp_path)
    reference = ImageCohortDataset(sim.df.iloc[:2], "patches", covariates=[])
    assert torch.equal(data[1][0], reference[1][0])


def test_relative_paths_of_a_read_manifest_start_from_its_directory(sim, tmp_path, monkeypatch):
    from fracrisk.data import Cohort

    study = tmp_path / "study"
    study.mkdir()
    df = sim.df.iloc[:2].copy()
    for i in range(2):
        shutil.copy(df["spine_xray_path"].iloc[i], study / f"x{i}.png")
        df.loc[df.index[i], "spine_xray_path"] = f"x{i}.png"
    df.drop(columns=["hip_ct_path"]).to_csv(study / "plain.csv", index=False)  # no roles
    monkeypatch.chdir(tmp_path)
    cohort = Cohort.read(study / "plain.csv")
    assert cohort.df["spine_xray_path"].tolist() == ["x0.png", "x1.png"]  # not a declared role
    data = ImageCohortDataset(cohort, "patches", covariates=[], progress=False)
    assert data.image_root == study  # the cohort's image_root: the manifest's directory
    reference = ImageCohortDataset(sim.df.iloc[:2], "patches", covariates=[], progress=False)
    assert torch.equal(data[1][0], reference[1][0])


def test_every_cache_file_is_written_beside_its_place_then_renamed(sim, tmp_path, monkeypatch):
    """Parallel writers (prepare-images --shard jobs) never see or leave a partial file."""
    import os

    from safetensors.torch import load_file

    renames = []
    replace = os.replace

    def checked_replace(src, dst):
        src, dst = Path(src), Path(dst)
        assert src.parent == dst.parent and src.name.startswith(f".{dst.name}.")
        if dst.suffix == ".safetensors":
            load_file(str(src))  # complete before it takes the final name
        renames.append(dst)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", checked_replace)
    cache = tmp_path / "cache"
    rows = sim.df.iloc[:2]
    ImageCohortDataset(rows, "drr", covariates=[], cache_dir=cache, progress=False, **DRR_OPTIONS)
    ImageCohortDataset(
        rows, "patches", covariates=[], cache_dir=cache, keypoint_columns=(), progress=False
    )
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert {p.parent.parent.name for p in files} == {"drr", "drr_views", "keypoints", "patches"}
    assert files == sorted(renames)  # nothing reached the cache but by an atomic rename


def test_concurrent_writers_share_one_cache(sim, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    rows = sim.df.iloc[:6]
    shards = [rows.iloc[i::3] for i in range(3)] + [rows]  # three shards and a full run at once
    cache = tmp_path / "cache"

    def build(df):
        options = {"size": (32, 32), "views": ("frontal",)}
        return ImageCohortDataset(
            df, "drr", covariates=[], cache_dir=cache, progress=False, **options
        )

    with ThreadPoolExecutor(4) as pool:
        datasets = list(pool.map(build, shards))
    alone = tmp_path / "alone"
    reference = ImageCohortDataset(
        rows,
        "drr",
        covariates=[],
        cache_dir=alone,
        size=(32, 32),
        views=("frontal",),
        progress=False,
    )
    names = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert not [n for n in names if n.name.startswith(".")]  # no temporary file left
    for i in range(6):
        assert torch.equal(datasets[3][i][0], reference[i][0])


def test_paths_outside_an_explicit_image_root_are_bad_rows_and_never_read(tmp_path):
    """../, absolute and symlinked paths that leave image_root are refused, naming the row."""
    import os

    import nibabel as nib

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    volume = np.full((16, 16, 16), -1000, np.int16)
    inside_file = root / "ok.nii.gz"
    secret = outside / "secret.nii.gz"
    for path in (inside_file, secret):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    os.symlink(secret, root / "link.nii.gz")
    os.symlink(root / "loop_a", root / "loop_b")
    os.symlink(root / "loop_b", root / "loop_a")
    df = pd.DataFrame(
        {
            "patient_id": ["ok", "dotdot", "absolute", "link", "loop"],
            "time": [1.0, 2.0, 3.0, 4.0, 5.0],
            "event": [1, 0, 0, 0, 0],
            "hip_ct_path": [
                "ok.nii.gz",
                "../outside/secret.nii.gz",
                str(secret),
                "link.nii.gz",
                "loop_a",
            ],
        }
    )
    from fracrisk.exceptions import DataWarning

    with pytest.warns(DataWarning, match="4 of 5 rows left out"):
        data = ImageCohortDataset(
            df,
            "drr",
            covariates=[],
            size=(16, 16),
            image_root=root,
            on_error="skip",
            progress=False,
        )
    assert list(data.patient_ids) == ["ok"]
    reasons = {f.patient_id: f.reason for f in data.failures}
    for pid in ("dotdot", "absolute", "link"):
        assert "outside the image root" in reasons[pid]
    assert "cannot be resolved" in reasons["loop"]
    with pytest.raises(ValueError, match="outside the image root"):
        ImageCohortDataset(df.iloc[:2], "drr", covariates=[], size=(16, 16), image_root=root)
    allowed = ImageCohortDataset(
        df.iloc[:3],
        "drr",
        covariates=[],
        size=(16, 16),
        image_root=root,
        confine_to_root=False,
        progress=False,
    )
    assert len(allowed) == 3
