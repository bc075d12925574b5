r"""A PyTorch dataset of images, covariates and outcome, one item per patient of a cohort.

:class:`ImageCohortDataset` turns a cohort table with image paths into training items
``(image, covariates, time, event)``:

* ``kind="drr"``: the hip CT of each row (NIfTI file or DICOM series, read by
  :func:`fracrisk.imaging.load_ct`, resampled to isotropic voxels) rendered to multi-view
  DRRs ``(V, H, W)`` by :func:`fracrisk.imaging.render_drr` (frontal, lateral, axial);
* ``kind="patches"``: the lateral spine radiograph of each row
  (:func:`fracrisk.imaging.load_radiograph`), its 20 vertebral-body corners (from the table,
  or found by the keypoint detector), and the L1-L5 patches ``(5, h, w)`` cut by
  :func:`fracrisk.imaging.vertebral_patches`;
* ``kind="volume"``: the hip CT of each row, read as for ``"drr"``, its field of view resized
  to a small grid ``(1, D, H, W)`` (:class:`fracrisk.imaging.pipeline.ResizeVolumed`), for
  3-D CNNs.

A thin composition
------------------
The dataset is three parts and the table's rows:

* a **pipeline** of dictionary transforms (:mod:`fracrisk.imaging.pipeline`): for a CT
  ``RenderDRRd`` (DRRs; it reads the CT itself) or ``LoadCTd -> ResizeVolumed`` (volume); for a
  radiograph ``DetectKeypointsd -> LoadRadiographd -> NormaliseRadiographd ->
  CutVertebralPatchesd``; then the random tail (``transform``);
* a **store** (:class:`fracrisk.imaging.store.TensorStore`) holding the pipeline's output
  up to the first random transform, as MONAI's ``PersistentDataset`` does;
* a **failure policy** (:class:`fracrisk.data.image_failures.FailurePolicy`): stop at a bad
  row, or skip it and report it.

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
* every option of every deterministic step (CT spacing, views, size, window and other
  render options; keypoints, patch size, margin, mapping and normalisation; the detector's
  weights).

The key is known before any image is read, so a warm cache reads no CT. Detected keypoints
are cached apart from the patches: changing the patch size does not re-run the detector.
Each DRR view is also cached on its own: a dataset of some of the views already rendered
(a single-view model after a three-view one) reads no CT either.
Layout: ``cache_dir/drr``, ``cache_dir/drr_views``, ``cache_dir/patches`` and
``cache_dir/keypoints``.

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

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from fracrisk.data.cohort import Cohort, as_cohort
from fracrisk.data.image_failures import FailurePolicy, ImageFailure, failure_table
from fracrisk.data.schema import DEFAULT_IMAGE_COLUMNS, SPINE_KEYPOINTS_COLUMN
from fracrisk.exceptions import NotFittedError
from fracrisk.imaging.anatomy import N_KEYPOINTS, VERTEBRA_CORNERS, VERTEBRAE
from fracrisk.imaging.drr import _check_size as _check_image_size
from fracrisk.imaging.drr import _check_views, _check_window
from fracrisk.imaging.io import ImageReadError
from fracrisk.imaging.patches import TRANSFORMS as _PATCH_MAPPINGS
from fracrisk.imaging.pipeline import (
    RADIOGRAPH_NORMALISATIONS,
    PersistentPipeline,
    Prepared,
    StepError,
    apply_transform,
    drr_pipeline,
    patch_pipeline,
    prepare_items,
    render_key_options,
    resolve_path,
    volume_pipeline,
)
from fracrisk.imaging.store import FILE_IDENTITIES, TensorStore, file_identity, read_tensor
from fracrisk.imaging.transforms import IMAGE_KINDS
from fracrisk.imaging.transforms import default_eval_transform as _default_eval_transform
from fracrisk.preprocessing import TabularPreprocessor

__all__ = ["ImageCohortDataset", "ImageFailure", "failure_table"]

_DEFAULT_SIZES = {"drr": (224, 224), "patches": (64, 64), "volume": (32, 48, 48)}
_STORED_NAME = {"drr": "views", "patches": "patches", "volume": "volume"}
_EVENT_OF_INTEREST = 1  # fracture (EVENT_CODES)
_KEYPOINT_SHAPE = (len(VERTEBRAE), len(VERTEBRA_CORNERS), 2)


# ------------------------------------------------------------------------------ dataset


class ImageCohortDataset(Dataset):
    r"""Items ``(image, covariates, time, event)`` for image-based survival models.

    Parameters
    ----------
    cohort : Cohort or pandas.DataFrame
        One row per patient, with ``time`` (years), ``event`` (0 censored, 1 fracture, 2
        death) and an image path column; a DataFrame is validated into a
        :class:`~fracrisk.data.Cohort`.
    kind : {"drr", "patches", "volume"}, default "drr"
        ``"drr"``: multi-view DRRs of a hip CT; ``"patches"``: L1-L5 patches of a lateral
        spine radiograph; ``"volume"``: the hip CT on a small 3-D grid (module docstring).
    image_column : str, optional
        Column of image paths; default ``"hip_ct_path"`` (``"drr"``, ``"volume"``) or
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
    targets : sequence of str, optional
        Dense targets (numeric columns, e.g. ``"femoral_neck_t_score"``) for auxiliary
        losses; items are then ``(image, covariates, targets, time, event)``, ``targets``
        float32 ``(k,)`` with NaN where the table has no value (masked by the loss).
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
    size : (int, int) or (int, int, int), optional
        Output image size ``(H, W)``: default (224, 224) for DRRs (resampled from the
        native projections), (64, 64) for patches; ``(D, H, W)`` for a volume, default
        (32, 48, 48) (about 3 x 2.7 x 2.7 mm voxels on the simulator's 96 x 128 x 128 mm
        hip CTs).
    window : (float, float), optional
        DRR window ``(lo, hi)`` in line-integral units (optical depth, dimensionless) mapped
        to [0, 1] and clipped. Default None: physical line integrals (about 0-4 on the
        simulator's hips), which keep the absolute attenuation -- the density signal. For a
        volume, an HU window; None: HU / 1000.
    ct_spacing : float or None, default 1.0
        Isotropic voxel size (mm) the CT is resampled to before rendering or resizing; None
        keeps the file's grid.
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
    confine_to_root : bool, optional
        Refuse rows whose image path, relative or absolute, resolves (symlinks followed)
        outside ``image_root``, or cannot be resolved (a symlink loop): they are bad rows
        (``on_error``) and never read. None (default): True when ``image_root`` is given
        here, False when it comes from the cohort.
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

    * ``image``: float32 ``(V, H, W)`` DRR views (``"drr"``), ``(5, h, w)`` patches L1..L5
      (``"patches"``; patch top = superior endplate, left = anterior) or ``(1, D, H, W)``
      (``"volume"``; axes z inferior -> superior, y, x);
    * ``covariates``: float32 ``(p,)``;
    * ``targets`` (only with ``targets=``): float32 ``(k,)``, NaN where missing;
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
        targets: Sequence[str] | None = None,
        transform: Callable | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_error: str = "raise",
        seed: int | None = None,
        views: Sequence[str] | str = ("frontal", "lateral", "axial"),
        size: tuple[int, ...] | None = None,
        window: tuple[float, float] | None = None,
        ct_spacing: float | None = 1.0,
        render_options: dict | None = None,
        margin: float = 0.15,
        patch_mapping: str = "affine",
        radiograph_normalisation: str | None = "zscore",
        keypoint_columns: str | Sequence[str] | None = None,
        detector=None,
        image_root: str | os.PathLike | None = None,
        confine_to_root: bool | None = None,
        file_identity: str = "content",
        prepare_workers: int = 0,
        progress: bool = True,
    ) -> None:
        cohort = as_cohort(cohort)
        if kind not in IMAGE_KINDS:
            raise ValueError(
                f"kind must be one of {', '.join(map(repr, IMAGE_KINDS))}; got {kind!r}"
            )
        policy = FailurePolicy(on_error)
        if file_identity not in FILE_IDENTITIES:
            raise ValueError(f"file_identity must be 'content' or 'stat', got {file_identity!r}")
        self.seed = _check_count("seed", seed, allow_none=True)
        workers = _check_count("prepare_workers", prepare_workers, allow_none=False)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.kind = kind
        self.on_error = on_error
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
        if confine_to_root not in (None, True, False):
            raise TypeError(f"confine_to_root must be True, False or None, got {confine_to_root!r}")
        self.confine_to_root = bool(
            image_root is not None if confine_to_root is None else confine_to_root
        )
        if image_root is None:
            image_root = getattr(cohort, "image_root", None)
        self.image_root = None if image_root is None else Path(image_root)
        if self.confine_to_root and self.image_root is None:
            raise ValueError("confine_to_root=True needs image_root: the folder to stay in")
        self._check_step_options(
            views,
            window,
            ct_spacing,
            render_options,
            margin,
            patch_mapping,
            radiograph_normalisation,
        )

        # Rows: ids, outcome, paths.
        n = len(df)
        self._labels = df.index
        self._ids = pd.Index(cohort.ids)
        self._paths = [None if _is_missing(v) else str(v) for v in df[self.image_column]]
        self._time_all = cohort.time
        self._code_all = cohort.event

        # Keypoints from the table (validated here, before any image is read).
        self.keypoint_columns: tuple[str, ...] = ()
        self._manifest: list[np.ndarray | None] = [None] * n
        if kind == "patches":
            self._read_manifest_keypoints(df, keypoint_columns, policy)

        # Covariates and dense targets: validated before the (possibly long) preparation.
        columns = self._covariate_columns(cohort, covariates, preprocessor)
        target_values = self._target_values(df, targets)
        if columns and preprocessor is None:
            TabularPreprocessor(columns).fit(df)  # fails now, not after preparing, if it must

        # Store and pipeline: the deterministic head is cached, the transform is the tail.
        root = None if cache_dir is None else Path(cache_dir)
        self.cache_dir = root
        self.pipeline = self._build_pipeline(root, detector)
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
        self._prepare(policy, workers, progress=bool(progress))
        self.failures = policy.finish(n, kind)
        self.cache_info["skipped"] = len(self.failures)

        kept = [p for p in range(n) if p not in policy.failures]
        self._positions = np.asarray(kept, dtype=np.int64)
        self.time = self._time_all[self._positions]
        self.event_code = self._code_all[self._positions]
        self.event = (self.event_code == _EVENT_OF_INTEREST).astype(np.int64)
        self.row_labels = self._labels[self._positions]
        self.patient_ids = self._ids[self._positions]

        # Covariates of the kept rows.
        kept_df = df.iloc[self._positions]
        if columns:
            fitted_here = preprocessor is None
            if fitted_here:
                preprocessor = TabularPreprocessor(columns).fit(kept_df)
            self.preprocessor = preprocessor
            self.covariate_names = list(preprocessor.feature_names_)
            # rows for a fitted model are checked against its training data
            matrix = preprocessor.transform(kept_df, warn=not fitted_here).astype(np.float32)
        else:
            self.preprocessor = None
            self.covariate_names = []
            matrix = np.zeros((len(kept), 0), dtype=np.float32)
        self._covariates = np.ascontiguousarray(matrix)
        self._targets = np.ascontiguousarray(target_values[self._positions])

    # ------------------------------------------------------------------ setup helpers
    def _target_values(self, df: pd.DataFrame, targets) -> np.ndarray:
        """The dense targets as float32 ``(n_rows, k)``, NaN where missing."""
        if targets is None:
            targets = ()
        if isinstance(targets, str):
            raise TypeError("targets must be a sequence of column names, not a string")
        self.target_names = [str(t) for t in targets]
        absent = [t for t in self.target_names if t not in df.columns]
        if absent:
            raise ValueError(f"target column(s) {absent} are not in the table")
        values = np.empty((len(df), len(self.target_names)), dtype=np.float32)
        for j, name in enumerate(self.target_names):
            column = pd.to_numeric(df[name], errors="coerce")
            bad = column.isna() & df[name].notna()
            if bad.any():
                rows = list(df.index[bad][:5])
                raise ValueError(
                    f"target column {name!r} must be numeric; rows {rows} hold "
                    f"{[df[name].loc[r] for r in rows]}"
                )
            finite = column.dropna()
            if not np.isfinite(finite.to_numpy(dtype=np.float64)).all():
                raise ValueError(f"target column {name!r} holds an infinite value")
            values[:, j] = column.to_numpy(dtype=np.float64)
        return values

    def _check_step_options(
        self, views, window, ct_spacing, render_options, margin, patch_mapping, normalisation
    ) -> None:
        """Check and keep the options of the deterministic steps (all part of the cache key)."""
        if self.kind == "volume":
            self.views = ()
            self.window = _check_window(window)
            self.ct_spacing = _check_positive("ct_spacing", ct_spacing, allow_none=True)
            self.render_options = {}
            return
        if self.kind == "drr":
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
                json.dumps(render_key_options(self.render_options))
            except TypeError as err:
                raise ValueError(f"render_options must be JSON-serialisable ({err})") from err
            return
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
        if normalisation not in RADIOGRAPH_NORMALISATIONS:
            raise ValueError(
                f"radiograph_normalisation must be 'zscore' or None, got {normalisation!r}"
            )
        self.radiograph_normalisation = normalisation

    def _build_pipeline(self, root: Path | None, detector) -> PersistentPipeline:
        store = TensorStore(None if root is None else root / self.kind)
        if self.kind == "volume":
            steps = volume_pipeline(ct_spacing=self.ct_spacing, size=self.size, window=self.window)
        elif self.kind == "drr":
            steps = drr_pipeline(
                ct_spacing=self.ct_spacing,
                views=self.views,
                size=self.size,
                window=self.window,
                render_options=self.render_options,
                view_store=TensorStore(None if root is None else root / "drr_views"),
            )
        else:
            steps = patch_pipeline(
                size=self.size,
                margin=self.margin,
                mapping=self.patch_mapping,
                normalisation=self.radiograph_normalisation,
                detector=detector,
                keypoint_store=TensorStore(None if root is None else root / "keypoints"),
            )
        return PersistentPipeline(steps, store, _STORED_NAME[self.kind])

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

    def _read_manifest_keypoints(self, df, keypoint_columns, policy: FailurePolicy) -> None:
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
                problems.append((p, self._failure(p, self._keypoint_label, str(err))))
        policy.refuse_table_problems(problems, "unusable keypoints")

    @property
    def _keypoint_label(self) -> str:
        columns = self.keypoint_columns
        return columns[0] if len(columns) == 1 else f"{columns[0]}..{columns[-1]}"

    def _failure(self, p: int, column: str, reason: str) -> ImageFailure:
        return ImageFailure(self._labels[p], self._ids[p], column, str(self._paths[p]), reason)

    # ------------------------------------------------------------------ preparation
    def _item(self, p: int) -> dict:
        """Row ``p`` as a pipeline item (the image is not read here)."""
        return {
            "path": resolve_path(self._paths[p], self.image_root),
            "source": self._paths[p],
            "identity_mode": self.file_identity,
            "keypoints": self._manifest[p],
            "counts": {},
        }

    def _escape_reason(self, source) -> str | None:
        """Why ``source`` may not be read under ``confine_to_root`` (None if it may)."""
        root = os.path.realpath(self.image_root)
        try:
            target = os.path.realpath(resolve_path(source, self.image_root), strict=True)
        except FileNotFoundError:
            return None  # reading it will report the missing file
        except OSError as err:  # e.g. a symlink loop
            return f"the path cannot be resolved ({err.strerror or err})"
        if os.path.commonpath([root, target]) != root:
            return (
                f"the path resolves outside the image root {root!r} (to {target!r}); pass "
                "confine_to_root=False to allow it"
            )
        return None

    def _row_failure(self, p: int, result: Prepared) -> ImageFailure:
        """The failure of row ``p``, naming the column at fault."""
        column = self.image_column
        if result.error.key == "keypoints" and self._manifest[p] is not None:
            column = self._keypoint_label  # the table's corners, not the detector's
        return self._failure(p, column, result.error.reason)

    def _prepare(self, policy: FailurePolicy, workers: int, progress: bool) -> None:
        todo = []
        for p in range(len(self._paths)):
            if p in policy.failures:
                continue
            reason = None
            if self._paths[p] is None:
                reason = "no image path given (missing value)"
            elif self.confine_to_root:
                reason = self._escape_reason(self._paths[p])
            if reason is not None:
                failure = self._failure(p, self.image_column, reason)
                if policy.stops:
                    policy.raise_first(failure)
                policy.add(p, failure)
                continue
            todo.append(p)
        if self.kind == "patches" and any(self._manifest[p] is None for p in todo):
            self.pipeline.head[0].ready()  # load and hash the detector once, before workers
        results = prepare_items(
            self.pipeline,
            [(p, self._item(p)) for p in todo],
            workers=workers,
            progress=progress,
            desc=f"preparing {self.kind}",
        )
        first_failure = None
        for result in results:
            for name, count in result.counts.items():
                self.cache_info[name] += count
            if result.error is not None:
                failure = self._row_failure(result.position, result)
                if policy.stops:
                    first_failure = first_failure or failure
                    if workers == 0:
                        break
                policy.add(result.position, failure)
                continue
            if result.tensor is not None:
                self._memory[result.position] = result.tensor
            else:
                self._files[result.position] = result.file
        if first_failure is not None:
            policy.raise_first(first_failure)

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self._positions)

    def _cached_image(self, p: int) -> torch.Tensor:
        if p in self._memory:
            return self._memory[p].clone()
        name = self.pipeline.name
        path = Path(self._files[p])
        tensor = read_tensor(path, name) if path.exists() else None
        if tensor is None:
            # The cache file went away or is corrupt: make it again.
            path.unlink(missing_ok=True)
            result = self.pipeline.prepare(p, self._item(p))
            if result.error is not None:
                f = self._row_failure(p, result)
                raise ImageReadError(
                    f.path, f"{f.reason} (row {f.row!r}, patient_id {f.patient_id!r})"
                )
            self._files[p] = result.file
            tensor = read_tensor(Path(result.file), name)
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
        random = getattr(self.transform, "is_random", False)
        image = apply_transform(self.transform, image, self._generator(p) if random else None)
        covariates = torch.from_numpy(self._covariates[i].copy())
        outcome = (
            torch.tensor(self.time[i], dtype=torch.float64),
            torch.tensor(self.event[i], dtype=torch.int64),
        )
        if self.target_names:
            return (image, covariates, torch.from_numpy(self._targets[i].copy()), *outcome)
        return (image, covariates, *outcome)

    def cache_file(self, index: int) -> str | None:
        """The cache file holding item ``index``'s prepared image (named by its content key).

        None when the dataset keeps its images in memory (no ``cache_dir``).
        """
        return self._files.get(int(self._positions[int(index)]))

    def keypoints(self, index: int) -> np.ndarray:
        """The ``(5, 4, 2)`` ``(x, y)`` pixel corners item ``index``'s patches were cut at.

        The table's corners where it gives them, else the detector's (from the keypoint
        cache when the dataset has a ``cache_dir``; otherwise detected again).
        """
        if self.kind != "patches":
            raise ValueError("keypoints exist for kind='patches' only")
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        p = int(self._positions[int(index) % n])
        if self._manifest[p] is not None:
            return np.asarray(self._manifest[p], dtype=np.float64).reshape(5, 4, 2)
        item = self._item(p)
        item["identity"] = file_identity(item["path"], item["source"], item["identity_mode"])
        try:
            item = self.pipeline.head[0](item)
        except (StepError, ImageReadError) as err:
            reason = getattr(err, "reason", str(err))
            raise ImageReadError(
                str(self._paths[p]),
                f"{reason} (row {self._labels[p]!r}, patient_id {self._ids[p]!r})",
            ) from err
        return np.asarray(item["keypoints"], dtype=np.float64).reshape(5, 4, 2)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with ``seed``, selects the items' augmentation draws."""
        self.epoch = _check_count("epoch", epoch, allow_none=False)

    # ------------------------------------------------------------------ reporting
    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of an item's image before the transform.

        ``(V, H, W)`` DRRs, ``(5, h, w)`` patches or ``(1, D, H, W)`` a volume.
        """
        if self.kind == "drr":  # only DRR datasets have views
            channels = len(self.views)
        elif self.kind == "patches":
            channels = len(VERTEBRAE)
        else:
            channels = 1
        return (channels, *self.size)

    @property
    def image_options(self) -> dict:
        """What decides the images, as plain JSON values: kind, item shape and options.

        Models trained on this dataset keep it, so that a dataset built later for prediction
        can be checked to give the same kind of images (geometry, window, patch margin, ...).
        """
        options = {"kind": self.kind, "image_shape": list(self.image_shape)}
        if self.kind == "volume":
            options.update(
                window=None if self.window is None else list(self.window),
                ct_spacing=self.ct_spacing,
            )
        elif self.kind == "drr":
            options.update(
                views=list(self.views),
                window=None if self.window is None else list(self.window),
                ct_spacing=self.ct_spacing,
                render_options=render_key_options(self.render_options),
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

    def __repr__(self) -> str:
        return (
            f"ImageCohortDataset(kind={self.kind!r}, n={len(self)}, "
            f"image_shape={self.image_shape}, covariates={len(self.covariate_names)}, "
            f"events={int(self.event.sum())}, skipped={len(self.failures)}, "
            f"cache={'memory' if self.cache_dir is None else str(self.cache_dir)})"
        )


# ------------------------------------------------------------------------------ checks


def _check_count(name: str, value, *, allow_none: bool) -> int | None:
    """A non-negative integer (not a bool), or None where allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}a non-negative integer, got {value!r}")
    if value < 0:
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}a non-negative integer, got {value!r}")
    return int(value)


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
    """The kind's default size, or ``size`` checked: ``(H, W)``, or ``(D, H, W)`` for a volume."""
    if size is None:
        return _DEFAULT_SIZES[kind]
    if kind != "volume":
        return _check_image_size(size)
    try:
        dims = tuple(size)
        ok = len(dims) == 3 and all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 2 for n in dims
        )
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"size of a volume must be three integers (D, H, W) >= 2, got {size!r}")
    return tuple(int(n) for n in dims)


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
