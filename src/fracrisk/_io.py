"""Atomic file output, and output directories that are never replaced by accident."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_json", "check_replaceable", "staged_output_dir"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A reader never sees a half-written file, and a failure leaves any previous file intact.
    The temporary file is hidden, ``.<name>.<host>-<pid>.<random>.tmp``; those of killed
    writers on this host are deleted by the next write of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path, ".tmp")
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


def _host() -> str:
    name = socket.gethostname().split(".")[0]
    return "".join(c if c.isalnum() else "-" for c in name) or "host"


def _temporary_prefix(path: Path) -> str:
    """``.<name>.<host>-<pid>.``: hidden, and names the process that owns the file."""
    return f".{path.name}.{_host()}-{os.getpid()}."


def _owner(leftover: Path, path: Path) -> tuple[str | None, int | None]:
    """(host, pid) in a temporary name beside ``path``; host None for the old ``<pid>.`` form."""
    tag = leftover.name[len(path.name) + 2 :].split(".")[0]
    if tag.isdigit():
        return None, int(tag)
    host, _, pid = tag.rpartition("-")
    return (host, int(pid)) if host and pid.isdigit() else (None, None)


def _remove_leftovers(path: Path, suffix: str = ".partial") -> None:
    """Delete temporary files or folders beside ``path`` left by killed writers.

    Only those of this host whose process is gone: a name without an owner, a live
    process's, or another machine's (on a shared file system) is left alone.
    """
    for leftover in path.parent.glob(f".{glob_escape(path.name)}.*{suffix}"):
        host, pid = _owner(leftover, path)
        if pid is None or pid == os.getpid() or (host is not None and host != _host()):
            continue
        try:
            os.kill(pid, 0)
            continue  # that process still runs: its file is not ours to delete
        except ProcessLookupError:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        except PermissionError:
            continue


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
    into the yielded temporary directory ``.<name>.<host>-<pid>.<random>.partial``; when the block
    ends without error its files are fsynced and it takes the place of ``path``:

    * a new ``path`` is a rename;
    * an existing one is **swapped** with the staging folder in one atomic step
      (``renameat2(RENAME_EXCHANGE)`` on Linux), and the old run, now in the staging
      folder, is deleted after. Where the swap is not available the old run is renamed
      aside first, so ``path`` is missing only between two renames, never half-written.

    A process killed at any moment leaves ``path`` as it was or as it was meant to be. On
    error the staging folder is deleted and ``path`` is left as it was. Staging folders of
    killed runs (whose process is gone) are deleted by the next run.
    """
    path = check_replaceable(path, overwrite=overwrite, is_ours=is_ours)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    staging = Path(
        tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".partial", dir=path.parent)
    )
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp creates 0700; give the usual folder mode
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                _fsync_file(file)
        _fsync_dir(staging)
        if not path.exists():
            os.replace(staging, path)
        elif not _exchange(staging, path):
            aside = Path(
                tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".partial", dir=path.parent)
            )
            os.replace(path, aside / "old")
            os.replace(staging, path)
            shutil.rmtree(aside, ignore_errors=True)
        _fsync_dir(path.parent)
    finally:
        if staging.exists():  # the failed run, or the old one after a swap
            shutil.rmtree(staging, ignore_errors=True)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (hex)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions(
    packages=("fracrisk", "torch", "numpy", "pandas", "lightning", "scikit-survival", "lifelines"),
) -> dict[str, str]:
    """Installed versions of ``packages`` ("not installed" where absent), for run records."""
    from importlib import metadata

    out = {}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out
