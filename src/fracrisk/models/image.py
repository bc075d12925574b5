r"""Image survival model: an image encoder and the clinical covariates into a Cox head.

:class:`ImageSurvivalModel` is the estimator around :class:`fracrisk.encoders.FusionSurvivalNet`:
it trains the network on an :class:`~fracrisk.data.ImageCohortDataset` with the mini-batch Cox
partial likelihood, fits a Breslow baseline hazard on the training patients, and predicts
absolute survival curves like :class:`~fracrisk.DeepSurv` does for tabular data.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from fracrisk.baseline_hazard import BreslowBaselineHazard
from fracrisk.data.image_dataset import ImageCohortDataset
from fracrisk.exceptions import NotFittedError
from fracrisk.imaging.transforms import default_eval_transform
from fracrisk.models._base import (
    RiskFromSurvival,
    SavedModel,
    _baseline_from_tensors,
    _baseline_tensors,
    _prefixed,
)
from fracrisk.preprocessing import TabularPreprocessor
from fracrisk.training import (
    TrainingConfig,
    TrainingHistory,
    predict_batches,
    resolve_device,
    train_cox_network,
)

__all__ = ["ImageSurvivalModel"]


class _EpochLoader:
    """A DataLoader that tells its dataset which epoch starts (seeded augmentation)."""

    def __init__(self, dataset: ImageCohortDataset, loader: DataLoader) -> None:
        self.dataset, self.loader, self.epoch = dataset, loader, 0

    def __iter__(self):
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def _without_augmentation(data: ImageCohortDataset) -> ImageCohortDataset:
    """The same items with the deterministic evaluation transform (a shallow copy)."""
    view = copy.copy(data)
    view.transform = default_eval_transform(data.kind)
    return view


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


class ImageSurvivalModel(SavedModel, RiskFromSurvival):
    r"""Cox model whose log hazard ratio comes from images and clinical covariates.

    .. math::
        h(t \mid \text{images}, x) = h_0(t)\,\exp\!\big(\eta\big), \qquad
        \eta = h_\theta\big([\,g_\phi(\text{images}),\ x\,]\big),

    with :math:`g_\phi` an image encoder from :func:`fracrisk.encoders.create_encoder` (the
    multi-view DRR encoder of Kim et al. 2024 or the vertebral-patch encoder of Kong et al.
    2022), :math:`x` the dataset's preprocessed covariates and :math:`h_\theta` a head from
    :func:`fracrisk.heads.create_head`, trained end to end with AdamW on the mini-batch Cox
    partial likelihood (each batch is its own risk set). Part of the training patients
    (stratified by event) drives early stopping unless a validation dataset is given. The
    Breslow baseline hazard :math:`h_0` is estimated on all training patients, so the model
    gives absolute survival curves. Death is censoring: the curves are cause-specific.

    Parameters
    ----------
    encoder : str, default "vertebral_patches"
        Encoder name (``"vertebral_patches"`` for ``kind="patches"`` datasets,
        ``"multiview_drr"`` for ``kind="drr"``).
    encoder_kwargs : dict, optional
        Options of the encoder (e.g. ``{"backbone": "resnet18", "pooling": "mean"}``). For
        ``"multiview_drr"`` the dataset's ``views`` are passed unless given here.
    head : str, default "deepsurv"
        Head name (``"deepsurv"`` or ``"cox_linear"``).
    head_kwargs : dict, optional
        Options of the head (e.g. ``{"hidden": [32], "dropout": 0.2}``).
    covariate_dropout : float, default 0.0
        Dropout on each covariate in training (see
        :class:`~fracrisk.encoders.FusionSurvivalNet`).
    learning_rate : float, default 3e-4
        AdamW step size.
    weight_decay : float, default 1e-4
        AdamW weight decay.
    batch_size : int, default 32
        Patients per mini-batch (each batch is a risk set: larger is better for the Cox loss).
    max_epochs : int, default 30
        Upper bound on epochs.
    patience : int, default 5
        Early-stopping patience in epochs.
    validation_fraction : float, default 0.2
        Share of the training patients held out for early stopping when ``fit`` gets no
        validation dataset; 0 trains for ``max_epochs``.
    ties : {"efron", "breslow"}, default "efron"
        Tie handling in the loss.
    num_workers : int, default 0
        DataLoader worker processes for training batches.
    device : str, default "auto"
        ``"auto"`` uses CUDA when available.
    mixed_precision : bool or "auto", default "auto"
        bfloat16 autocast on CUDA.
    seed : int, default 0
        Seeds weight initialisation, dropout, shuffling and the validation split; the
        caller's random state is left untouched.
    progress : bool, default False
        Show a progress bar over epochs.

    Attributes
    ----------
    network_ : FusionSurvivalNet
    baseline_hazard_ : BreslowBaselineHazard
    preprocessor_ : TabularPreprocessor or None
        The covariate preprocessing of the training dataset; prediction datasets must use
        the same one (``ImageCohortDataset(..., preprocessor=model.preprocessor_)``).
    image_config_ : dict
        The training dataset's :attr:`~fracrisk.data.ImageCohortDataset.image_options` (kind,
        item shape, views, geometry, window, patch options), checked at prediction.
    history_ : TrainingHistory

    Examples
    --------
    .. code-block:: python

        train = ImageCohortDataset(cohort_train, "patches", cache_dir="cache",
                                   transform=default_train_transform("patches"))
        model = ImageSurvivalModel("vertebral_patches").fit(train)
        test = ImageCohortDataset(cohort_test, "patches", cache_dir="cache",
                                  preprocessor=model.preprocessor_)
        model.predict_survival(test, times=[1, 3, 5])  # patients x years
    """

    _params = (
        "encoder",
        "encoder_kwargs",
        "head",
        "head_kwargs",
        "covariate_dropout",
        "learning_rate",
        "weight_decay",
        "batch_size",
        "max_epochs",
        "patience",
        "validation_fraction",
        "ties",
        "num_workers",
        "device",
        "mixed_precision",
        "seed",
        "progress",
    )

    def __init__(
        self,
        encoder: str = "vertebral_patches",
        encoder_kwargs: dict | None = None,
        *,
        head: str = "deepsurv",
        head_kwargs: dict | None = None,
        covariate_dropout: float = 0.0,
        learning_rate: float = 3e-4,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int = 30,
        patience: int = 5,
        validation_fraction: float = 0.2,
        ties: str = "efron",
        num_workers: int = 0,
        device: str = "auto",
        mixed_precision: bool | str = "auto",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        from fracrisk.encoders import list_encoders

        if encoder not in list_encoders():
            raise ValueError(
                f"unknown encoder {encoder!r}; registered encoders: {', '.join(list_encoders())}"
            )
        if not (isinstance(batch_size, int) and batch_size >= 2):
            raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
        if not (isinstance(num_workers, int) and num_workers >= 0):
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        self.encoder = encoder
        self.encoder_kwargs = dict(encoder_kwargs or {})
        self.head, self.head_kwargs = head, dict(head_kwargs or {})
        self.covariate_dropout = covariate_dropout
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.validation_fraction, self.ties = validation_fraction, ties
        self.num_workers = num_workers
        self.device, self.mixed_precision, self.seed = device, mixed_precision, seed
        self.progress = progress

    # ------------------------------------------------------------------ building
    def _build_network(self, image_config: dict, n_covariates: int):
        from fracrisk.encoders import FusionSurvivalNet, create_encoder

        kwargs = dict(self.encoder_kwargs)
        if self.encoder == "multiview_drr":
            kwargs.setdefault("views", tuple(image_config["views"]))
        return FusionSurvivalNet(
            create_encoder(self.encoder, **kwargs),
            n_covariates,
            head=self.head,
            head_kwargs=self.head_kwargs,
            covariate_dropout=self.covariate_dropout,
        )

    @staticmethod
    def _image_config(data: ImageCohortDataset) -> dict:
        return data.image_options

    def _loader(self, data, *, shuffle: bool, drop_last: bool = False) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, data: ImageCohortDataset, val_data: ImageCohortDataset | None = None):
        """Train on an image dataset.

        Parameters
        ----------
        data : ImageCohortDataset
            Training patients; its ``transform`` (e.g.
            :func:`~fracrisk.imaging.default_train_transform`) augments the training batches.
            Event 1 is fracture; death and censoring are 0.
        val_data : ImageCohortDataset, optional
            Patients for early stopping, with the training dataset's covariate
            preprocessing. By default ``validation_fraction`` of ``data`` (stratified by
            event), seen without augmentation.

        Returns
        -------
        self
        """
        if not isinstance(data, ImageCohortDataset):
            raise TypeError(f"data must be an ImageCohortDataset, got {type(data).__name__}")
        if int(data.event.sum()) == 0:
            raise ValueError("the training data hold no fracture (event 1); nothing to fit")
        self.image_config_ = self._image_config(data)
        self.preprocessor_ = data.preprocessor
        self.covariate_names_ = list(data.covariate_names)
        if val_data is not None:
            self._check_compatible(val_data, "val_data")

        positions = np.arange(len(data))
        if val_data is None and self.validation_fraction > 0:
            train_rows, val_rows = _stratified_split(
                data.event, self.validation_fraction, self.seed
            )
            val_data = Subset(_without_augmentation(data), val_rows.tolist())
        else:
            train_rows = positions
        if val_data is not None and isinstance(val_data, ImageCohortDataset):
            val_data = _without_augmentation(val_data)
        # A last batch of one patient breaks batch normalisation and has no comparable pair.
        drop_last = len(train_rows) % self.batch_size == 1
        train_loader = _EpochLoader(
            data, self._loader(Subset(data, train_rows.tolist()), shuffle=True, drop_last=drop_last)
        )
        val_loader = None if val_data is None else self._loader(val_data, shuffle=False)
        config = TrainingConfig.from_estimator(self)
        with torch.random.fork_rng(devices=[]):  # seeded; the caller's RNG is untouched
            torch.manual_seed(self.seed)
            self.network_ = self._build_network(self.image_config_, len(self.covariate_names_))
            self.history_: TrainingHistory = train_cox_network(
                self.network_, train_loader, val_loader, config
            )
        self.network_.eval()
        eta, time, event = self._predict(_without_augmentation(data))
        self.baseline_hazard_ = BreslowBaselineHazard().fit(eta, time, event)
        self.n_train_ = len(data)
        return self

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "baseline_hazard_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit() first")

    def _check_compatible(self, data, name: str = "data") -> None:
        if not isinstance(data, ImageCohortDataset):
            raise TypeError(f"{name} must be an ImageCohortDataset, got {type(data).__name__}")
        expected, got = self.image_config_, self._image_config(data)
        if got != expected:
            raise ValueError(
                f"{name} does not match the training images: expected {expected}, got {got}"
            )
        trained = None if self.preprocessor_ is None else self.preprocessor_.to_dict()
        given = None if data.preprocessor is None else data.preprocessor.to_dict()
        if trained != given:
            raise ValueError(
                f"{name} preprocesses its covariates differently from the training data; build "
                "it with ImageCohortDataset(..., preprocessor=model.preprocessor_)"
            )

    def _predict(self, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        device = resolve_device(self.device)
        batches = predict_batches(
            self.network_.to(device),
            self._loader(data, shuffle=False),
            device=device,
            mixed_precision=self.mixed_precision,
        )
        parts = list(zip(*batches, strict=True))
        if not parts:
            return np.empty(0), np.empty(0), np.empty(0)
        return tuple(np.concatenate(p) for p in parts)

    def predict_log_hazard(self, data: ImageCohortDataset) -> pd.Series:
        """Log hazard ratio per patient (higher = higher risk), indexed by patient id.

        Images are read without augmentation (the evaluation transform), whatever the
        dataset's own transform.
        """
        self._check_fitted()
        self._check_compatible(data)
        eta, _, _ = self._predict(_without_augmentation(data))
        return pd.Series(eta, index=pd.Index(data.patient_ids), name="log_hazard")

    def predict_score(self, data: ImageCohortDataset) -> np.ndarray:
        """Ranking score for concordance metrics (higher = higher risk): the log hazard."""
        return self.predict_log_hazard(data).to_numpy()

    def predict_survival(
        self, data: ImageCohortDataset, times: Sequence[float] | np.ndarray | None = None
    ) -> pd.DataFrame:
        r"""Absolute survival from fracture :math:`S(t \mid \text{images}, x)`, patients x times.

        Parameters
        ----------
        data : ImageCohortDataset
            Patients to predict for, built with the training preprocessing.
        times : array-like of float, optional
            Times in years; by default every whole year up to the longest training
            follow-up.

        Returns
        -------
        pandas.DataFrame
            Rows are patients (by id), columns the times; values in [0, 1], non-increasing
            along each row. Death is treated as censoring (cause-specific survival).
        """
        eta = self.predict_log_hazard(data)
        if times is None:
            years = np.arange(1.0, np.floor(self.baseline_hazard_.max_time_) + 1.0)
            times = years if years.size else np.array([self.baseline_hazard_.max_time_])
        times = np.asarray(times, dtype=np.float64)
        surv = self.baseline_hazard_.survival(eta.to_numpy(), times)
        return pd.DataFrame(surv, index=eta.index, columns=pd.Index(times, name="time (years)"))

    def grad_cam(
        self,
        data: ImageCohortDataset,
        positions: Sequence[int] | None = None,
        *,
        reference: ImageCohortDataset | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Grad-CAM maps of the log hazard for some patients of a dataset.

        Parameters
        ----------
        data : ImageCohortDataset
            Patients, built with the training preprocessing; read without augmentation.
        positions : sequence of int, optional
            Item positions in ``data`` (default: all; mind the memory for large datasets).
        reference : ImageCohortDataset, optional
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

        self._check_fitted()
        self._check_compatible(data)
        reference = data if reference is None else reference
        self._check_compatible(reference, "reference")
        device = resolve_device(self.device)
        network = self.network_.to(device)
        reference_maps = mean_feature_maps(
            network, self._loader(_without_augmentation(reference), shuffle=False)
        )
        view = _without_augmentation(data)
        positions = range(len(view)) if positions is None else positions
        items = [view[int(p)] for p in positions]
        if not items:
            raise ValueError("positions must name at least one patient")
        images = torch.stack([item[0] for item in items])
        covariates = torch.stack([item[1] for item in items])
        maps = grad_cam(network, images.to(device), covariates.to(device), reference=reference_maps)
        return images, maps.cpu()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save to a directory: ``config.json`` plus ``weights.safetensors`` (no pickle).

        :func:`fracrisk.load_model` rebuilds a model whose predictions are bit-identical.
        """
        self._check_fitted()
        tensors = {
            f"network.{k}": v.detach().cpu().contiguous()
            for k, v in self.network_.state_dict().items()
        }
        tensors.update(_baseline_tensors(self.baseline_hazard_))
        config = {
            "image_config": self.image_config_,
            "covariate_names": self.covariate_names_,
            "preprocessor": None if self.preprocessor_ is None else self.preprocessor_.to_dict(),
            "n_train": self.n_train_,
        }
        return self._write(path, config, tensors, overwrite=overwrite)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict[str, torch.Tensor]) -> ImageSurvivalModel:
        model = cls(**config["params"])
        model.image_config_ = config["image_config"]
        model.covariate_names_ = config["covariate_names"]
        model.preprocessor_ = (
            None
            if config["preprocessor"] is None
            else TabularPreprocessor.from_dict(config["preprocessor"])
        )
        network = model._build_network(model.image_config_, len(model.covariate_names_))
        network.load_state_dict(_prefixed(tensors, "network"))
        model.network_ = network.eval()
        model.baseline_hazard_ = _baseline_from_tensors(tensors)
        model.n_train_ = config["n_train"]
        return model
