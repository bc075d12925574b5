"""A content-keyed store of prepared image tensors: safetensors files on disk, or memory.

:class:`TensorStore` keeps one named tensor per key. On disk every entry is a safetensors
file (nothing is executed on loading), written beside its place and renamed into it
(:func:`fracrisk._io.atomic_path`), so that concurrent writers and a killed process never
leave a half-written entry under its final name. An entry that cannot be read back is
reported with a :class:`~fracrisk.exceptions.DataWarning` and treated as absent (it is made
again).

Keys are SHA-256 digests of JSON (:func:`content_key`) naming what decides the tensor:
the image file (:func:`file_identity`: its bytes, or its path, size and modification
time), the options of every step that made it, and the weights of any model used
(:func:`model_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from fracrisk._io import atomic_path
from fracrisk.exceptions import DataWarning
from fracrisk.imaging.io import ImageReadError

__all__ = [
    "FILE_IDENTITIES",
    "TensorStore",
    "content_key",
    "file_identity",
    "json_plain",
    "model_digest",
]

STORE_FORMAT = "fracrisk-image-dataset/1"
FILE_IDENTITIES = ("content", "stat")


class TensorStore:
    """One named tensor per key: safetensors files under ``directory``, or a dict in memory.

    Parameters
    ----------
    directory : pathlib.Path or None
        Where the entries live (created if needed; entry ``key`` is
        ``directory/key[:2]/key.safetensors``). None: in memory, for this process only.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = None if directory is None else Path(directory)
        self._memory: dict[str, torch.Tensor] = {}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def on_disk(self) -> bool:
        """True when entries are files (shared by processes and runs)."""
        return self.directory is not None

    def path_for(self, key: str) -> Path:
        """The file of entry ``key`` (disk stores only)."""
        if self.directory is None:
            raise RuntimeError("an in-memory store has no files")
        return self.directory / key[:2] / f"{key}.safetensors"

    def has(self, key: str) -> bool:
        """True when entry ``key`` exists (it may still turn out unreadable)."""
        if self.directory is None:
            return key in self._memory
        return self.path_for(key).exists()

    def get(
        self, key: str, name: str, *, shape: tuple[int, ...] | None = None
    ) -> torch.Tensor | None:
        """Entry ``key``'s tensor ``name``, or None when absent, unreadable or corrupt.

        A file entry is used only if its tensor matches the SHA-256 and shape stored with
        it (and ``shape`` when given); otherwise a :class:`DataWarning` says so and the
        caller computes it again.
        """
        if self.directory is None:
            return self._memory.get(key)
        path = self.path_for(key)
        if not path.exists():
            return None
        return read_tensor(path, name, shape=shape)

    def put(self, key: str, name: str, tensor: torch.Tensor) -> Path | None:
        """Store ``tensor`` as entry ``key``; returns its file (None in memory)."""
        tensor = tensor.detach().cpu().contiguous()
        if self.directory is None:
            self._memory[key] = tensor
            return None
        from safetensors.torch import save_file

        path = self.path_for(key)
        # one metadata key: safetensors writes several in a random order, and a cache file
        # must be the same bytes whichever process wrote it
        entry = {
            "format": STORE_FORMAT,
            "sha256": _tensor_digest(tensor),
            "shape": list(tensor.shape),
        }
        metadata = {"fracrisk": json.dumps(entry, sort_keys=True)}
        with atomic_path(path) as tmp:
            save_file({name: tensor}, str(tmp), metadata=metadata)
        return path


def _tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def read_tensor(
    path: Path, name: str, *, shape: tuple[int, ...] | None = None
) -> torch.Tensor | None:
    """The tensor ``name`` of a store file, or None (with a warning) if unreadable or corrupt.

    The tensor must match the SHA-256 and shape in the file's metadata, and ``shape`` when
    given: a flipped byte or a truncated entry is recomputed, never used.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = json.loads((fh.metadata() or {}).get("fracrisk", "{}"))
            tensor = fh.get_tensor(name)
        problem = None
        if "sha256" not in metadata:
            problem = "it carries no checksum (an older cache)"
        elif _tensor_digest(tensor) != metadata["sha256"]:
            problem = "its content does not match its SHA-256"
        elif metadata.get("shape") != list(tensor.shape):
            problem = "its shape does not match the stored shape"
        elif shape is not None and tuple(tensor.shape) != tuple(shape):
            problem = f"it has shape {tuple(tensor.shape)}, expected {tuple(shape)}"
    except Exception as err:  # noqa: BLE001 - any unreadable cache file is made again
        problem = f"it could not be read ({err})"
    if problem is None:
        return tensor
    warnings.warn(
        f"cached tensor {str(path)!r} is not used: {problem}; computing it again",
        DataWarning,
        stacklevel=3,
    )
    return None


def json_plain(value):
    """``value`` as plain JSON types (arrays to lists, geometry objects to their dict)."""
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_plain(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value.tolist()).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if hasattr(value, "to_dict"):  # e.g. a beam-geometry object
        return {"class": type(value).__name__, **json_plain(value.to_dict())}
    return value


def content_key(kind: str, **parts) -> str:
    """SHA-256 hex digest of ``{"format", "kind", **parts}`` as sorted JSON."""
    digest = hashlib.sha256()
    payload = {"format": STORE_FORMAT, "kind": kind, **json_plain(parts)}
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()


def file_identity(path: str | os.PathLike, source: str, mode: str = "content") -> str:
    """SHA-256 of a file's (or a directory's files') bytes, or of its path, size and mtime.

    ``mode="content"`` reads every byte (a DICOM directory: every file, with its name);
    ``mode="stat"`` reads none (absolute path, size and modification time in ns): faster for
    very large cohorts, but a file rewritten in place within the clock's resolution would
    not be noticed. Raises :class:`~fracrisk.imaging.ImageReadError` naming ``source`` when
    the path is absent, an empty directory, or unreadable.
    """
    if mode not in FILE_IDENTITIES:
        raise ValueError(f"file identity must be 'content' or 'stat', got {mode!r}")
    path = Path(path)
    if not path.exists():
        raise ImageReadError(source, "no such file or directory")
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise ImageReadError(source, "empty directory (no image files)")
        else:
            files = [path]
        for file in files:
            if mode == "stat":
                stat = file.stat()
                digest.update(f"{file.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
                continue
            digest.update(f"{file.name}\0".encode() if path.is_dir() else b"")
            with open(file, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
    except OSError as err:
        raise ImageReadError(source, f"cannot be read ({type(err).__name__}: {err})") from err
    return digest.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's class, ``config()`` and every tensor of its state dict."""
    digest = hashlib.sha256()
    config = model.config() if hasattr(model, "config") else {}
    digest.update(json.dumps({"class": type(model).__name__, **config}, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
