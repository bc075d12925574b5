r"""A PyTorch dataset of images, covariates and outcome, one item per patient of a cohort.

:class:`ImageCohortDataset` turns a cohort table with image paths into training items
``(image, covariates, time, event)``:

* ``kind="drr"``: the hip CT of each row (NIfTI file or DICOM series, read by
  :func:`fracrisk.imaging.load_ct`, resampled to isotropic voxels) rendered to multi-view
  DRRs ``(V, H, W)`` by :func:`fracrisk.imaging.render_drr` (frontal, lateral, axial);
* ``kind="patches"``: the lateral spine radiograph of each row
  (:func:`fracrisk.imaging.load_radiograph`), its 20 vertebral-body corners (from the table,
  or found by the keypoint detector), and the L1-L5 patches ``(5, h, w)`` cut by
  :func:`fracrisk.imaging.vertebral_patches`.

Deterministic work, then augmentation
-------------------------------------
Everything deterministic (read, render or detect, cut, normalise) is done **once**, when
the dataset is built, and cached; random augmentation (``transform``) is applied to the
cached tensor each time an item is read, so epochs never re-read a CT nor re-render. With
``cache_dir`` the cache is on disk and shared by runs and processes; without it the
tensors are kept in memory (small cohorts only: a 3 x 224 x 224 DRR stack is 0.6 MB).

On disk, every entry is a safetensors file (nothing is executed on loading) written
atomically, found by a SHA-256 key of

* the image file's **content** (its bytes; every file of a DICOM directory), or, with
  ``file_identity="stat"``, its absolute path, size and modification time (no file is read
  when everything is cached: for very large cohorts);
* every option that changes the result (CT spacing, views, size, window and other render
  options; keypoints, patch size, margin, mapping and normalisation; the detector's
  weights).

DRRs are stored by :class:`fracrisk.imaging.DRRCache` (keyed by the volume's voxels and the
geometry), with a small index from the file's key to the DRR's key, so that a warm cache
does not even read the CT. Detected keypoints are cached apart from the patches: changing
the patch size does not re-run the detector.

Outcome
-------
``time`` is the follow-up in years (float64), ``event`` is 1 for the event of interest,
**fracture** (event code 1 of :data:`fracrisk.data.EVENT_CODES`), and 0 otherwise: a death
(code 2) censors the follow-up, as in fracrisk's Cox models (cause-specific hazard of
fracture). The raw codes are in :attr:`ImageCohortDataset.event_code`.

Bad files
---------
``on_error="raise"`` stops at the first file that cannot be used, with an
:class:`~fracrisk.imaging.ImageReadError` naming the file, the row, the patient and the
reason. ``on_error="skip"`` leaves the row out, lists it in
:attr:`ImageCohortDataset.failures` (row, patient id, column, file, reason; also
:meth:`ImageCohortDataset.failure_report`) and warns with a
:class:`~fracrisk.exceptions.DataWarning`: a row is never dropped silently.

Workers
-------
The dataset is picklable and works with ``torch.utils.data.DataLoader(num_workers=k)``.
With ``seed`` set, a row's augmentation depends only on ``(seed, epoch, row position in
the table)`` (:meth:`ImageCohortDataset.set_epoch`), not on the number of workers, the
order of reading or the rows left out; with ``seed=None`` it is drawn from torch's global
generator, which ``torch.manual_seed`` and the DataLoader's per-worker seeding control.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

import fracrisk.imaging.io as _io
import fracrisk.imaging.keypoints as _keypoints
from fracrisk._io import atomic_path
from fracrisk.data.cohort import Cohort, as_cohort
from fracrisk.data.schema import DEFAULT_IMAGE_COLUMNS, SPINE_KEYPOINTS_COLUMN
from fracrisk.exceptions import DataWarning, NotFittedError, NoUsableImagesError
from fracrisk.imaging.anatomy import N_KEYPOINTS, VERTEBRA_CORNERS, VERTEBRAE
from fracrisk.imaging.cache import DRRCache, drr_cache_key
from fracrisk.imaging.drr import _check_size as _check_image_size
from fracrisk.imaging.drr import _check_views, _check_window, render_drr
from fracrisk.imaging.geometry import resolve_geometry
from fracrisk.imaging.io import ImageReadError
from fracrisk.imaging.patches import TRANSFORMS as _PATCH_MAPPINGS
from fracrisk.imaging.patches import vertebral_patches
from fracrisk.imaging.transforms import IMAGE_KINDS, Compose, RandomTransform
from fracrisk.imaging.transforms import default_eval_transform as _default_eval_transform
from fracrisk.preprocessing import TabularPreprocessor

__all__ = ["ImageCohortDataset", "ImageFailure", "failure_table"]

_FORMAT = "fracrisk-image-dataset/1"
_DEFAULT_SIZES = {"drr": (224, 224), "patches": (64, 64)}
_NORMALISATIONS = ("zscore", None)
_FILE_IDENTITIES = ("content", "stat")
_ON_ERROR = ("raise", "skip")
_EVENT_OF_INTEREST = 1  # fracture (EVENT_CODES)
_KEYPOINT_SHAPE = (len(VERTEBRAE), len(VERTEBRA_CORNERS), 2)


@dataclass(frozen=True)
class ImageFailure:
    """A row left out (``on_error="skip"``) or stopped at (``"raise"``), and why.

    Attributes
    ----------
    row : object
        Row label in the cohort table.
    patient_id : object
        The patient's id (the row label when the table has no id column).
    column : str
        The column at fault: the image path column, or the keypoint column(s).
    path : str
        The image file (or directory) as given in the table.
    reason : str
        What is wrong, in words.
    """

    row: Any
    patient_id: Any
    column: str
    path: str
    reason: str

    def describe(self) -> str:
        """One line: patient, row, column, file and reason."""
        return (
            f"patient_id {self.patient_id!r} (row {self.row!r}), column {self.column!r}, "
            f"file {self.path}: {self.reason}"
        )


def failure_table(failures: Sequence[ImageFailure]) -> pd.DataFrame:
    """Failed rows as a table: ``row``, ``patient_id``, ``column``, ``path``, ``reason``.

    What :meth:`ImageCohortDataset.failure_report` gives, and what to write when every row
    failed (:class:`~fracrisk.exceptions.NoUsableImagesError` carries the failures).
    """
    return pd.DataFrame(
        [vars(f) for f in failures], columns=["row", "patient_id", "column", "path", "reason"]
    )


@dataclass
class _Result:
    """What preparing one row gave (returned from worker processes)."""

    position: int
    file: str | None = None  # cache file holding the tensor (disk cache)
    tensor: torch.Tensor | None = None  # the tensor itself (memory cache)
    failure: ImageFailure | None = None
    counts: dict | None = None


class _RowError(Exception):
    """A row cannot be used: which column, and why (turned into an ImageFailure)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


# ------------------------------------------------------------------------------ storage


class _TensorStore:
    """One named tensor per key: safetensors files under ``directory``, or a dict in memory."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, torch.Tensor] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        if self.directory is None:
            raise RuntimeError("an in-memory store has no files")
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str, name: str) -> torch.Tensor | None:
        if self.directory is None:
            return self._memory.get(key)
        path = self.path_for(key)
        if not path.exists():
            return None
        return _read_tensor(path, name)

    def put(self, key: str, name: str, tensor: torch.Tensor) -> Path | None:
        tensor = tensor.detach().cpu().contiguous()
        if self.directory is None:
            self._memory[key] = tensor
            return None
        from safetensors.torch import save_file

        path = self.path_for(key)
        with atomic_path(path) as tmp:
            save_file({name: tensor}, str(tmp), metadata={"format": _FORMAT})
        return path


def _read_tensor(path: Path, name: str) -> torch.Tensor | None:
    """The tensor ``name`` of a safetensors file, or None (with a warning) if unreadable."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))[name]
    except Exception as err:  # noqa: BLE001 - any unreadable cache file is recomputed
        warnings.warn(
            f"cached tensor {str(path)!r} could not be read ({err}); computing it again",
            DataWarning,
            stacklevel=3,
        )
        return None


def _read_link(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else None


def _write_link(path: Path, target: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(target + "\n")


def _key(kind: str, **parts) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": _FORMAT, "kind": kind, **parts}, sort_keys=True).encode())
    return digest.hexdigest()


def _json_plain(value):
    if isinstance(value, dict):
        return {str(k): _json_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_plain(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return np.asarray(value.tolist()).tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if hasattr(value, "to_dict"):  # e.g. a beam-geometry object
        return {"class": type(value).__name__, **_json_plain(value.to_dict())}
    return value


def _key_options(options: dict) -> dict:
    """Render options as JSON, the geometry (default parallel) in one canonical form.

    A name, an object and its dict, or no geometry at all for the default, render the same
    images, so they share a key (as in :func:`~fracrisk.imaging.drr_cache_key`).
    """
    plain = dict(options)
    plain["geometry"] = resolve_geometry(plain.get("geometry", "parallel")).to_dict()
    return _json_plain(plain)


def _file_identity(path: Path, source: str, mode: str) -> str:
    """SHA-256 of a file's (or a directory's files') bytes, or of its path, size and mtime."""
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


def _model_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    config = model.config() if hasattr(model, "config") else {}
    digest.update(json.dumps({"class": type(model).__name__, **config}, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _identity(item):
    return item


# ------------------------------------------------------------------------------ checks


def _is_missing(value) -> bool:
    """None, NaN, NA or a blank string (a list or array is never missing)."""
    if isinstance(value, str):
        return not value.strip()
    if value is None or isinstance(value, (list, tuple, np.ndarray)):
        return value is None
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_size(size, kind: str) -> tuple[int, int]:
    """The kind's default size, or ``size`` checked as render_drr checks it."""
    return _DEFAULT_SIZES[kind] if size is None else _check_image_size(size)


def _check_positive(name: str, value, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not ok or not (math.isfinite(float(value)) and float(value) > 0):
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive number{none}, got {value!r}")
    return float(value)


def _parse_keypoints(value) -> np.ndarray:
    """One row's 20 corners as float64 (5, 4, 2); ValueError (the reason) if they are not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"not JSON-encoded coordinates ({err})") from err
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"not numeric coordinates ({err})") from err
    if array.size != 2 * N_KEYPOINTS:
        raise ValueError(
            f"expected the 20 corners (x, y) of L1-L5 (40 numbers, shape (5, 4, 2), (20, 2) "
            f"or (40,)), got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("corners must be finite (NaN or infinite coordinate)")
    return array.reshape(_KEYPOINT_SHAPE)


# ------------------------------------------------------------------------------ dataset


class ImageCohortDataset(Dataset):
    r"""Items ``(image, covariates, time, event)`` for image-based survival models.

    Parameters
    ----------
    cohort : Cohort or pandas.DataFrame
        One row per patient, with ``time`` (years), ``event`` (0 censored, 1 fracture, 2
        death) and an image path column; a DataFrame is validated into a
        :class:`~fracrisk.data.Cohort`.
    kind : {"drr", "patches"}, default "drr"
        ``"drr"``: multi-view DRRs of a hip CT; ``"patches"``: L1-L5 patches of a lateral
        spine radiograph (module docstring).
    image_column : str, optional
        Column of image paths; default ``"hip_ct_path"`` (``"drr"``) or
        ``"spine_xray_path"`` (``"patches"``), as :func:`fracrisk.simulate.cohort` names them.
        A missing value is a bad file (``on_error``). Relative paths are taken from
        ``image_root``.
    covariates : sequence of str, optional
        Covariate columns; default the preprocessor's columns if one is given, else the
        cohort's :attr:`~fracrisk.data.Cohort.default_covariates`. An empty sequence gives
        ``(0,)`` covariate tensors.
    preprocessor : TabularPreprocessor, optional
        A **fitted** :class:`~fracrisk.preprocessing.TabularPreprocessor` (the training
        set's, for validation and test sets). ``None``: one is fitted on this dataset's rows
        (the kept ones) and exposed as :attr:`preprocessor`. Covariates are its
        standardised, one-hot encoded features, as float32.
    transform : callable, optional
        Applied to the cached image tensor at every read (augmentation). Default:
        :func:`fracrisk.imaging.transforms.default_eval_transform` (no randomness). fracrisk
        transforms (:class:`~fracrisk.imaging.transforms.Compose` and the random ones)
        receive a per-item generator (``seed``); any other callable is called with the
        image alone.
    cache_dir : path-like, optional
        Disk cache of the deterministic preprocessing (created if needed; shared between
        kinds, runs and processes). ``None``: tensors are kept in memory.
    on_error : {"raise", "skip"}, default "raise"
        What to do with a row whose image (or keypoints) cannot be used: stop, or leave it
        out, list it in :attr:`failures` and warn.
    seed : int, optional
        Seed of the augmentation: the row at position ``i`` of the table uses, in epoch
        ``e``, a generator seeded from ``(seed, e, i)``. ``None``: seeds drawn from torch's
        global generator.
    views : sequence of str, default ("frontal", "lateral", "axial")
        DRR views, in channel order (``"drr"``).
    size : (int, int), optional
        Output image size ``(H, W)``: default (224, 224) for DRRs (resampled from the
        native projections), (64, 64) for patches.
    window : (float, float), optional
        DRR window ``(lo, hi)`` in line-integral units (optical depth, dimensionless) mapped
        to [0, 1] and clipped. Default None: physical line integrals (about 0-4 on the
        simulator's hips), which keep the absolute attenuation -- the density signal.
    ct_spacing : float or None, default 1.0
        Isotropic voxel size (mm) the CT is resampled to before rendering; None keeps the
        file's grid.
    render_options : dict, optional
        Further keyword arguments for :func:`fracrisk.imaging.render_drr` (e.g. the beam
        geometry), part of the cache key; must be JSON-serialisable.
    margin : float, default 0.15
        Patch margin around each vertebral body, as a fraction of its size (``"patches"``).
    patch_mapping : {"affine", "similarity", "homography"}, default "affine"
        Body-frame -> image map of :func:`fracrisk.imaging.vertebral_patches`.
    radiograph_normalisation : {"zscore", None}, default "zscore"
        ``"zscore"``: each radiograph is standardised over the whole image before the
        patches are cut (radiograph intensities are not calibrated between devices; the
        contrast between the vertebrae and their surroundings is kept). None: raw values.
    keypoint_columns : str or sequence of str, optional
        Where the table gives the 20 corners (``(x = col, y = row)`` pixels of the
        radiograph, L1..L5 x AS, PS, PI, AI): one column holding 40 numbers per row (JSON
        text as the simulator writes, a list or an array), or 40 numeric columns in that
        order. ``None``: the simulator's ``"spine_keypoints"`` column if present. An empty
        sequence: always use the detector. Rows with a missing value use the detector;
        malformed values are bad rows (``on_error``).
    detector : KeypointNet or path-like, optional
        The keypoint detector (a model, or a path for
        :func:`fracrisk.imaging.load_keypoint_detector`); default the shipped one. It runs
        once per radiograph and its result is cached (keyed by its weights).
    image_root : path-like, optional
        Directory that relative image paths are relative to. Default: the cohort's
        :attr:`~fracrisk.data.Cohort.image_root` (the manifest's directory for a cohort
        read by :meth:`~fracrisk.data.Cohort.read`, which also makes its declared image
        columns absolute), else the working directory.
    file_identity : {"content", "stat"}, default "content"
        How cache keys identify an image file: by its bytes, or by path, size and
        modification time (faster for very large cohorts; a file rewritten in place within
        the clock's resolution would not be noticed).
    prepare_workers : int, default 0
        Processes for the one-off preprocessing (0: in this process).
    progress : bool, default True
        Show a progress bar while the images are prepared (only on a terminal).

    Attributes
    ----------
    failures : list of ImageFailure
        Rows left out under ``on_error="skip"``, in table order.
    preprocessor : TabularPreprocessor or None
        The fitted covariate preprocessor (None without covariates).
    covariate_names : list of str
        Names of the covariate features, in tensor order.
    time : numpy.ndarray
        float64 ``(n_items,)``: follow-up in years of the kept rows, in table order.
    event : numpy.ndarray
        int64 ``(n_items,)``: 1 fracture, 0 censored or died.
    event_code : numpy.ndarray
        int64 ``(n_items,)``: the raw event codes (0, 1, 2).
    row_labels, patient_ids : pandas.Index
        Row labels and patient ids of the kept rows.
    cache_info : dict
        Counts of the preparation: ``rows``, ``from_cache``, ``loaded`` (images read),
        ``rendered``, ``detected``, ``cut`` and ``skipped``.

    Notes
    -----
    Item ``i`` is a tuple

    * ``image``: float32 ``(V, H, W)`` DRR views (``"drr"``) or ``(5, h, w)`` patches L1..L5
      (``"patches"``; patch top = superior endplate, left = anterior);
    * ``covariates``: float32 ``(p,)``;
    * ``time``: float64 scalar tensor, years;
    * ``event``: int64 scalar tensor, 1 = fracture.

    The default ``DataLoader`` collation stacks them into ``(B, ...)`` batches. Call
    :meth:`set_epoch` before each epoch when ``seed`` is set (with
    ``persistent_workers=True`` the workers keep the epoch they started with).

    Examples
    --------
    >>> import tempfile
    >>> from fracrisk.simulate import cohort
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     sim = cohort(4, seed=3, images=("spine",), out_dir=tmp)
    ...     data = ImageCohortDataset(sim, kind="patches", covariates=["age", "bmi"])
    ...     image, x, time, event = data[0]
    >>> tuple(image.shape), tuple(x.shape), time.dtype, int(event) in (0, 1)
    ((5, 64, 64), (2,), torch.float64, True)
    """

    def __init__(
        self,
        cohort: Cohort | pd.DataFrame,
        kind: str = "drr",
        *,
        image_column: str | None = None,
        covariates: Sequence[str] | None = None,
        preprocessor: TabularPreprocessor | None = None,
        transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_error: str = "raise",
        seed: int | None = None,
        views: Sequence[str] | str = ("frontal", "lateral", "axial"),
        size: tuple[int, int] | None = None,
        window: tuple[float, float] | None = None,
        ct_spacing: float | None = 1.0,
        render_options: dict | None = None,
        margin: float = 0.15,
        patch_mapping: str = "affine",
        radiograph_normalisation: str | None = "zscore",
        keypoint_columns: str | Sequence[str] | None = None,
        detector=None,
        image_root: str | os.PathLike | None = None,
        file_identity: str = "content",
        prepare_workers: int = 0,
        progress: bool = True,
    ) -> None:
        cohort = as_cohort(cohort)
        if kind not in IMAGE_KINDS:
            raise ValueError(
                f"kind must be one of {', '.join(map(repr, IMAGE_KINDS))}; got {kind!r}"
            )
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if file_identity not in _FILE_IDENTITIES:
            raise ValueError(f"file_identity must be 'content' or 'stat', got {file_identity!r}")
        if seed is not None and (
            isinstance(seed, (bool, np.bool_))
            or not isinstance(seed, (int, np.integer))
            or seed < 0
        ):
            raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
        if (
            isinstance(prepare_workers, (bool, np.bool_))
            or not isinstance(prepare_workers, (int, np.integer))
            or prepare_workers < 0
        ):
            raise ValueError(
                f"prepare_workers must be a non-negative integer, got {prepare_workers!r}"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.kind = kind
        self.on_error = on_error
        self.seed = None if seed is None else int(seed)
        self.epoch = 0
        self.transform = _default_eval_transform(kind) if transform is None else transform
        self.file_identity = file_identity
        self.size = _check_size(size, kind)
        df = cohort.df
        self.image_column = DEFAULT_IMAGE_COLUMNS[kind] if image_column is None else image_column
        if self.image_column not in df.columns:
            hint = f"; image columns of the cohort: {list(cohort.image_cols)}"
            raise ValueError(
                f"image column {self.image_column!r} is not in the table{hint}; name it with "
                "image_column="
            )
        if image_root is None:
            image_root = getattr(cohort, "image_root", None)
        self.image_root = None if image_root is None else Path(image_root)

        # Options of the deterministic preprocessing (all part of the cache keys).
        if kind == "drr":
            self.views = _check_views(views)
            self.window = _check_window(window)
            self.ct_spacing = _check_positive("ct_spacing", ct_spacing, allow_none=True)
            self.render_options = dict(render_options or {})
            clash = {"views", "size", "window"} & set(self.render_options)
            if clash:
                raise ValueError(
                    f"render_options must not repeat {sorted(clash)}: use the arguments"
                )
            try:
                json.dumps(_key_options(self.render_options))
            except TypeError as err:
                raise ValueError(f"render_options must be JSON-serialisable ({err})") from err
        else:
            number = isinstance(margin, (int, float, np.integer, np.floating)) and not (
                isinstance(margin, (bool, np.bool_))
            )
            if not (number and math.isfinite(float(margin)) and float(margin) >= 0):
                raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
            self.margin = float(margin)
            if patch_mapping not in _PATCH_MAPPINGS:
                raise ValueError(
                    f"patch_mapping must be one of {', '.join(map(repr, _PATCH_MAPPINGS))}; "
                    f"got {patch_mapping!r}"
                )
            self.patch_mapping = patch_mapping
            if radiograph_normalisation not in _NORMALISATIONS:
                raise ValueError(
                    "radiograph_normalisation must be 'zscore' or None, got "
                    f"{radiograph_normalisation!r}"
                )
            self.radiograph_normalisation = radiograph_normalisation

        # Rows: ids, outcome, paths.
        n = len(df)
        self._labels = df.index
        self._ids = pd.Index(cohort.ids)
        self._paths = [None if _is_missing(v) else str(v) for v in df[self.image_column]]
        self._time_all = cohort.time
        self._code_all = cohort.event
        failures: dict[int, ImageFailure] = {}

        # Keypoints from the table (validated here, before any image is read).
        self.keypoint_columns: tuple[str, ...] = ()
        self._manifest: list[np.ndarray | None] = [None] * n
        if kind == "patches":
            self._read_manifest_keypoints(df, keypoint_columns, failures)
        self._detector_spec = detector
        self._detector_model = None
        self._detector_digest = None

        # Covariates: validated at the boundary, before the (possibly long) preparation.
        columns = self._covariate_columns(cohort, covariates, preprocessor)
        if columns and preprocessor is None:
            TabularPreprocessor(columns).fit(df)  # fails now, not after preparing, if it must

        # Caches.
        root = None if cache_dir is None else Path(cache_dir)
        self.cache_dir = root
        self._drr_cache = DRRCache(root / "drr") if (root is not None and kind == "drr") else None
        self._links = None if root is None else root / "drr_index"
        self._store = None if root is None else _TensorStore(root / kind)
        self._keypoint_store = _TensorStore(None if root is None else root / "keypoints")

        self._files: dict[int, str] = {}
        self._memory: dict[int, torch.Tensor] = {}
        self.cache_info = {
            "rows": n,
            "from_cache": 0,
            "loaded": 0,
            "rendered": 0,
            "detected": 0,
            "cut": 0,
            "skipped": 0,
        }
        self._prepare(failures, int(prepare_workers), progress=bool(progress))

        kept = [p for p in range(n) if p not in failures]
        self.failures = [failures[p] for p in sorted(failures)]
        self.cache_info["skipped"] = len(self.failures)
        if self.failures:
            shown = "; ".join(f.describe() for f in self.failures[:3])
            more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
            warnings.warn(
                f"{len(self.failures)} of {n} rows left out of the {kind} dataset (see "
                f"dataset.failures / failure_report()): {shown}{more}",
                DataWarning,
                stacklevel=2,
            )
        if not kept:
            raise NoUsableImagesError(
                f"no usable row: all {n} rows of the cohort failed; see the warning above and "
                "the error's .failures",
                self.failures,
            )
        self._positions = np.asarray(kept, dtype=np.int64)
        self.time = self._time_all[self._positions]
        self.event_code = self._code_all[self._positions]
        self.event = (self.event_code == _EVENT_OF_INTEREST).astype(np.int64)
        self.row_labels = self._labels[self._positions]
        self.patient_ids = self._ids[self._positions]

        # Covariates of the kept rows.
        kept_df = df.iloc[self._positions]
        if columns:
            if preprocessor is None:
                preprocessor = TabularPreprocessor(columns).fit(kept_df)
            self.preprocessor = preprocessor
            self.covariate_names = list(preprocessor.feature_names_)
            matrix = preprocessor.transform(kept_df).astype(np.float32)
        else:
            self.preprocessor = None
            self.covariate_names = []
            matrix = np.zeros((len(kept), 0), dtype=np.float32)
        self._covariates = np.ascontiguousarray(matrix)

    # ------------------------------------------------------------------ setup helpers
    def _covariate_columns(self, cohort, covariates, preprocessor) -> list[str]:
        if preprocessor is not None:
            if not isinstance(preprocessor, TabularPreprocessor):
                raise TypeError(
                    "preprocessor must be a fitted fracrisk TabularPreprocessor, got "
                    f"{type(preprocessor).__name__}"
                )
            if getattr(preprocessor, "kinds_", None) is None:
                raise NotFittedError(
                    "preprocessor is not fitted; fit it on the training rows first (or pass "
                    "None to fit one on this dataset)"
                )
            if covariates is not None and list(covariates) != list(preprocessor.columns):
                raise ValueError(
                    f"covariates {list(covariates)} differ from the preprocessor's columns "
                    f"{list(preprocessor.columns)}"
                )
            columns = list(preprocessor.columns)
        elif covariates is None:
            columns = list(cohort.default_covariates)
        else:
            if isinstance(covariates, str):
                raise TypeError("covariates must be a sequence of column names, not a string")
            columns = list(covariates)
        if columns:
            cohort.check_covariates(columns)
        return columns

    def _read_manifest_keypoints(self, df, keypoint_columns, failures) -> None:
        if keypoint_columns is None:
            columns = (SPINE_KEYPOINTS_COLUMN,) if SPINE_KEYPOINTS_COLUMN in df.columns else ()
        elif isinstance(keypoint_columns, str):
            columns = (keypoint_columns,)
        else:
            columns = tuple(keypoint_columns)
        if columns and len(columns) not in (1, 2 * N_KEYPOINTS):
            raise ValueError(
                "keypoint_columns must be one column (40 numbers per row) or 40 numeric "
                f"columns (x, y of L1 AS, PS, PI, AI, ..., L5 AI), got {len(columns)} columns"
            )
        absent = [c for c in columns if c not in df.columns]
        if absent:
            raise ValueError(f"keypoint column(s) {absent} are not in the table")
        self.keypoint_columns = columns
        if not columns:
            return
        label = columns[0] if len(columns) == 1 else f"{columns[0]}..{columns[-1]}"
        problems = []
        values = df[list(columns)].to_numpy(dtype=object)
        for p, row in enumerate(values):
            cells = [None if _is_missing(v) else v for v in row]
            if all(c is None for c in cells):
                continue  # the detector will find them
            try:
                if any(c is None for c in cells):
                    raise ValueError(
                        f"{sum(c is None for c in cells)} of 40 coordinates are missing"
                    )
                self._manifest[p] = _parse_keypoints(cells[0] if len(cells) == 1 else cells)
            except ValueError as err:
                failure = ImageFailure(
                    self._labels[p], self._ids[p], label, str(self._paths[p]), str(err)
                )
                problems.append((p, failure))
        if problems and self.on_error == "raise":
            lines = "\n".join(f"  - {f.describe()}" for _, f in problems)
            raise ValueError(
                f"{len(problems)} row(s) with unusable keypoints (pass on_error='skip' to "
                f"leave them out):\n{lines}"
            )
        failures.update(problems)

    # ------------------------------------------------------------------ preparation
    def _prepare(self, failures: dict[int, ImageFailure], workers: int, progress: bool) -> None:
        todo = [p for p in range(len(self._paths)) if p not in failures]
        if self.kind == "patches" and any(self._manifest[p] is None for p in todo):
            self._detector()  # load and hash it here, once, before any worker starts
        if workers > 0 and len(todo) > 1:
            from torch.utils.data import DataLoader

            loader = DataLoader(
                _RowPreparer(self, todo),
                batch_size=None,
                num_workers=min(workers, len(todo)),
                collate_fn=_identity,
            )
            results = iter(loader)
        else:
            results = (self._prepare_row(p) for p in todo)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(
                results, total=len(todo), desc=f"preparing {self.kind}", unit="image", disable=None
            )
        first_failure = None
        for result in results:
            for name, count in (result.counts or {}).items():
                self.cache_info[name] += count
            if result.failure is not None:
                if self.on_error == "raise":
                    first_failure = first_failure or result.failure
                    if workers == 0:
                        break
                failures[result.position] = result.failure
                continue
            if result.tensor is not None:
                self._memory[result.position] = result.tensor
            else:
                self._files[result.position] = result.file
        if first_failure is not None:
            f = first_failure
            raise ImageReadError(
                f.path,
                f"{f.reason} (row {f.row!r}, patient_id {f.patient_id!r}, column {f.column!r}; "
                "pass on_error='skip' to leave such rows out)",
            )

    def _prepare_row(self, p: int) -> _Result:
        """Cache row ``p``'s image tensor; data problems are returned, never raised."""
        counts = {"from_cache": 0, "loaded": 0, "rendered": 0, "detected": 0, "cut": 0}
        path = self._paths[p]
        try:
            if path is None:
                raise _RowError(self.image_column, "no image path given (missing value)")
            resolved = Path(path)
            if self.image_root is not None and not resolved.is_absolute():
                resolved = self.image_root / resolved
            try:
                identity = _file_identity(resolved, path, self.file_identity)
                if self.kind == "drr":
                    file, tensor = self._prepare_drr(resolved, path, identity, counts)
                else:
                    file, tensor = self._prepare_patches(p, resolved, path, identity, counts)
            except ImageReadError as err:
                raise _RowError(self.image_column, err.reason) from err
        except _RowError as err:
            failure = ImageFailure(self._labels[p], self._ids[p], err.column, str(path), err.reason)
            return _Result(p, failure=failure, counts=counts)
        return _Result(p, file=file, tensor=tensor, counts=counts)

    def _drr_options(self) -> dict:
        return {
            "views": self.views,
            "size": self.size,
            "window": self.window,
            **self.render_options,
        }

    def _prepare_drr(self, resolved: Path, source: str, identity: str, counts: dict):
        options = self._drr_options()
        if self._drr_cache is None:  # memory: render and keep
            ct = _io.load_ct(resolved, spacing=self.ct_spacing)
            counts["loaded"] += 1
            views = render_drr(ct.volume_hu, ct.spacing, **options).detach().cpu()
            counts["rendered"] += 1
            return None, views.contiguous()
        # Disk: the file's key points to the DRRCache entry, so a warm cache reads no CT.
        key = _key("drr", file=identity, ct_spacing=self.ct_spacing, options=_key_options(options))
        link = self._links / key[:2] / f"{key}.txt"
        target = _read_link(link)
        if target is not None and self._drr_cache.path_for(target).exists():
            counts["from_cache"] += 1
            return str(self._drr_cache.path_for(target)), None
        ct = _io.load_ct(resolved, spacing=self.ct_spacing)
        counts["loaded"] += 1
        target = drr_cache_key(ct.volume_hu, ct.spacing, **options)
        misses = self._drr_cache.misses
        self._drr_cache.render(ct.volume_hu, ct.spacing, **options)
        rendered = self._drr_cache.misses - misses
        counts["rendered"] += rendered
        counts["from_cache"] += 1 - rendered
        _write_link(link, target)
        return str(self._drr_cache.path_for(target)), None

    def _detector(self):
        """The keypoint detector (loaded once per process) and the digest of its weights."""
        if self._detector_model is None:
            spec = self._detector_spec
            if isinstance(spec, _keypoints.KeypointNet):
                model = spec
            else:
                model = _keypoints.load_keypoint_detector(spec)
            self._detector_model = model
            if self._detector_digest is None:
                self._detector_digest = _model_digest(model)
        return self._detector_model, self._detector_digest

    def _prepare_patches(self, p: int, resolved: Path, source: str, identity: str, counts):
        image = None
        keypoints = self._manifest[p]
        keypoint_column = "|".join(self.keypoint_columns)
        if keypoints is None:
            keypoint_column = self.image_column
            model, model_digest = self._detector()
            kp_key = _key("keypoints", file=identity, detector=model_digest)
            cached = self._keypoint_store.get(kp_key, "keypoints")
            if cached is not None:
                keypoints = cached.numpy().astype(np.float64)
            else:
                image = _io.load_radiograph(resolved).image
                counts["loaded"] += 1
                try:
                    keypoints = np.asarray(
                        _keypoints.detect_keypoints(model, image), dtype=np.float64
                    )
                except ValueError as err:
                    raise _RowError(self.image_column, f"keypoint detection failed: {err}") from err
                counts["detected"] += 1
                self._keypoint_store.put(kp_key, "keypoints", torch.from_numpy(keypoints))
        key = _key(
            "patches",
            file=identity,
            keypoints=keypoints.reshape(-1).tolist(),
            size=list(self.size),
            margin=self.margin,
            mapping=self.patch_mapping,
            normalisation=self.radiograph_normalisation,
        )
        if self._store is not None and self._store.path_for(key).exists():
            counts["from_cache"] += 1
            return str(self._store.path_for(key)), None
        if image is None:
            image = _io.load_radiograph(resolved).image
            counts["loaded"] += 1
        if self.radiograph_normalisation == "zscore":
            values = image.astype(np.float64)
            std = float(values.std())
            if not std > 0:
                raise _RowError(self.image_column, "the radiograph is constant (zero variance)")
            image = ((values - values.mean()) / std).astype(np.float32)
        try:
            patches = vertebral_patches(
                image, keypoints, size=self.size, margin=self.margin, transform=self.patch_mapping
            )[:, 0]
        except ValueError as err:
            raise _RowError(keypoint_column, f"keypoints unusable for patches: {err}") from err
        counts["cut"] += 1
        patches = patches.to(torch.float32).contiguous()
        if self._store is None:
            return None, patches
        return str(self._store.put(key, "patches", patches)), None

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self._positions)

    def _cached_image(self, p: int) -> torch.Tensor:
        if p in self._memory:
            return self._memory[p].clone()
        name = "views" if self.kind == "drr" else "patches"
        path = Path(self._files[p])
        tensor = _read_tensor(path, name) if path.exists() else None
        if tensor is None:
            # The cache file went away or is corrupt: make it again.
            path.unlink(missing_ok=True)
            result = self._prepare_row(p)
            if result.failure is not None:
                f = result.failure
                raise ImageReadError(
                    f.path, f"{f.reason} (row {f.row!r}, patient_id {f.patient_id!r})"
                )
            self._files[p] = result.file
            tensor = _read_tensor(Path(result.file), name)
            if tensor is None:  # pragma: no cover - a file that fails right after writing
                raise RuntimeError(f"cache file {result.file} cannot be read back")
        return tensor

    def _generator(self, p: int) -> torch.Generator:
        if self.seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
        else:
            sequence = np.random.SeedSequence([self.seed, self.epoch, p])
            seed = int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(2))
        return torch.Generator().manual_seed(seed)

    def __getitem__(self, index: int):
        """Item ``index``: ``(image, covariates, time, event)`` (see the class notes)."""
        n = len(self)
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        i = int(index) % n
        p = int(self._positions[i])
        image = self._cached_image(p)
        transform = self.transform
        if isinstance(transform, (Compose, RandomTransform)):
            generator = self._generator(p) if transform.is_random else None
            image = transform(image, generator=generator)
        else:
            image = transform(image)
        return (
            image,
            torch.from_numpy(self._covariates[i].copy()),
            torch.tensor(self.time[i], dtype=torch.float64),
            torch.tensor(self.event[i], dtype=torch.int64),
        )

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with ``seed``, selects the items' augmentation draws."""
        if isinstance(epoch, (bool, np.bool_)) or not isinstance(epoch, (int, np.integer)):
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        if epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ reporting
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of an item's image before the transform: ``(V, H, W)`` or ``(5, h, w)``."""
        channels = len(self.views) if self.kind == "drr" else len(VERTEBRAE)
        return (channels, *self.size)

    @property
    def image_options(self) -> dict:
        """What decides the images, as plain JSON values: kind, item shape and options.

        Models trained on this dataset keep it, so that a dataset built later for prediction
        can be checked to give the same kind of images (geometry, window, patch margin, ...).
        """
        options = {"kind": self.kind, "image_shape": list(self.image_shape)}
        if self.kind == "drr":
            options.update(
                views=list(self.views),
                window=None if self.window is None else list(self.window),
                ct_spacing=self.ct_spacing,
                render_options=_key_options(self.render_options),
            )
        else:
            options.update(
                margin=self.margin,
                patch_mapping=self.patch_mapping,
                radiograph_normalisation=self.radiograph_normalisation,
            )
        return json.loads(json.dumps(options))

    def failure_report(self) -> pd.DataFrame:
        """The rows left out: columns ``row``, ``patient_id``, ``column``, ``path``, ``reason``."""
        return failure_table(self.failures)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not isinstance(self._detector_spec, _keypoints.KeypointNet):
            state["_detector_model"] = None  # loaded again from its file when needed
        return state

    def __repr__(self) -> str:
        return (
            f"ImageCohortDataset(kind={self.kind!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, covariates={len(self.covariate_names)}, "
            f"events={int(self.event.sum())}, skipped={len(self.failures)}, "
            f"cache={'memory' if self.cache_dir is None else str(self.cache_dir)})"
        )


class _RowPreparer(Dataset):
    """Rows to prepare, as a dataset, so that DataLoader workers can share the work."""

    def __init__(self, dataset: ImageCohortDataset, positions: list[int]) -> None:
        self.dataset = dataset
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> _Result:
        return self.dataset._prepare_row(self.positions[i])
