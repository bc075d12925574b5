"""Atomic file output, and output directories that are never replaced by accident."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_json", "check_replaceable", "staged_output_dir"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A reader never sees a half-written file, and a failure leaves any previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def check_replaceable(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    is_ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse to replace an existing, non-empty directory unless asked (and it is ours).

    Parameters
    ----------
    path : path-like
        The output directory.
    overwrite : bool, default False
        Allow replacing an existing, non-empty directory. Without it a
        :class:`FileExistsError` names the directory and the flag to pass.
    is_ours : callable, optional
        Extra safety check when overwriting: called with the directory, it must return
        True for the directory to be replaced (e.g. "contains a fracrisk marker file").
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"output directory {str(path)!r} already exists and is not empty; "
                "pass overwrite=True (CLI: --overwrite) to replace it"
            )
        if is_ours is not None and not is_ours(path):
            raise FileExistsError(
                f"refusing to overwrite {str(path)!r}: it does not look like a fracrisk output"
            )
    return path


@contextmanager
def staged_output_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    is_ours: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Build an output directory beside ``path`` and move it into place only on success.

    The checks of :func:`check_replaceable` run first, before any work. The caller writes
    into the yielded temporary directory; when the block ends without error, it replaces
    ``path`` (an earlier run is removed only then). On error the temporary directory is
    deleted and ``path`` is left as it was, so a failed run never leaves a half-written
    output behind, nor destroys a good one.
    """
    path = check_replaceable(path, overwrite=overwrite, is_ours=is_ours)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
