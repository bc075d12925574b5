"""A disk cache of rendered DRRs keyed by the content of the volume and the geometry.

Training epochs then never re-render: the first epoch renders and stores each patient's views,
later epochs (and later runs) read them back. Files are safetensors (no code is executed on
loading) written atomically; a file that cannot be read is rendered again, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from fracrisk.imaging.drr import render_drr
from fracrisk.imaging.geometry import resolve_geometry

__all__ = ["DRRCache", "drr_cache_key"]

_FORMAT = "fracrisk-drr/1"


def drr_cache_key(volume_hu, spacing, **render_options) -> str:
    """SHA-256 of the volume's bytes, shape and dtype, the spacing and the render options.

    Two calls share a key exactly when :func:`~fracrisk.imaging.render_drr` would get the same
    inputs, so a cached result is always the one that would have been rendered.
    """
    array = (
        volume_hu.detach().cpu().numpy()
        if isinstance(volume_hu, torch.Tensor)
        else np.asarray(volume_hu)
    )
    array = np.ascontiguousarray(array)
    options = dict(render_options)
    # A name and the object it stands for render the same images, so they share a key.
    options["geometry"] = resolve_geometry(options.get("geometry", "parallel")).to_dict()
    if "dtype" in options:
        options["dtype"] = str(options["dtype"])
    digest = hashlib.sha256()
    digest.update(_FORMAT.encode())
    digest.update(
        json.dumps(
            {
                "shape": array.shape,
                "dtype": str(array.dtype),
                "spacing": [float(s) for s in spacing],
                "options": _plain(options),
            },
            sort_keys=True,
        ).encode()
    )
    digest.update(array.tobytes())
    return digest.hexdigest()


def _plain(value):
    """Render options as JSON-serialisable values (tuples to lists, arrays to lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value.tolist()).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


class DRRCache:
    """Render DRRs once and keep them on disk.

    Parameters
    ----------
    directory : path-like
        Where the cached views are stored (created if needed), one safetensors file per
        volume and geometry, in sub-directories by the key's first two characters.

    Attributes
    ----------
    hits, misses : int
        Counts of reads from the cache and of renders.

    Examples
    --------
    >>> import tempfile
    >>> volume = np.zeros((8, 8, 8), dtype=np.int16)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cache = DRRCache(tmp)
    ...     first = cache.render(volume, (1.0, 1.0, 1.0), views=("frontal",))
    ...     again = cache.render(volume, (1.0, 1.0, 1.0), views=("frontal",))
    ...     (cache.hits, cache.misses, bool(torch.equal(first, again)))
    (1, 1, True)
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        from fracrisk.imaging.store import TensorStore

        self.directory = Path(directory)
        self._store = TensorStore(self.directory)
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        """File holding the views cached under ``key``."""
        return self._store.path_for(key)

    def render(self, volume_hu, spacing, **render_options) -> torch.Tensor:
        """Cached :func:`~fracrisk.imaging.render_drr` (same arguments, same result, on CPU).

        An entry is used only if it matches the SHA-256 and shape stored with it; a
        corrupt or truncated one is rendered again (with a :class:`DataWarning`).
        """
        key = drr_cache_key(volume_hu, spacing, **render_options)
        if self._store.has(key):
            views = self._store.get(key, "views")
            if views is not None:
                self.hits += 1
                return views
        views = render_drr(volume_hu, spacing, **render_options).detach().cpu().contiguous()
        self._store.put(key, "views", views)
        self.misses += 1
        return views
