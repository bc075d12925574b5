r"""Image survival model: an image encoder and the clinical covariates into a survival head.

:class:`ImageSurvivalModel` is the estimator around :class:`fracrisk.encoders.FusionSurvivalNet`:
it trains the network on an :class:`~fracrisk.data.ImageCohortDataset` with its head's loss
(the mini-batch Cox partial likelihood by default), fits what turns the outputs into curves on
the training patients (a Breslow baseline, or the head's own grid), and predicts survival
curves and, with an absolute-risk head, cumulative incidences like :class:`~fracrisk.DeepSurv`
does for tabular data.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from fracrisk._params import InstanceOf, Interval, Options
from fracrisk.data.cohort import Cohort
from fracrisk.data.image_dataset import ImageCohortDataset
from fracrisk.data.image_failures import ImageFailure
from fracrisk.discrete_time import fit_time_grid
from fracrisk.exceptions import DataWarning, NoUsableImagesError
from fracrisk.heads import head_class
from fracrisk.imaging.transforms import default_eval_transform, default_train_transform
from fracrisk.models._base import HeadRiskType, OutputCurves, SurvivalModel, _prefixed
from fracrisk.models.deepsurv import HEADS
from fracrisk.preprocessing import TabularPreprocessor
from fracrisk.training.config import TRAINING_CONSTRAINTS, TrainingConfig, resolve_accelerator

__all__ = ["AUXILIARY_RIDGE_ALPHAS", "ImageSurvivalModel"]

#: Ridge penalties tried by the closed-form refit of a numeric auxiliary layer
#: (``auxiliary_refit="ridge"``), on the embedding as the encoder gives it.
AUXILIARY_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class _WithEventCodes(torch.utils.data.Dataset):
    """Items of ``dataset`` with the raw event codes (0, 1 fracture, 2 death) as the event.

    The absolute-risk heads need to see death; an :class:`ImageCohortDataset` item's
    event is 1 for fracture and 0 otherwise.
    """

    def __init__(self, dataset, codes: np.ndarray) -> None:
        if len(codes) != len(dataset):
            raise ValueError(f"{len(codes)} event codes for {len(dataset)} items")
        self.dataset, self.codes = dataset, np.asarray(codes, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return (*item[:-1], torch.tensor(self.codes[index], dtype=torch.int64))


def _codes_of(data) -> np.ndarray:
    """Raw event codes of an ImageCohortDataset or a Subset of one, item by item."""
    if isinstance(data, Subset):
        return _codes_of(data.dataset)[np.asarray(data.indices, dtype=np.int64)]
    return np.asarray(data.event_code)


#: The image kind each registered encoder reads.
_ENCODER_KIND = {"multiview_drr": "drr", "vertebral_patches": "patches", "ct_volume": "volume"}


def _dataset_options(image_config: dict) -> dict:
    """``ImageCohortDataset`` options that make images like those of ``image_config``."""
    options = {k: v for k, v in image_config.items() if k not in ("kind", "image_shape")}
    options["size"] = tuple(image_config["image_shape"][1:])
    if options.get("window") is not None:
        options["window"] = tuple(options["window"])
    return options


def _without_weights(kwargs: dict) -> dict:
    """Encoder options without a local backbone weights file (a loaded model has its own)."""
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("backbone_kwargs"), dict):
        kwargs["backbone_kwargs"] = {
            k: v for k, v in kwargs["backbone_kwargs"].items() if k != "weights"
        }
    return kwargs


def _without_augmentation(data: ImageCohortDataset, *, targets: bool = True) -> ImageCohortDataset:
    """The same items with the deterministic evaluation transform (a shallow copy).

    ``targets=False`` also leaves the dense targets out of the items (for prediction).
    """
    view = copy.copy(data)
    view.transform = default_eval_transform(data.kind)
    if not targets:
        view.target_names = []
    return view


def _target_scaling(
    data: ImageCohortDataset, rows: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of each auxiliary target over the training rows that have it.

    A categorical target gets (0, 1); its values must all be class codes ``0..C-1``.
    """
    values = data._targets[rows].astype(np.float64)
    mean, scale = [], []
    for j, name in enumerate(data.target_names):
        if classes[j]:
            column = data._targets[:, j].astype(np.float64)
            bad = np.isfinite(column) & ~np.isin(column, np.arange(classes[j]))
            if bad.any():
                labels = list(data.row_labels[np.flatnonzero(bad)[:5]])
                raise ValueError(
                    f"auxiliary target {name!r} is categorical with {classes[j]} classes "
                    f"(codes 0..{classes[j] - 1}); rows {labels} hold other values "
                    f"(e.g. {column[bad][0]:g})"
                )
            mean.append(0.0)
            scale.append(1.0)
            continue
        known = values[np.isfinite(values[:, j]), j]
        if known.size < 2 or not known.std() > 0:
            raise ValueError(
                f"auxiliary target {name!r} needs at least two different values among the "
                f"training patients; it has {known.size} value(s)"
            )
        mean.append(known.mean())
        scale.append(known.std())
    return np.asarray(mean), np.asarray(scale)


def _r2(target: np.ndarray, predicted: np.ndarray) -> float | None:
    """:math:`R^2` of a prediction over the rows with a finite target (None if under 2)."""
    known = np.isfinite(target)
    if known.sum() < 2 or not target[known].std() > 0:
        return None
    residual = ((target[known] - predicted[known]) ** 2).sum()
    return float(1 - residual / ((target[known] - target[known].mean()) ** 2).sum())


def _stratified_split(event: np.ndarray, fraction: float, seed: int):
    """Positions of a training and a validation part, each with its share of the events."""
    rng = np.random.default_rng(seed)
    val = []
    for value in (0, 1):
        rows = np.flatnonzero(event == value)
        rng.shuffle(rows)
        val.append(rows[: int(round(fraction * len(rows)))])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(event)), val), val


class ImageSurvivalModel(SurvivalModel, name="image_survival"):
    r"""Survival model whose head reads images and clinical covariates (Cox by default).

    .. math::
        h(t \mid \text{images}, x) = h_0(t)\,\exp\!\big(\eta\big), \qquad
        \eta = h_\theta\big([\,g_\phi(\text{images}),\ x\,]\big),

    with :math:`g_\phi` an image encoder (the multi-view DRR encoder of Kim et al. 2024,
    the vertebral-patch encoder of Kong et al. 2022, or any module with
    ``num_features``), :math:`x` the preprocessed covariates and :math:`h_\theta` a head
    from :func:`fracrisk.heads.create_head`, trained end to end by the Lightning engine
    (:mod:`fracrisk.training`) on the mini-batch Cox partial likelihood. Part of the
    training patients (stratified by event) drives early stopping unless a validation
    set is given. The Breslow baseline hazard :math:`h_0` is estimated on all training
    patients, so the model gives survival curves. Death is censoring: the risk is
    cause-specific.

    With an absolute-risk ``head`` (``"cause_specific"``, ``"deephit"``, ``"pmf"``,
    ``"logistic_hazard"``; as :class:`~fracrisk.DeepSurv`) the network is trained on that
    head's loss with death competing, and the model gives cumulative incidences
    (:meth:`predict_cumulative_incidence`; ``risk_type == "absolute"``).

    Parameters
    ----------
    encoder : str or torch.nn.Module, default "vertebral_patches"
        A registered encoder name (:func:`fracrisk.encoders.list_encoders`) or a built
        encoder module. A module built by :func:`~fracrisk.encoders.create_encoder`
        can be saved; another module trains and predicts but ``save`` refuses it.
    encoder_kwargs : dict, optional
        Options of a named encoder (e.g. ``{"backbone": "resnet18", "pooling": "mean"}``;
        ``{"backbone_kwargs": {"weights": "my_resnet18.safetensors"}}`` starts the
        backbone from a local weights file). For ``"multiview_drr"`` the images' views are
        passed unless given here.
    image_options : dict, optional
        How to make the images of a :class:`~fracrisk.data.Cohort` passed to ``fit`` or
        ``predict_*``: ``kind`` (``"drr"``, ``"patches"`` or ``"volume"``; by default the
        encoder's) and any option of :class:`~fracrisk.data.ImageCohortDataset` (``image_column``,
        ``covariates``, ``cache_dir``, ``size``, ``views``, ``window``, ...).
    augment : bool, default True
        Augment the training images (:func:`~fracrisk.imaging.default_train_transform`)
        when ``fit`` builds the dataset from a cohort.
    head : str, default "deepsurv"
        Head name: ``"deepsurv"`` or ``"cox_linear"`` (Cox, cause-specific), or
        ``"cause_specific"``, ``"deephit"``, ``"pmf"``, ``"logistic_hazard"`` (death
        competing, absolute risk; end-to-end training only).
    n_intervals : int, default 20
        Intervals of the time grid of the discrete-time heads.
    head_kwargs : dict, optional
        Options of the head (e.g. ``{"hidden": [32], "dropout": 0.2}``).
    covariate_dropout : float, default 0.0
        Dropout on each covariate in training (see
        :class:`~fracrisk.encoders.FusionSurvivalNet`).
    auxiliary : dict of str to float, optional
        Dense supervision: target column -> loss weight, e.g.
        ``{"femoral_neck_t_score": 1.0}`` (the DXA T-score that real cohorts hold for part
        of their patients). Each target is predicted from the image embedding alone and its
        squared error in training-SD units, averaged over the patients who have a value
        (missing ones are masked), is added to the Cox loss with its weight
        (:func:`fracrisk.losses.auxiliary_loss`). Predictions: :meth:`predict_auxiliary`.
        None (default): the Cox loss alone.
    auxiliary_classes : dict of str to int, optional
        The auxiliary targets that are categorical: column -> number of classes, coded
        ``0..C-1`` (e.g. ``{"genant_L1": 4}`` for a Genant grade 0-3 of each vertebra). Such
        a target is trained with the cross-entropy of its ``C`` logits instead of a squared
        error; :meth:`predict_auxiliary` gives its expected class (what stage 2 of a
        two-stage model reads) and :meth:`predict_auxiliary_proba` its class
        probabilities. A value that is not a code ``0..C-1`` is an error naming its rows.
        None (default): every target numeric.
    training : {"auto", "end_to_end", "two_stage"}, default "auto"
        ``"end_to_end"``: the network is trained on the Cox loss (plus the auxiliary
        losses). ``"auto"``: ``"two_stage"`` when ``auxiliary`` names dense targets, else
        ``"end_to_end"`` (on ``benchmarks/image_signal.py``, kong2022 at 3,000 patients,
        the two-stage CNN reached Harrell C 0.715 against 0.685 for Cox with DXA BMD; a
        small CNN trained end to end on that design, with and without an auxiliary loss,
        had reached 0.687-0.695 when issue 11 was filed; ``benchmarks/RESULTS.md``).
        ``"two_stage"`` (needs ``auxiliary``):
        stage 1 trains the encoder and its
        auxiliary heads on the dense targets alone (early stopping on ``val_aux_loss``);
        stage 2 is a ridge-penalised Cox model (:class:`~fracrisk.CoxPH`) on the
        preprocessed covariates (``cov_<name>``) plus the stage-1 predictions
        (``image_<target>``), fitted on every training patient; its log hazard is the
        model's. With few events a Cox head learns little from an image embedding; a
        handful of supervised image measurements (the T-score, a deformity grade) it can
        use.
    auxiliary_refit : {"ridge", "none"}, default "ridge"
        Two-stage models: after stage 1, ``"ridge"`` refits the linear layer of each numeric
        target in closed form, a ridge regression of the target (training-SD units) on the
        stage-1 embedding of the training patients who have a value, its penalty chosen
        from :data:`AUXILIARY_RIDGE_ALPHAS` by leave-one-out error
        (:class:`sklearn.linear_model.RidgeCV`). Stage 2 and :meth:`predict_auxiliary` then
        read the refitted layer. SGD leaves that layer short of its optimum: on a kim2024
        simulation that is neither benchmark cohort (1,000 patients, 6 epochs,
        ``benchmarks/probe_drr_t_score.py``) the DRR CNN's trained layer gave the T-score
        with validation R² 0.73-0.76, a ridge on the same embedding 0.80, and 0.90 with
        ``intensity_quantiles``; on ``benchmarks/image_signal.py``'s kim2024 cohorts (3,000
        training patients, 3,000 test) the refit with quantiles gave 0.914 against 0.727.
        Categorical targets keep their trained layer.
        ``"none"``: the layer as trained.
    stage_two_penalizer : float or "cv", default "cv"
        Ridge penalty of stage 2; ``"cv"`` chooses from
        :data:`~fracrisk.models.coxph.PENALTY_GRID` by 5-fold cross-validated partial
        likelihood on the training patients.
    learning_rate : float, default 3e-4
        AdamW step size.
    weight_decay : float, default 1e-4
        AdamW weight decay.
    batch_size : int, default 32
        Patients per global mini-batch (each is a risk set: larger is better).
    max_epochs : int, default 30
        Upper bound on epochs.
    patience : int, default 5
        Early-stopping patience in epochs.
    validation_fraction : float, default 0.2
        Share of the training patients held out for early stopping when ``fit`` gets no
        validation data; 0 trains for ``max_epochs``.
    num_workers : int, default 0
        DataLoader worker processes.
    early_stopping, lr_schedule, gradient_clip_val, ties, accelerator, devices, strategy, \
num_nodes, precision, checkpoint_dir, logger, seed, progress
        The training run, as in :class:`~fracrisk.DeepSurv`.

    Attributes
    ----------
    network_ : FusionSurvivalNet
    baseline_hazard_ : BreslowBaselineHazard
    preprocessor_ : TabularPreprocessor or None
        The covariate preprocessing of the training dataset; prediction datasets use it.
    image_config_ : dict
        The training images' options (kind, item shape, views, geometry, window, patch
        options), checked at prediction.
    history_ : TrainingHistory
    training_ : str
        ``"end_to_end"`` or ``"two_stage"``: how it was trained.
    cox_ : CoxPH
        Stage 2 of a two-stage model.
    auxiliary_ridge_alpha_ : dict
        Two-stage models with ``auxiliary_refit="ridge"``: per refitted numeric target, the
        chosen ridge penalty.
    auxiliary_r2_ : dict
        Two-stage models: per target, the :math:`R^2` of the stage-1 prediction on the
        training and the early-stopping patients (``{"train": ..., "validation": ...}``).
    skipped_images_ : list of ImageFailure
        Training rows left out because their image could not be used (with
        ``image_options={"on_error": "skip"}``): row, patient, column, file and reason.
        Prediction never leaves a row out: a cohort's unusable image is an error there (a
        prepared :class:`~fracrisk.data.ImageCohortDataset` is predicted as it is, by
        patient id).

    Examples
    --------
    .. code-block:: python

        model = ImageSurvivalModel(
            "vertebral_patches",
            image_options={"image_column": "spine_xray_path", "cache_dir": "cache"},
        ).fit(train_cohort)
        model.predict_survival(test_cohort, times=[1, 3, 5])  # patients x years
    """

    _fitted_attribute = "curves_"
    risk_type = HeadRiskType()
    input_kind = "images"
    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "encoder": [InstanceOf(str, nn.Module, description="an encoder name or module")],
        "encoder_kwargs": [None, InstanceOf(dict)],
        "image_options": [None, InstanceOf(dict)],
        "augment": [Options(True, False)],
        "head": [Options(*HEADS)],
        "n_intervals": [Interval(int, 1, None)],
        "head_kwargs": [None, InstanceOf(dict)],
        "covariate_dropout": [Interval(float, 0, 1, closed="left")],
        "auxiliary": [None, InstanceOf(dict)],
        "auxiliary_classes": [None, InstanceOf(dict)],
        "training": [Options("auto", "end_to_end", "two_stage")],
        "auxiliary_refit": [Options("ridge", "none")],
        "stage_two_penalizer": [Options("cv"), Interval(float, 0, None)],
        "validation_fraction": [Interval(float, 0, 1, closed="left")],
    }

    def __init__(
        self,
        encoder: str | nn.Module = "vertebral_patches",
        encoder_kwargs: dict | None = None,
        *,
        image_options: dict | None = None,
        augment: bool = True,
        head: str = "deepsurv",
        head_kwargs: dict | None = None,
        n_intervals: int = 20,
        covariate_dropout: float = 0.0,
        auxiliary: dict | None = None,
        auxiliary_classes: dict | None = None,
        training: str = "auto",
        auxiliary_refit: str = "ridge",
        stage_two_penalizer: float | str = "cv",
        learning_rate: float = 3e-4,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int = 30,
        patience: int = 5,
        validation_fraction: float = 0.2,
        early_stopping: str | None = "val_loss",
        lr_schedule: str = "constant",
        gradient_clip_val: float | None = None,
        ties: str = "efron",
        num_workers: int = 0,
        accelerator: str = "auto",
        devices: int | str | Sequence[int] = "auto",
        strategy: str = "auto",
        num_nodes: int = 1,
        precision: str | None = None,
        checkpoint_dir: str | None = None,
        logger: str | None = "csv",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.encoder, self.encoder_kwargs = encoder, encoder_kwargs
        self.image_options, self.augment = image_options, augment
        self.head, self.head_kwargs, self.n_intervals = head, head_kwargs, n_intervals
        self.covariate_dropout = covariate_dropout
        self.auxiliary, self.auxiliary_classes = auxiliary, auxiliary_classes
        self.training, self.stage_two_penalizer = training, stage_two_penalizer
        self.auxiliary_refit = auxiliary_refit
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.validation_fraction, self.early_stopping = validation_fraction, early_stopping
        self.lr_schedule, self.gradient_clip_val, self.ties = lr_schedule, gradient_clip_val, ties
        self.num_workers = num_workers
        self.accelerator, self.devices, self.strategy = accelerator, devices, strategy
        self.num_nodes, self.precision = num_nodes, precision
        self.checkpoint_dir, self.logger = checkpoint_dir, logger
        self.seed, self.progress = seed, progress

    @classmethod
    def _test_params(cls) -> dict:
        return {
            "encoder": "multiview_drr",
            "encoder_kwargs": {"backbone": "resnet10t", "shared_backbone": True},
            "image_options": {"size": (32, 32)},
            "head_kwargs": {"hidden": [8], "dropout": 0.0},
            "max_epochs": 2,
            "batch_size": 16,
            "accelerator": "cpu",
        }

    def _validate_params(self) -> None:
        super()._validate_params()
        from fracrisk.encoders import list_encoders

        if isinstance(self.encoder, str) and self.encoder not in list_encoders():
            raise ValueError(
                f"unknown encoder {self.encoder!r}; registered encoders: "
                f"{', '.join(list_encoders())}, or pass a built torch.nn.Module"
            )
        for name, weight in (self.auxiliary or {}).items():
            number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
            if not isinstance(name, str) or not number or not weight >= 0:
                raise ValueError(
                    "ImageSurvivalModel: auxiliary must map target column names to weights "
                    f">= 0, e.g. {{'femoral_neck_t_score': 1.0}}; got {name!r}: {weight!r}"
                )
        for name, classes in (self.auxiliary_classes or {}).items():
            if name not in (self.auxiliary or {}):
                raise ValueError(
                    f"ImageSurvivalModel: auxiliary_classes names {name!r}, which is not an "
                    f"auxiliary target ({sorted(self.auxiliary or {})})"
                )
            if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
                raise ValueError(
                    "ImageSurvivalModel: auxiliary_classes maps a target to its number of "
                    f"classes (an integer >= 2, codes 0..C-1); got {name!r}: {classes!r}"
                )
        if self.training == "two_stage" and not self.auxiliary:
            raise ValueError(
                "ImageSurvivalModel: training='two_stage' trains the encoder on dense targets "
                "first; name them with auxiliary={column: weight}, e.g. "
                "{'femoral_neck_t_score': 1.0}"
            )
        if head_class(self.head).risk_type == "absolute" and (
            self.training == "two_stage" or (self.training == "auto" and self.auxiliary)
        ):
            raise ValueError(
                f"ImageSurvivalModel: head={self.head!r} gives absolute risk end to end; "
                "two-stage training fits a cause-specific Cox model in stage 2. Pass "
                "training='end_to_end' (the auxiliary losses still train with it)"
            )
        if isinstance(self.encoder, nn.Module) and not hasattr(self.encoder, "num_features"):
            raise ValueError(
                f"the encoder module ({type(self.encoder).__name__}) has no num_features: the "
                "size of the embedding it returns"
            )

    # ------------------------------------------------------------------ images
    def _encoder_name(self) -> str | None:
        if isinstance(self.encoder, str):
            return self.encoder
        config = getattr(self.encoder, "registry_config", None)
        return None if config is None else config["name"]

    def _image_kind(self) -> str:
        options = dict(self.image_options or {})
        if "kind" in options:
            return options["kind"]
        name = self._encoder_name()
        if name in _ENCODER_KIND:
            return _ENCODER_KIND[name]
        raise ValueError(
            "image_options needs 'kind' ('drr', 'patches' or 'volume'): which images the encoder "
            f"{type(self.encoder).__name__} reads"
        )

    def _make_dataset(
        self, data, *, training: bool, targets: bool | None = None
    ) -> ImageCohortDataset:
        """A dataset of a cohort, with the held image options (and, after fit, preprocessing)."""
        if isinstance(data, ImageCohortDataset):
            return data
        if not isinstance(data, (Cohort, pd.DataFrame)):
            raise TypeError(
                "data must be a Cohort, a DataFrame or an ImageCohortDataset, got "
                f"{type(data).__name__}"
            )
        options = {k: v for k, v in (self.image_options or {}).items() if k != "kind"}
        options.setdefault("progress", bool(self.progress))
        kind = self._image_kind() if training else self.image_config_["kind"]
        if training:
            if self.augment:
                options["transform"] = default_train_transform(kind, seed=self.seed)
            targets = bool(self.auxiliary) if targets is None else targets
        else:
            # The training images decide how these are made (size, views, geometry, ...).
            options = {**_dataset_options(self.image_config_), **options}
            options.pop("covariates", None)  # the preprocessor names them
            options["preprocessor"] = self.preprocessor_
            options["on_error"] = "raise"  # a prediction per row asked for, or an error
            if self.preprocessor_ is None:
                options["covariates"] = []  # trained on images alone
        if targets:
            options["targets"] = list(self.auxiliary)
        return ImageCohortDataset(data, kind, **options)

    # ------------------------------------------------------------------ building
    @property
    def _head_name(self) -> str:
        return self.head

    def _build_network(self, image_config: dict, n_covariates: int, *, loading: bool = False):
        from fracrisk.encoders import FusionSurvivalNet, create_encoder

        if isinstance(self.encoder, nn.Module) and not loading:
            encoder = copy.deepcopy(self.encoder)  # the setting stays untouched by training
        else:
            name = self.encoder if isinstance(self.encoder, str) else self._encoder_name()
            kwargs = dict(self.encoder_kwargs or {})
            if not isinstance(self.encoder, str):
                kwargs = {**self.encoder.registry_config["kwargs"], **kwargs}
            if loading:
                kwargs = _without_weights(kwargs)
            if name == "multiview_drr":
                kwargs.setdefault("views", tuple(image_config["views"]))
            encoder = create_encoder(name, **kwargs)
        return FusionSurvivalNet(
            encoder,
            n_covariates,
            head=self.head,
            head_kwargs=dict(self.head_kwargs_),
            covariate_dropout=self.covariate_dropout,
            auxiliary=list(self.auxiliary or {}),
            auxiliary_classes=self._auxiliary_class_counts(),
        )

    def _auxiliary_class_counts(self) -> list[int]:
        """Per auxiliary target: 0 (numeric) or its number of classes."""
        classes = self.auxiliary_classes or {}
        return [int(classes.get(name, 0)) for name in self.auxiliary or {}]

    def _loader(self, data) -> DataLoader:
        # A generator of its own: iterating a loader must not draw from the caller's RNG.
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _predict_device(self) -> str:
        accelerator = resolve_accelerator(self.accelerator, 1)
        return "cuda" if accelerator == "cuda" else "cpu"

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: Cohort | pd.DataFrame | ImageCohortDataset,
        val_data: Cohort | pd.DataFrame | ImageCohortDataset | None = None,
        *,
        resume: bool = False,
        callbacks: Sequence = (),
    ) -> ImageSurvivalModel:
        """Train on images and covariates.

        Parameters
        ----------
        data : Cohort, DataFrame or ImageCohortDataset
            Training patients. A cohort's path column names the images, which are made
            with ``image_options`` (and augmented if ``augment``); a prepared dataset is
            used as it is (its ``transform`` augments). Event 1 is fracture; death and
            censoring are 0.
        val_data : Cohort, DataFrame or ImageCohortDataset, optional
            Patients for early stopping, preprocessed like the training data. By default
            ``validation_fraction`` of ``data`` (stratified by event), without
            augmentation.
        resume : bool, default False
            Go on from ``checkpoint_dir/last.ckpt`` if there is one.
        callbacks : sequence of lightning.pytorch.Callback, optional
            Extra Lightning callbacks.

        Returns
        -------
        self
        """
        from fracrisk.training import fit_cox_network

        self._validate_params()
        self.training_ = self.training
        if self.training == "auto":
            self.training_ = "two_stage" if self.auxiliary else "end_to_end"
        data = self._make_dataset(data, training=True)
        self.skipped_images_ = list(data.failures)
        if list(data.target_names) != list(self.auxiliary or {}):
            raise ValueError(
                f"the dataset's targets {data.target_names} differ from auxiliary="
                f"{list(self.auxiliary or {})}; build it with targets=list(auxiliary), or pass "
                "the cohort itself"
            )
        if int(data.event.sum()) == 0:
            raise ValueError("the training data hold no fracture (event 1); nothing to fit")
        self.image_config_ = data.image_options
        self.preprocessor_ = data.preprocessor
        self.covariate_names_ = list(data.covariate_names)
        if val_data is not None:
            val_data = self._make_dataset(val_data, training=False, targets=bool(self.auxiliary))
            self._check_compatible(val_data, "val_data")

        train_rows = np.arange(len(data))
        if val_data is None and self.validation_fraction > 0:
            train_rows, val_rows = _stratified_split(
                data.event, self.validation_fraction, self.seed
            )
            val_data = Subset(_without_augmentation(data), val_rows.tolist())
        elif val_data is not None:
            val_data = _without_augmentation(val_data)
        self.head_kwargs_ = dict(self.head_kwargs or {})
        if head_class(self.head).objective == "discrete":
            grid = fit_time_grid(
                data.time[train_rows], data.event_code[train_rows], self.n_intervals
            )
            self.head_kwargs_["cuts"] = grid.tolist()
        absolute = head_class(self.head).risk_type == "absolute"
        train_data = Subset(data, train_rows.tolist())
        if absolute:  # the loss sees death
            train_data = _WithEventCodes(train_data, data.event_code[train_rows])
            if val_data is not None:
                val_data = _WithEventCodes(val_data, _codes_of(val_data))
        with torch.random.fork_rng(devices=[]):  # seeded; the caller's RNG is untouched
            torch.manual_seed(self.seed)
            network = self._build_network(self.image_config_, len(self.covariate_names_))
            if hasattr(network.head, "initialise_baseline"):
                network.head.initialise_baseline(data.time[train_rows], data.event_code[train_rows])
            weights = None
            if self.auxiliary:
                scaling = _target_scaling(data, train_rows, self._auxiliary_class_counts())
                network.set_auxiliary_scaling(*scaling)
                weights = [float(w) for w in self.auxiliary.values()]
            result = fit_cox_network(
                network,
                train_data,
                data.event[train_rows] == 1,
                val_data,
                TrainingConfig.from_estimator(self),
                resume=resume,
                callbacks=callbacks,
                auxiliary_weights=weights,
                survival_weight=0.0 if self.training_ == "two_stage" else 1.0,
            )
        self.history_, self.fit_rank_ = result.history, result.global_rank
        self.network_ = network.eval()
        self._stage_one_split = (list(data.patient_ids), train_rows)
        if self.training_ == "two_stage":
            return self._finish_two_stage(data, train_rows)
        plain = _without_augmentation(data, targets=False)
        output, time, _ = self._predict(plain)
        self._set_curves(OutputCurves(self.network_.head).fit(output, time, _codes_of(plain)))
        self.n_train_ = len(data)
        return self

    def _finish_two_stage(self, data: ImageCohortDataset, train_rows: np.ndarray):
        """Stage 2 and the survival curves of a model whose stage-1 network is set."""
        plain = _without_augmentation(data, targets=False)
        eta, time, event = self._fit_stage_two(plain, data, train_rows)
        self._set_curves(OutputCurves(nn.Identity()).fit(eta, time, event))
        self.n_train_ = len(data)
        return self

    def with_stage_two(
        self, data: Cohort | pd.DataFrame, *, covariates: Sequence[str]
    ) -> ImageSurvivalModel:
        """A new two-stage model: this model's stage 1 with a stage 2 on other covariates.

        Stage 1 never reads the covariates (its loss is the dense targets' alone), so
        models that differ only in the covariates of their Cox stage can share one trained
        encoder: image + FRAX covariates, the same + DXA BMD, images only. The new model
        copies the encoder and the auxiliary layers, refits them as ``fit`` would (the
        ridge refit is a closed form on the same embedding, so it gives the same layer),
        and fits its own penalised Cox stage on ``covariates`` plus the predicted targets.
        It is what ``fit`` with ``image_options["covariates"] = covariates`` gives when
        stage 1 trains to the same encoder, in the time of one pass over the images. This
        model is unchanged.

        Parameters
        ----------
        data : Cohort or DataFrame
            The patients this model was fitted on, in the same order, with the target and
            covariate columns.
        covariates : sequence of str
            Stage 2's covariate columns (empty: the images alone).

        Returns
        -------
        ImageSurvivalModel
            Fitted, with ``image_options["covariates"]`` set to ``covariates``.
        """
        self._check_fitted()
        if self.training_ != "two_stage":
            raise ValueError(
                "with_stage_two needs a two-stage model; this one was trained end to end, so "
                "its encoder learned with its own covariates. Fit a new model instead"
            )
        split = getattr(self, "_stage_one_split", None)
        if split is None:
            raise ValueError(
                "with_stage_two needs the model as fitted in this session: a loaded model "
                "does not keep which patients stage 1 trained and validated on"
            )
        if isinstance(covariates, str):
            raise TypeError("covariates must be a sequence of column names, not a string")
        if isinstance(data, ImageCohortDataset):
            raise TypeError(
                "with_stage_two makes its own dataset with the new covariates; pass the cohort"
            )
        options = {**(self.image_options or {}), "covariates": [str(c) for c in covariates]}
        model = type(self)(**{**self.get_params(), "image_options": options})
        model._validate_params()
        model.training_ = "two_stage"
        dataset = model._make_dataset(data, training=True)
        ids, train_rows = split
        if list(dataset.patient_ids) != ids:
            raise ValueError(
                f"data must hold the {len(ids)} patients this model was fitted on, in the same "
                f"order (stage 1 split them into training and early-stopping rows); got "
                f"{len(dataset)} usable rows that differ"
            )
        if dataset.image_options != self.image_config_:
            raise ValueError(
                "the images differ from those stage 1 trained on (was it fitted on a prepared "
                f"dataset?): expected {self.image_config_}, got {dataset.image_options}"
            )
        model.skipped_images_ = list(dataset.failures)
        model.image_config_ = dataset.image_options
        model.preprocessor_ = dataset.preprocessor
        model.covariate_names_ = list(dataset.covariate_names)
        model.head_kwargs_ = dict(self.head_kwargs_)
        model.history_, model.fit_rank_ = self.history_, self.fit_rank_
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = model._build_network(model.image_config_, len(model.covariate_names_))
        # Everything but the survival head, which a two-stage model never uses and whose
        # width follows the covariates.
        shared = {k: v for k, v in self.network_.state_dict().items() if not k.startswith("head.")}
        missing, unexpected = network.load_state_dict(shared, strict=False)
        if unexpected or any(not k.startswith("head.") for k in missing):
            raise RuntimeError(f"stage-1 networks differ: missing {missing}, extra {unexpected}")
        model.network_ = network.eval()
        model._stage_one_split = split
        return model._finish_two_stage(dataset, train_rows)

    def _fit_stage_two(self, plain, data: ImageCohortDataset, train_rows: np.ndarray):
        """Stage 2: penalised Cox on covariates + the stage-1 predictions, on every row."""
        from fracrisk.models.coxph import CoxPH, cross_validated_penalizer

        embedding, covariates, time, event = self._embeddings(plain)
        self.auxiliary_ridge_alpha_ = {}
        if self.auxiliary_refit == "ridge":
            self._refit_auxiliary(embedding[train_rows], data._targets[train_rows])
        values = self._auxiliary_from_embedding(embedding)
        table = self._stage_two_table(values, covariates, time, event)
        design = [*self._covariate_columns(), *self._image_columns()]
        cohort = Cohort(table, time_col="time", event_col="event")
        penalizer = self.stage_two_penalizer
        if penalizer == "cv":
            penalizer = cross_validated_penalizer(cohort, design, 5, self.seed)
        self.stage_two_penalizer_ = float(penalizer)
        self.cox_ = CoxPH(penalizer=self.stage_two_penalizer_).fit(cohort, covariates=design)
        held_out = np.setdiff1d(np.arange(len(data)), train_rows)
        self.auxiliary_r2_ = {}
        for j, name in enumerate(self.auxiliary):
            predicted, target = table[self._image_columns()[j]].to_numpy(), data._targets[:, j]
            self.auxiliary_r2_[name] = {
                part: _r2(target[rows], predicted[rows])
                for part, rows in (("train", train_rows), ("validation", held_out))
            }
        eta = self.cox_.predict_log_hazard(table).to_numpy()
        return eta, table["time"].to_numpy(), table["event"].to_numpy()

    def _refit_auxiliary(self, embedding: np.ndarray, targets: np.ndarray) -> None:
        """Ridge refit of each numeric target's layer on the embedding of the rows with a value."""
        from sklearn.linear_model import RidgeCV

        network, embedding = self.network_, np.asarray(embedding, dtype=np.float64)
        for j, (name, classes) in enumerate(
            zip(self.auxiliary, self._auxiliary_class_counts(), strict=True)
        ):
            seen = np.isfinite(targets[:, j])
            if classes or seen.sum() < 2:  # a categorical target, or nothing to fit on
                continue
            mean, scale = float(network.auxiliary_mean[j]), float(network.auxiliary_scale[j])
            ridge = RidgeCV(alphas=AUXILIARY_RIDGE_ALPHAS).fit(
                embedding[seen], (targets[seen, j] - mean) / scale
            )
            network.set_numeric_auxiliary(name, ridge.coef_, float(ridge.intercept_))
            self.auxiliary_ridge_alpha_[name] = float(ridge.alpha_)

    def _image_columns(self) -> list[str]:
        return [f"image_{name}" for name in self.auxiliary]

    def _covariate_columns(self) -> list[str]:
        """Stage-2 names of the preprocessed covariates (apart from the raw columns' checks)."""
        return [f"cov_{name}" for name in self.covariate_names_]

    def _stage_two_table(self, values, covariates, time, event) -> pd.DataFrame:
        """Covariates (preprocessed), stage-1 predictions, time and event, one row per item."""
        table = pd.DataFrame(covariates, columns=self._covariate_columns())
        for j, column in enumerate(self._image_columns()):
            table[column] = values[:, j]
        table["time"], table["event"] = time, event
        return table

    # ------------------------------------------------------------------ prediction
    def _check_compatible(self, data, name: str = "data") -> None:
        if not isinstance(data, ImageCohortDataset):
            raise TypeError(f"{name} must be an ImageCohortDataset, got {type(data).__name__}")
        expected, got = self.image_config_, data.image_options
        if got != expected:
            raise ValueError(
                f"{name} does not match the training images: expected {expected}, got {got}"
            )
        trained = None if self.preprocessor_ is None else self.preprocessor_.to_dict()
        given = None if data.preprocessor is None else data.preprocessor.to_dict()
        if trained != given:
            raise ValueError(
                f"{name} preprocesses its covariates differently from the training data; build "
                "it with ImageCohortDataset(..., preprocessor=model.preprocessor_), or pass the "
                "cohort itself"
            )

    def _prediction_dataset(self, data) -> ImageCohortDataset:
        self._check_fitted()
        dataset = self._make_dataset(data, training=False)
        self._check_compatible(dataset)
        return _without_augmentation(dataset, targets=False)

    def _predict(self, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from fracrisk.training import predict_batches

        batches = predict_batches(
            self.network_,
            self._loader(data),
            device=self._predict_device(),
            precision=self.precision,
        )
        parts = list(zip(*batches, strict=True))
        self.network_.cpu()
        if not parts:
            return np.empty(0), np.empty(0), np.empty(0)
        return tuple(np.concatenate(p) for p in parts)

    def _outputs(self, dataset) -> np.ndarray:
        """The model's outputs per item: stage 2's log hazard, or the head's outputs."""
        if self.training_ == "two_stage":
            table = self._stage_two_table(*self._auxiliary_values(dataset))
            return self.cox_.predict_log_hazard(table).to_numpy()
        return self._predict(dataset)[0]

    def check_images(self, data: Cohort | pd.DataFrame) -> list[ImageFailure]:
        """The rows of ``data`` whose image cannot be used, found as ``fit`` would find them.

        Every image is read and prepared (rendered, keypoints detected, patches cut) with
        ``image_options``, nothing is trained. With a ``cache_dir`` in ``image_options``
        the prepared tensors are kept there, and ``fit`` or ``predict_*`` on the same
        images read them back. Returns the failed rows in table order (empty when every
        image is usable); a bad image never raises here.
        """
        options = {k: v for k, v in (self.image_options or {}).items() if k != "kind"}
        options.setdefault("progress", bool(self.progress))
        options["on_error"] = "skip"
        with warnings.catch_warnings():  # the failures are returned, not warned about
            warnings.filterwarnings("ignore", r".* rows left out of the", DataWarning)
            try:
                dataset = ImageCohortDataset(data, self._image_kind(), **options)
            except NoUsableImagesError as err:
                return list(err.failures)
        return list(dataset.failures)

    def predict_log_hazard(self, data: Cohort | pd.DataFrame | ImageCohortDataset) -> pd.Series:
        """Log hazard ratio of fracture per patient (higher = higher risk), by patient id.

        Images are read without augmentation (the evaluation transform), whatever the
        dataset's own transform. For the cause-specific pair it is the fracture hazard's;
        the discrete-time heads have none.
        """
        dataset = self._prediction_dataset(data)
        objective = self.curves_.objective
        if objective == "discrete":
            raise ValueError(
                f"head={self.head!r} is a discrete-time model and has no log hazard ratio; "
                "use predict_cumulative_incidence, predict_risk or predict_score"
            )
        eta = self._outputs(dataset)
        if objective == "cause_specific":
            eta = eta[:, 0]
        return pd.Series(eta, index=pd.Index(dataset.patient_ids), name="log_hazard")

    def predict_score(self, data) -> np.ndarray:
        """Ranking score for concordance metrics (higher = higher risk).

        The log hazard ratio of fracture for the Cox heads (the pair included), the
        cumulative incidence of fracture by the grid's last cut for the discrete-time heads.
        """
        outputs = self._outputs(self._prediction_dataset(data))  # checks the fit first
        return self.curves_.score(outputs)

    def predict_auxiliary(self, data) -> pd.DataFrame:
        r"""The dense targets predicted from the images, patients x targets, in their units.

        Only for a model fitted with ``auxiliary``; e.g. the image-estimated T-score. A
        categorical target (``auxiliary_classes``) is given as its expected class
        :math:`\sum_c c\, p_c`.
        """
        self._check_fitted()
        if not self.auxiliary:
            raise ValueError(
                "this model was fitted without auxiliary targets; pass auxiliary={column: "
                "weight} to predict them"
            )
        dataset = self._prediction_dataset(data)
        values = self._auxiliary_values(dataset)[0]
        return pd.DataFrame(
            values, index=pd.Index(dataset.patient_ids), columns=list(self.network_.auxiliary_names)
        )

    def predict_auxiliary_proba(self, data, target: str) -> pd.DataFrame:
        """Class probabilities of a categorical auxiliary target, patients x classes.

        Columns ``0..C-1`` (the class codes); each row sums to 1. Only for a target named
        in ``auxiliary_classes``.
        """
        from fracrisk.training.engine import _to_device

        self._check_fitted()
        classes = dict(zip(self.auxiliary or {}, self._auxiliary_class_counts(), strict=True))
        if not classes.get(target):
            categorical = [name for name, c in classes.items() if c]
            raise ValueError(
                f"{target!r} is not a categorical auxiliary target of this model "
                f"(categorical: {categorical or 'none'})"
            )
        j = list(classes).index(target)
        dataset = self._prediction_dataset(data)
        device = torch.device(self._predict_device())
        network = self.network_.to(device).eval()
        parts = []
        with torch.no_grad():
            for images, covariates, _, _ in self._loader(dataset):
                logits = network.forward_with_auxiliary(
                    *_to_device((images, covariates), device), return_logits=True
                )[2][j]
                parts.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        network.cpu()
        values = np.concatenate(parts) if parts else np.empty((0, classes[target]))
        return pd.DataFrame(
            values.astype(np.float64),
            index=pd.Index(dataset.patient_ids),
            columns=pd.RangeIndex(classes[target], name=target),
        )

    def _auxiliary_values(self, dataset) -> tuple[np.ndarray, ...]:
        """Predicted targets (their units), covariates, time and event of every item."""
        embedding, *rest = self._embeddings(dataset)
        return (self._auxiliary_from_embedding(embedding), *rest)

    def _embeddings(self, dataset) -> tuple[np.ndarray, ...]:
        """Image embedding, covariates, time and event of every item (no augmentation)."""
        from fracrisk.training.engine import _to_device

        device = torch.device(self._predict_device())
        network = self.network_.to(device).eval()
        parts = []
        with torch.no_grad():
            for images, covariates, time, event in self._loader(dataset):
                images = _to_device(images, device)
                parts.append(
                    (
                        network.encode_images(images).float().cpu().numpy(),
                        covariates.numpy().astype(np.float64),
                        time.numpy().astype(np.float64),
                        event.numpy(),
                    )
                )
        network.cpu()
        if not parts:
            e, m = self.network_.image_features, len(self.covariate_names_)
            return np.empty((0, e)), np.empty((0, m)), np.empty(0), np.empty(0, np.int64)
        return tuple(np.concatenate(p) for p in zip(*parts, strict=True))

    def _auxiliary_from_embedding(self, embedding: np.ndarray) -> np.ndarray:
        """The auxiliary predictions (their units) of embeddings, (items, targets)."""
        z = torch.as_tensor(embedding, dtype=self.network_.auxiliary_head.weight.dtype)
        with torch.no_grad():
            values = self.network_.auxiliary_from_embedding(z)[0]
        return values.numpy().astype(np.float64).reshape(len(embedding), len(self.auxiliary))

    def predict_survival(
        self, data, times: Sequence[float] | np.ndarray | None = None
    ) -> pd.DataFrame:
        r"""One minus the risk of fracture by each time, patients x times.

        Parameters
        ----------
        data : Cohort, DataFrame or ImageCohortDataset
            Patients to predict for.
        times : array-like of float, optional
            Times in years; by default every whole year up to the longest training
            follow-up.

        Returns
        -------
        pandas.DataFrame
            Rows are patients (by id), columns the times; values in [0, 1], non-increasing
            along each row. For a Cox head :math:`S(t \mid \text{images}, x)` with death
            censored (cause-specific); for the absolute-risk heads one minus the cumulative
            incidence of fracture (``attrs["risk_type"]``).
        """
        dataset = self._prediction_dataset(data)
        times = self._times(times)
        surv = self.curves_.survival(self._outputs(dataset), times)
        return self._survival_frame(surv, pd.Index(dataset.patient_ids), times)

    def predict_cumulative_incidence(
        self, data, times: Sequence[float] | np.ndarray | None = None, *, cause: int = 1
    ) -> pd.DataFrame:
        """Cumulative incidence of ``cause`` (1 fracture, 2 death), the other competing.

        Only for the absolute-risk heads; see
        :meth:`fracrisk.models.SurvivalModel.predict_cumulative_incidence`.
        """
        if cause not in (1, 2):
            raise ValueError(f"cause must be 1 (fracture) or 2 (death), got {cause!r}")
        if self.risk_type != "absolute":
            return super().predict_cumulative_incidence(data, times, cause=cause)
        dataset = self._prediction_dataset(data)
        times = self._times(times)
        values = self.curves_.incidence(self._outputs(dataset), times, cause=cause)
        frame = self._survival_frame(values, pd.Index(dataset.patient_ids), times)
        frame.attrs["cause"] = cause
        return frame

    def _times(self, times) -> np.ndarray:
        if times is None:
            years = np.arange(1.0, np.floor(self.curves_.max_time) + 1.0)
            return years if years.size else np.array([self.curves_.max_time])
        return np.asarray(times, dtype=np.float64)

    @property
    def item_names_(self) -> list[str]:
        """Names of the images of one patient, in item order: the DRR views, L1-L5 or "ct"."""
        self._check_fitted()
        from fracrisk.imaging.anatomy import VERTEBRAE

        if self.image_config_["kind"] == "drr":
            return list(self.image_config_["views"])
        if self.image_config_["kind"] == "volume":
            return ["ct"]
        return list(VERTEBRAE)

    def grad_cam(
        self,
        data,
        positions: Sequence[int] | None = None,
        *,
        reference=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Grad-CAM maps of the log hazard for some patients of a dataset.

        Parameters
        ----------
        data : Cohort, DataFrame or ImageCohortDataset
            Patients; read without augmentation.
        positions : sequence of int, optional
            Item positions in ``data`` (default: all; mind the memory for large datasets).
        reference : Cohort, DataFrame or ImageCohortDataset, optional
            Patients whose average feature maps are the reference (see
            :mod:`fracrisk.explain`): the map shows what raises the hazard compared with them.
            Default: all of ``data``.

        Returns
        -------
        images, maps : torch.Tensor, shape (n, n_items, H, W)
            The images and their maps (:func:`fracrisk.explain.grad_cam`: in [0, 1], scaled per
            patient). ``fracrisk.explain.plot_grad_cam(images, maps)`` draws them.
        """
        from fracrisk.explain import grad_cam, mean_feature_maps

        if self.training_ == "end_to_end" and self.curves_.objective != "cox":
            raise ValueError(
                f"grad_cam explains a Cox head's log hazard; head={self.head!r} has none"
            )
        output = None
        if self.training_ == "two_stage":
            # the image part of the Cox stage: sum_j beta_j * predicted target j
            beta = torch.tensor(
                self.cox_.coef_[self._image_columns()].to_numpy(), dtype=torch.float32
            )

            def output(network, images, covariates):
                predicted = network.forward_with_auxiliary(images, covariates)[1]
                return predicted @ beta.to(predicted.device)

        view = self._prediction_dataset(data)
        reference = view if reference is None else self._prediction_dataset(reference)
        device = torch.device(self._predict_device())
        network = self.network_.to(device)
        try:
            reference_maps = mean_feature_maps(network, self._loader(reference))
            positions = range(len(view)) if positions is None else positions
            items = [view[int(p)] for p in positions]
            if not items:
                raise ValueError("positions must name at least one patient")
            images = torch.stack([item[0] for item in items])
            covariates = torch.stack([item[1] for item in items])
            maps = grad_cam(
                network,
                images.to(device),
                covariates.to(device),
                reference=reference_maps,
                output=output,
            )
        finally:
            self.network_.cpu()
        return images, maps.cpu()

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict:
        params = self.get_params()
        if isinstance(self.encoder, nn.Module):
            config = getattr(self.encoder, "registry_config", None)
            if config is None:
                raise ValueError(
                    f"the encoder is a {type(self.encoder).__name__} not built by "
                    "fracrisk.encoders.create_encoder, so a saved model could not rebuild it; "
                    "register it with fracrisk.encoders.register_encoder and pass its name"
                )
            params["encoder"] = config["name"]
            params["encoder_kwargs"] = {**config["kwargs"], **(self.encoder_kwargs or {})}
        return params

    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors = {
            f"network.{k}": v.detach().cpu().contiguous()
            for k, v in self.network_.state_dict().items()
        }
        tensors.update(self.curves_.tensors())
        state = {
            "head_kwargs": self.head_kwargs_,
            "image_config": self.image_config_,
            "covariate_names": self.covariate_names_,
            "preprocessor": None if self.preprocessor_ is None else self.preprocessor_.to_dict(),
            "n_train": self.n_train_,
        }
        state["training"] = self.training_
        if self.training_ == "two_stage":
            cox_state, cox_tensors = self.cox_._state()
            tensors.update({f"cox.{k}": v for k, v in cox_tensors.items()})
            state["stage_two"] = {
                "cox": cox_state,
                "penalizer": self.stage_two_penalizer_,
                "auxiliary_r2": self.auxiliary_r2_,
                "auxiliary_ridge_alpha": self.auxiliary_ridge_alpha_,
            }
        return state, tensors

    @classmethod
    def _from_state(
        cls, params: dict, state: dict, tensors: dict[str, torch.Tensor]
    ) -> ImageSurvivalModel:
        model = cls(**params)
        model.image_config_ = state["image_config"]
        model.covariate_names_ = state["covariate_names"]
        model.preprocessor_ = (
            None
            if state["preprocessor"] is None
            else TabularPreprocessor.from_dict(state["preprocessor"])
        )
        # Models saved before the absolute-risk heads held their head options in params.
        model.head_kwargs_ = state.get("head_kwargs", dict(model.head_kwargs or {}))
        network = model._build_network(
            model.image_config_, len(model.covariate_names_), loading=True
        )
        network.load_state_dict(_prefixed(tensors, "network"))
        model.network_ = network.eval()
        model.n_train_ = state["n_train"]
        # Models saved before two-stage training existed were trained end to end.
        model.training_ = state.get("training", "end_to_end")
        head = nn.Identity() if model.training_ == "two_stage" else network.head
        model._set_curves(OutputCurves(head).load(tensors))
        if model.training_ == "two_stage":
            from fracrisk.models.coxph import CoxPH

            stage = state["stage_two"]
            model.stage_two_penalizer_ = float(stage["penalizer"])
            model.cox_ = CoxPH._from_state(
                {"penalizer": model.stage_two_penalizer_}, stage["cox"], _prefixed(tensors, "cox")
            )
            model.auxiliary_r2_ = stage["auxiliary_r2"]
            # Models saved before the ridge refit kept their trained layers.
            model.auxiliary_ridge_alpha_ = stage.get("auxiliary_ridge_alpha", {})
        return model
