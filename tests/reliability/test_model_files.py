"""Model files from elsewhere: no pickle ever executes, every tampering names the problem.

A crafted pickle whose unpickling would create a marker file is put in every file slot
fracrisk reads: a saved model's config and weights, a training checkpoint, a backbone's
local weights (``.safetensors`` and torch checkpoint), and the keypoint detector's weights.
Each read fails with a clear error, and the marker never appears.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from fracrisk import CoxPH, DeepSurv, load_model
from fracrisk.simulate import clinical_cohort


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_bomb(path: Path, marker: Path) -> Path:
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": _Payload(marker)}, fh)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    cohort = clinical_cohort(400, seed=0)
    CoxPH().fit(cohort).save(folder / "cox")
    DeepSurv(hidden=(4,), max_epochs=2, progress=False).fit(cohort).save(folder / "deep")
    return folder


def _copy(saved: Path, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(saved / name, target)
    return target


@pytest.mark.parametrize("slot", ["weights.safetensors", "config.json"])
def test_a_pickle_in_a_model_directory_never_runs(saved, tmp_path, slot):
    marker = tmp_path / "executed"
    model = _copy(saved, "deep", tmp_path)
    _pickle_bomb(model / slot, marker)
    with pytest.raises(ValueError, match=slot.split(".")[0]):
        load_model(model)
    assert not marker.exists()


def test_a_pickled_training_checkpoint_never_runs(tmp_path):
    from fracrisk.training.callbacks import SafeCheckpointIO

    marker = tmp_path / "executed"
    checkpoint = _pickle_bomb(tmp_path / "last.ckpt", marker)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|global"):
        SafeCheckpointIO().load_checkpoint(checkpoint)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_pickled_backbone_weights_never_run(tmp_path, suffix):
    from fracrisk.encoders import create_backbone

    marker = tmp_path / "executed"
    weights = _pickle_bomb(tmp_path / f"weights{suffix}", marker)
    with pytest.raises(ValueError, match="weights"):
        create_backbone("resnet10t", weights=weights)
    assert not marker.exists()


def test_a_pickled_keypoint_detector_never_runs(tmp_path):
    from fracrisk.imaging.keypoints import load_keypoint_detector, save_keypoint_detector

    marker = tmp_path / "executed"
    save_keypoint_detector(load_keypoint_detector(), tmp_path / "detector")
    _pickle_bomb(tmp_path / "detector.safetensors", marker)
    with pytest.raises(ValueError, match="never unpickles"):
        load_keypoint_detector(tmp_path / "detector")
    assert not marker.exists()


def test_tampered_models_say_what_is_wrong(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    flipped = _copy(saved, "cox", tmp_path / "a")
    raw = bytearray((flipped / "weights.safetensors").read_bytes())
    raw[-2] ^= 0xFF
    (flipped / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256|checksum"):
        load_model(flipped)

    future = _copy(saved, "cox", tmp_path / "b")
    config = json.loads((future / "config.json").read_text())
    config["format"] = "fracrisk-model/99"
    (future / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="fracrisk-model/99"):
        load_model(future)

    for edit, message in (
        ("drop", "weights do not match|missing"),
        ("shape", "weights do not match|shape"),
    ):
        broken = _copy(saved, "deep", tmp_path / edit)
        tensors = load_file(str(broken / "weights.safetensors"))
        name = next(k for k in tensors if k.endswith("weight"))
        if edit == "drop":
            del tensors[name]
        else:
            tensors[name] = torch.zeros(tuple(s + 1 for s in tensors[name].shape))
        save_file(tensors, str(broken / "weights.safetensors"))
        config = json.loads((broken / "config.json").read_text())
        config.pop("checksums", None)  # a consistent forgery: only the tensors are wrong
        (broken / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            load_model(broken)
