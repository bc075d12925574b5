"""The DRR cache: keyed by content and geometry, identical results, robust to bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fracrisk.exceptions import DataWarning
from fracrisk.imaging import render_drr
from fracrisk.imaging.cache import DRRCache, drr_cache_key

SPACING = (1.0, 1.0, 1.0)


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return rng.integers(-1000, 1500, size=(24, 20, 16)).astype(np.int16)


def test_second_render_is_read_back_bit_identical(tmp_path, volume):
    cache = DRRCache(tmp_path)
    options = {"views": ("frontal", "lateral"), "size": (32, 32)}
    first = cache.render(volume, SPACING, **options)
    second = cache.render(volume, SPACING, **options)
    assert (cache.misses, cache.hits) == (1, 1)
    assert first.shape == (2, 32, 32)
    assert torch.equal(first, second)
    assert torch.equal(first, render_drr(volume, SPACING, **options))
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda v, s, o: (v + 1, s, o), id="volume"),
        pytest.param(lambda v, s, o: (v, (1.0, 1.0, 2.0), o), id="spacing"),
        pytest.param(lambda v, s, o: (v, s, {**o, "views": ("lateral",)}), id="views"),
        pytest.param(lambda v, s, o: (v, s, {**o, "size": (8, 8)}), id="size"),
        pytest.param(lambda v, s, o: (v, s, {**o, "angles": 5.0}), id="angle"),
        pytest.param(lambda v, s, o: (v.astype(np.float32), s, o), id="dtype"),
    ],
)
def test_any_change_of_input_changes_the_key(volume, change):
    options = {"views": ("frontal",)}
    base = drr_cache_key(volume, SPACING, **options)
    v, s, o = change(volume, SPACING, options)
    assert drr_cache_key(v, s, **o) != base
    assert drr_cache_key(volume.copy(), list(SPACING), views=["frontal"]) == base


def test_an_unreadable_file_is_rendered_again_with_a_warning(tmp_path, volume):
    cache = DRRCache(tmp_path)
    first = cache.render(volume, SPACING, views=("axial",))
    path = cache.path_for(drr_cache_key(volume, SPACING, views=("axial",)))
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(DataWarning, match="could not be read"):
        again = cache.render(volume, SPACING, views=("axial",))
    assert torch.equal(first, again)
    assert cache.misses == 2
