"""Atomic writes and output directories that are never replaced by accident."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fracrisk._io import atomic_path, atomic_write_json, check_replaceable, staged_output_dir


def _fill(directory):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(b"weights")
    (directory / "sub").mkdir()
    (directory / "sub" / "log.txt").write_text("epoch 1\n")


# ---------------------------------------------------------------- staged_output_dir


def test_staged_output_dir_creates_missing_directories_on_success(tmp_path):
    target = tmp_path / "runs" / "a" / "b"
    with staged_output_dir(target) as staging:
        assert staging != target and staging.parent == target.parent
        (staging / "report.md").write_text("ok")
        assert not target.exists()  # nothing visible until the block succeeds
    assert (target / "report.md").read_text() == "ok"
    assert [p.name for p in target.parent.iterdir()] == ["b"]  # no staging left behind


def test_staged_output_dir_accepts_an_existing_empty_directory(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    with staged_output_dir(str(target)) as staging:
        (staging / "x").write_text("1")
    assert (target / "x").read_text() == "1"


def test_staged_output_dir_refuses_a_non_empty_directory_before_any_work(tmp_path):
    target = tmp_path / "run"
    _fill(target)
    entered = []
    with pytest.raises(
        FileExistsError,
        match=rf"output directory {re.escape(repr(str(target)))} already exists "
        r"and is not empty; pass overwrite=True \(CLI: --overwrite\)",
    ):
        with staged_output_dir(target):
            entered.append(True)
    assert entered == []
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert (target / "sub" / "log.txt").exists()


def test_staged_output_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "run"
    _fill(target)
    with pytest.raises(RuntimeError, match="boom"):
        with staged_output_dir(target, overwrite=True) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert (target / "model.safetensors").read_bytes() == b"weights"  # old run intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # staging removed
    with staged_output_dir(target, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_check_replaceable_respects_is_ours(tmp_path):
    target = tmp_path / "run"
    _fill(target)
    seen = []

    def not_ours(path):
        seen.append(path)
        return False

    with pytest.raises(FileExistsError, match="does not look like a fracrisk output"):
        check_replaceable(target, overwrite=True, is_ours=not_ours)
    assert seen == [target]
    assert (target / "model.safetensors").read_bytes() == b"weights"

    def has_marker(path):
        return (path / "fracrisk.json").exists()

    with pytest.raises(FileExistsError, match=re.escape(repr(str(target)))):
        check_replaceable(target, overwrite=True, is_ours=has_marker)
    (target / "fracrisk.json").write_text("{}")
    assert check_replaceable(target, overwrite=True, is_ours=has_marker) == target


# ---------------------------------------------------------------- atomic_path


def test_atomic_path_replaces_the_file_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible before the block ends
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_keeps_the_old_file_if_the_block_raises(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_creates_nothing_if_the_block_raises(tmp_path):
    target = tmp_path / "new" / "out.txt"
    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise KeyError("x")
    assert not target.exists()
    assert list((tmp_path / "new").iterdir()) == []


# ---------------------------------------------------------------- atomic_write_json


def test_atomic_write_json_writes_valid_json(tmp_path):
    target = tmp_path / "meta" / "state.json"
    obj = {
        "b": [1, 2.5, None],
        "a": {"name": "fracrisk", "ok": True},
        "array": np.array([0.1, 1 / 3]),
        "count": np.int64(7),
        "scale": np.float32(0.5),
    }
    atomic_write_json(target, obj)
    text = target.read_text()
    assert text.endswith("\n")
    back = json.loads(text)
    assert back == {
        "a": {"name": "fracrisk", "ok": True},
        "array": [0.1, 1 / 3],
        "b": [1, 2.5, None],
        "count": 7,
        "scale": 0.5,
    }
    assert list(back) == ["a", "array", "b", "count", "scale"]  # sorted keys
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_atomic_write_json_leaves_old_file_on_unserialisable_object(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError, match="object of type object is not JSON serialisable"):
        atomic_write_json(target, {"v": object()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


_SAVE_FOREVER = """
import sys
from fracrisk import CoxPH
from fracrisk.simulate import clinical_cohort

model = CoxPH().fit(clinical_cohort(300, seed=0))
model.save(sys.argv[1], overwrite=True)
print("ready", flush=True)
while True:
    model.save(sys.argv[1], overwrite=True)
"""


def test_a_model_overwritten_and_killed_at_random_is_never_lost(tmp_path):
    """SIGKILL during save(overwrite=True): the directory always holds a loadable model."""
    import signal
    import subprocess
    import sys
    import time

    from fracrisk import load_model

    script = tmp_path / "save_forever.py"
    script.write_text(_SAVE_FOREVER)
    target = tmp_path / "model"
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(target)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert load_model(target).n_train_ == 300  # the old model or the new one, whole
    # the next save deletes the staging folders the killed processes left
    load_model(target).save(target, overwrite=True)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_staging_folders_of_live_processes_are_left_alone(tmp_path):
    import os

    from fracrisk._io import _host

    live = tmp_path / f".run.{_host()}-{os.getppid()}.abc.partial"  # our parent: alive
    dead = tmp_path / f".run.{_host()}-999999999.abc.partial"
    old_form = tmp_path / ".run.999999998.abc.partial"  # before the host was in the name
    elsewhere = tmp_path / ".run.another-machine-999999999.abc.partial"  # shared disk
    for folder in (live, dead, old_form, elsewhere):
        folder.mkdir()
    with staged_output_dir(tmp_path / "run") as staging:
        (staging / "f.txt").write_text("x")
    assert live.exists() and elsewhere.exists()
    assert not dead.exists() and not old_form.exists()


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    import os

    from fracrisk._io import _host, atomic_path

    target = tmp_path / "table [v1].csv"  # glob characters in the name are literal
    dead = tmp_path / f".{target.name}.{_host()}-999999999.x1.tmp"
    live = tmp_path / f".{target.name}.{_host()}-{os.getppid()}.x2.tmp"
    other = tmp_path / f".other.csv.{_host()}-999999999.x3.tmp"
    for file in (dead, live, other):
        file.write_text("half")
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".{target.name}.{_host()}-{os.getpid()}.")
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert not dead.exists() and live.exists() and other.exists()


def _saved_cox(tmp_path):
    from fracrisk import CoxPH
    from fracrisk.simulate import clinical_cohort

    cohort = clinical_cohort(300, seed=0)
    path = CoxPH().fit(cohort).save(tmp_path / "cox")
    return path, cohort


def test_a_changed_weights_file_is_refused_by_its_checksum(tmp_path):
    from fracrisk import load_model

    path, cohort = _saved_cox(tmp_path)
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # 8 bytes of a tensor, flipped to zeros
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(path)


def test_misshapen_tensors_and_invalid_baselines_are_clear_errors(tmp_path):
    import hashlib

    import torch
    from safetensors.torch import load_file, save_file

    from fracrisk import load_model

    path, _ = _saved_cox(tmp_path)
    tensors = load_file(str(path / "weights.safetensors"))
    config = json.loads((path / "config.json").read_text())

    def rewrite(new):
        save_file(new, str(path / "weights.safetensors"))
        digest = hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()
        config["checksums"]["weights.safetensors"] = digest
        (path / "config.json").write_text(json.dumps(config))

    rewrite({**tensors, "network.linear.weight": torch.zeros(1, 2, dtype=torch.float64)})
    with pytest.raises(ValueError, match="do not match the model"):
        load_model(path)
    decreasing = tensors["baseline_hazard.cumulative_hazard"].flip(0).contiguous()
    rewrite({**tensors, "baseline_hazard.cumulative_hazard": decreasing})
    with pytest.raises(ValueError, match="baseline hazard is invalid"):
        load_model(path)
