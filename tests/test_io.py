"""Atomic writes and output directories that are never replaced by accident."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fracrisk._io import atomic_path, atomic_write_json, prepare_output_dir


def _fill(directory):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(b"weights")
    (directory / "sub").mkdir()
    (directory / "sub" / "log.txt").write_text("epoch 1\n")


# ---------------------------------------------------------------- prepare_output_dir


def test_prepare_output_dir_creates_missing_directories(tmp_path):
    target = tmp_path / "runs" / "a" / "b"
    assert prepare_output_dir(target) == target
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_prepare_output_dir_accepts_an_existing_empty_directory(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    assert prepare_output_dir(str(target)) == target
    assert target.is_dir()


def test_prepare_output_dir_refuses_a_non_empty_directory(tmp_path):
    target = tmp_path / "run"
    _fill(target)
    with pytest.raises(
        FileExistsError,
        match=rf"output directory {re.escape(repr(str(target)))} already exists "
        r"and is not empty; pass overwrite=True \(CLI: --overwrite\)",
    ):
        prepare_output_dir(target)
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert (target / "sub" / "log.txt").exists()


def test_prepare_output_dir_overwrites_when_asked(tmp_path):
    target = tmp_path / "run"
    _fill(target)
    assert prepare_output_dir(target, overwrite=True) == target
    assert target.is_dir()
    assert list(target.iterdir()) == []
    assert tmp_path.exists()  # only the directory's contents were removed


def test_prepare_output_dir_respects_is_ours(tmp_path):
    target = tmp_path / "run"
    _fill(target)
    seen = []

    def not_ours(path):
        seen.append(path)
        return False

    with pytest.raises(FileExistsError, match="does not look like a fracrisk output"):
        prepare_output_dir(target, overwrite=True, is_ours=not_ours)
    assert seen == [target]
    assert (target / "model.safetensors").read_bytes() == b"weights"

    def has_marker(path):
        return (path / "fracrisk.json").exists()

    with pytest.raises(FileExistsError, match=re.escape(repr(str(target)))):
        prepare_output_dir(target, overwrite=True, is_ours=has_marker)
    (target / "fracrisk.json").write_text("{}")
    prepare_output_dir(target, overwrite=True, is_ours=has_marker)
    assert list(target.iterdir()) == []


def test_prepare_output_dir_without_overwrite_never_calls_is_ours(tmp_path):
    target = tmp_path / "run"
    _fill(target)

    def boom(path):
        raise AssertionError("is_ours must not be consulted without overwrite=True")

    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_output_dir(target, is_ours=boom)


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
