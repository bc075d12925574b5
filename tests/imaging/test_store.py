"""The content-keyed tensor store: round trips, corrupt entries, identities and keys."""

from __future__ import annotations

import os

import pytest
import torch

from fracrisk.exceptions import DataWarning
from fracrisk.imaging.io import ImageReadError
from fracrisk.imaging.store import TensorStore, content_key, file_identity, model_digest


@pytest.mark.parametrize("on_disk", [True, False])
def test_a_tensor_comes_back_exactly(tmp_path, on_disk):
    store = TensorStore(tmp_path / "s" if on_disk else None)
    tensor = torch.randn(3, 5, 7)
    key = content_key("views", file="abc")
    assert store.get(key, "views") is None and not store.has(key)
    store.put(key, "views", tensor)
    assert store.has(key) and torch.equal(store.get(key, "views"), tensor)
    if on_disk:
        assert store.path_for(key).parent.name == key[:2]
        assert TensorStore(tmp_path / "s").get(key, "views") is not None  # shared by processes


def test_a_corrupt_entry_warns_and_reads_as_absent(tmp_path):
    store = TensorStore(tmp_path)
    key = content_key("views", file="abc")
    store.put(key, "views", torch.zeros(2))
    store.path_for(key).write_bytes(b"\x00" * 20)
    with pytest.warns(DataWarning, match="could not be read"):
        assert store.get(key, "views") is None


def test_keys_follow_every_part_and_not_the_order_of_options():
    a = content_key("patches", file="f", steps=[["Cut", {"size": [64, 64], "margin": 0.15}]])
    b = content_key("patches", file="f", steps=[["Cut", {"margin": 0.15, "size": [64, 64]}]])
    c = content_key("patches", file="f", steps=[["Cut", {"margin": 0.2, "size": [64, 64]}]])
    assert a == b != c
    assert content_key("views", file="f") != content_key("patches", file="f")


def test_content_identity_follows_the_bytes_and_stat_identity_the_file(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"one")
    content, stat = file_identity(path, "image.png"), file_identity(path, "x", "stat")
    path.write_bytes(b"two")
    os.utime(path, ns=(1, 1))
    assert file_identity(path, "image.png") != content
    assert file_identity(path, "x", "stat") != stat
    with pytest.raises(ValueError, match="'content' or 'stat'"):
        file_identity(path, "x", "mtime")


def test_a_directory_identity_covers_its_files_and_refuses_an_empty_one(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    with pytest.raises(ImageReadError, match="empty directory"):
        file_identity(series, "series")
    (series / "1.dcm").write_bytes(b"a")
    first = file_identity(series, "series")
    (series / "2.dcm").write_bytes(b"b")
    assert file_identity(series, "series") != first
    with pytest.raises(ImageReadError, match="no such file"):
        file_identity(tmp_path / "absent.nii.gz", "absent.nii.gz")


def test_a_model_digest_changes_with_any_weight():
    model = torch.nn.Linear(3, 2)
    before = model_digest(model)
    assert model_digest(model) == before
    with torch.no_grad():
        model.bias[0] += 1e-6
    assert model_digest(model) != before


def _flip_one_data_byte(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # inside the tensor data (the header comes first)
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path):
    store = TensorStore(tmp_path)
    path = store.put("ab12", "views", torch.arange(48, dtype=torch.float32).reshape(3, 4, 4))
    _flip_one_data_byte(path)
    with pytest.warns(DataWarning, match="does not match its SHA-256"):
        assert store.get("ab12", "views") is None


def test_an_entry_of_an_unexpected_shape_is_not_used(tmp_path):
    store = TensorStore(tmp_path)
    store.put("cd34", "views", torch.zeros(3, 8, 8))
    with pytest.warns(DataWarning, match=r"shape \(3, 8, 8\), expected \(3, 16, 16\)"):
        assert store.get("cd34", "views", shape=(3, 16, 16)) is None
    assert store.get("cd34", "views", shape=(3, 8, 8)).shape == (3, 8, 8)


def test_a_corrupt_drr_cache_entry_is_rendered_again(tmp_path):
    import numpy as np

    from fracrisk.imaging.cache import DRRCache

    cache = DRRCache(tmp_path)
    volume = np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32)
    first = cache.render(volume, (1.0, 1.0, 1.0))
    key = next(tmp_path.rglob("*.safetensors"))
    _flip_one_data_byte(key)
    with pytest.warns(DataWarning, match="SHA-256"):
        again = cache.render(volume, (1.0, 1.0, 1.0))
    torch.testing.assert_close(again, first)
    assert (cache.hits, cache.misses) == (0, 2)
    assert cache.render(volume, (1.0, 1.0, 1.0)) is not None and cache.hits == 1


def test_equal_tensors_make_identical_files(tmp_path):
    """Shards of one cache written by different processes must not differ by a byte."""
    tensor = torch.rand(3, 8, 8)
    a = TensorStore(tmp_path / "a").put("k1", "views", tensor)
    b = TensorStore(tmp_path / "b").put("k1", "views", tensor.clone())
    assert a.read_bytes() == b.read_bytes()
