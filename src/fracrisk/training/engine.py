"""Train a survival network with PyTorch Lightning; stream its predictions.

:func:`fit_cox_network` builds a Lightning ``Trainer`` from a
:class:`~fracrisk.training.TrainingConfig` (accelerator, devices, strategy, nodes,
precision, clipping, schedule, early stopping, atomic checkpoints, loggers) and trains a
:class:`~fracrisk.training.CoxLightningModule`. DeepSurv, the image models and anything
else that maps ``(*inputs)`` to a log hazard train through it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fracrisk.training.callbacks import (
    BestWeights,
    EpochProgressBar,
    SafeCheckpointIO,
    TrainingHistory,
)
from fracrisk.training.config import (
    TrainingConfig,
    resolve_accelerator,
    resolve_device,
    resolve_precision,
)
from fracrisk.training.module import CoxLightningModule, split_batch
from fracrisk.training.sampler import EventStratifiedBatchSampler

__all__ = [
    "LAST_CHECKPOINT",
    "CoxDataModule",
    "FitResult",
    "fit_lightning",
    "fit_cox_network",
    "predict_batches",
]

#: The checkpoint ``resume=True`` continues from, in ``checkpoint_dir``.
LAST_CHECKPOINT = "last.ckpt"


class FitResult:
    """What a training run returns: its history and the global rank of this process."""

    def __init__(self, history: TrainingHistory, global_rank: int, world_size: int) -> None:
        self.history, self.global_rank, self.world_size = history, global_rank, world_size


def _has_set_epoch(dataset) -> bool:
    while dataset is not None:
        if hasattr(dataset, "set_epoch"):
            return True
        dataset = getattr(dataset, "dataset", None)
    return False


class CoxDataModule(pl.LightningDataModule):
    """Builds the loaders once Lightning knows this process's rank and the world size."""

    def __init__(self, train_data, train_event, val_data, config: TrainingConfig) -> None:
        super().__init__()
        self.train_data, self.train_event = train_data, train_event
        self.val_data, self.config = val_data, config

    def _workers(self, dataset) -> dict:
        n = self.config.num_workers
        # Augmentation reads the dataset's epoch inside the workers: they must start
        # afresh each epoch to see it.
        return {"num_workers": n, "persistent_workers": n > 0 and not _has_set_epoch(dataset)}

    def train_dataloader(self) -> DataLoader:
        """The rank's share of every global batch (event-stratified, seeded by epoch)."""
        sampler = EventStratifiedBatchSampler(
            self.train_event,
            self.config.batch_size,
            shuffle=True,
            seed=self.config.seed,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )
        return DataLoader(
            self.train_data,
            batch_sampler=sampler,
            generator=torch.Generator().manual_seed(self.config.seed),
            **self._workers(self.train_data),
        )

    def val_dataloader(self):
        """The whole validation set, in order, on every rank."""
        if self.val_data is None:
            return []
        return DataLoader(
            self.val_data,
            batch_size=self.config.batch_size,
            generator=torch.Generator().manual_seed(self.config.seed),
            **self._workers(self.val_data),
        )


@contextmanager
def _quiet_lightning():
    """Silence Lightning's start-up chatter (device banners, tips, summaries)."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # device banners and tips; the progress bar is separate
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*number of training batches.*")
        warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
        # ours to manage: resume=True or a refusal to overwrite decides what happens there
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not")
        warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)`.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _logger(config: TrainingConfig, root: Path | None):
    if config.logger is None or root is None:
        return False
    from lightning.pytorch import loggers

    if config.logger == "csv":
        return loggers.CSVLogger(str(root), name="logs")  # logs/version_N: one per (re)start
    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}
    if config.logger in needs and not any(
        importlib.util.find_spec(m) for m in needs[config.logger]
    ):
        raise ValueError(
            f"logger={config.logger!r} needs the {needs[config.logger][0]} package, which is "
            f"not installed (pip install {needs[config.logger][0]}); or use logger='csv'"
        )
    if config.logger == "tensorboard":
        return loggers.TensorBoardLogger(str(root), name="logs")
    return loggers.MLFlowLogger(experiment_name="fracrisk", save_dir=str(root / "mlruns"))


def fit_lightning(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    config: TrainingConfig,
    *,
    has_validation: bool,
    steps_per_epoch: int,
    monitor_mode: str | None = None,
    resume: bool = False,
    callbacks: Sequence = (),
) -> FitResult:
    """Train any Lightning module with fracrisk's devices, checkpoints, logs and seeding.

    The engine under :func:`fit_cox_network` and the keypoint detector's training. The
    module logs ``train_loss`` (and ``val_loss`` / ``val_uno_c`` when it validates) and
    exposes ``network`` (whose best weights are kept) and ``epoch_train_loss()``.

    Parameters
    ----------
    module : lightning.pytorch.LightningModule
        The maths of a step. It should reseed torch from ``(config.seed, epoch)`` at each
        epoch start (see :class:`CoxLightningModule`) so that a resumed run is identical.
    datamodule : lightning.pytorch.LightningDataModule
        Builds the loaders once the rank and world size are known.
    config : TrainingConfig
        Devices, precision, clipping, early stopping, checkpoints, logger, progress.
    has_validation : bool
        Whether ``datamodule`` validates (early stopping and kept weights need it).
    steps_per_epoch : int
        Optimiser steps per epoch (logging interval).
    monitor_mode : {"min", "max"}, optional
        Direction of ``config.early_stopping``'s metric; by default ``"max"`` for a C-index.
    resume : bool, default False
        Go on from ``checkpoint_dir/last.ckpt`` (from scratch when there is none yet, so
        a preempted cluster job can be requeued with the same command).
    callbacks : sequence of lightning.pytorch.Callback
        Extra callbacks.

    Returns
    -------
    FitResult

    Raises
    ------
    DeviceUnavailableError
        If the accelerator asks for a GPU that is absent.
    FileExistsError
        If ``checkpoint_dir`` holds a checkpoint and ``resume`` is False (a finished or
        interrupted run is never overwritten silently).
    """
    accelerator = resolve_accelerator(config.accelerator, config.devices)
    precision = resolve_precision(config.precision, accelerator)
    root = None if config.checkpoint_dir is None else Path(config.checkpoint_dir)
    ckpt_path = None
    if resume and root is None:
        raise ValueError("resume=True needs checkpoint_dir: where the checkpoints are")
    if root is not None and (root / LAST_CHECKPOINT).exists():
        if not resume:
            raise FileExistsError(
                f"{str(root / LAST_CHECKPOINT)!r} holds an earlier run; pass resume=True to "
                "continue it, or choose another checkpoint_dir"
            )
        ckpt_path = str(root / LAST_CHECKPOINT)

    monitor = config.early_stopping if has_validation else None
    best = BestWeights(monitor, mode=monitor_mode)
    all_callbacks: list = [best]
    if monitor is not None:
        all_callbacks.append(
            EarlyStopping(
                monitor=monitor,
                patience=config.patience,
                mode=best.mode,
                min_delta=1e-7,
                check_finite=False,
            )
        )
    if root is not None:
        all_callbacks.append(
            # One file, replaced (atomically, by SafeCheckpointIO) at the end of every epoch.
            ModelCheckpoint(
                dirpath=str(root),
                filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
                monitor=None,
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
            )
        )
    if config.progress:
        all_callbacks.append(EpochProgressBar(steps_per_epoch))
    all_callbacks.extend(callbacks)
    with _quiet_lightning(), tempfile.TemporaryDirectory() as scratch:
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=config.devices if accelerator != "cpu" or config.devices != "auto" else 1,
            strategy=config.strategy,
            num_nodes=config.num_nodes,
            precision=precision,
            max_epochs=config.max_epochs,
            gradient_clip_val=config.gradient_clip_val,
            callbacks=all_callbacks,
            logger=_logger(config, root),
            default_root_dir=str(root) if root is not None else scratch,
            enable_checkpointing=root is not None,
            enable_progress_bar=bool(config.progress),
            enable_model_summary=False,
            use_distributed_sampler=False,
            num_sanity_val_steps=0,
            limit_val_batches=1.0 if has_validation else 0,
            log_every_n_steps=max(1, min(50, steps_per_epoch)),
            plugins=[SafeCheckpointIO()],
        )
        # Each epoch reseeds torch from (seed, epoch); the caller's random state is kept.
        cuda = list(range(torch.cuda.device_count())) if accelerator == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    module.network.cpu().eval()
    return FitResult(best.history, trainer.global_rank, trainer.world_size)


def fit_cox_network(
    network: nn.Module,
    train_data: Dataset,
    train_event: np.ndarray,
    val_data: Dataset | None,
    config: TrainingConfig,
    *,
    resume: bool = False,
    callbacks: Sequence = (),
    auxiliary_weights: Sequence[float] | None = None,
    survival_weight: float = 1.0,
) -> FitResult:
    """Train ``network`` on its head's survival loss with Lightning (Cox's by default).

    The loss follows the head's ``objective`` (:class:`CoxLightningModule`): the mini-batch
    Cox partial likelihood, the cause-specific pair's two, or a discrete-time head's own.

    Parameters
    ----------
    network : torch.nn.Module
        Called as ``network(*inputs)`` on batches ``(*inputs, time, event)``; trained in
        place and left on the CPU with the kept weights (the best validation epoch, or
        the last).
    train_data : Dataset
        Items ``(*inputs, time, event)``.
    train_event : numpy.ndarray of bool, shape = (len(train_data),)
        Which items are events, for :class:`EventStratifiedBatchSampler`.
    val_data : Dataset or None
        Validation items (early stopping, kept weights); None trains ``max_epochs``.
    config : TrainingConfig
        Devices, precision, optimiser, schedule, checkpoints, logger.
    resume, callbacks
        As in :func:`fit_lightning`.
    auxiliary_weights : sequence of float, optional
        Weights of the network's dense targets; the items are then
        ``(*inputs, targets, time, event)`` (:class:`CoxLightningModule`).
    survival_weight : float, default 1.0
        Weight of the Cox loss; 0 trains on the dense targets alone, and early stopping
        (``config.early_stopping`` set) then watches ``val_aux_loss``.

    Returns
    -------
    FitResult
    """
    if survival_weight == 0 and config.early_stopping is not None:
        config = dataclasses.replace(config, early_stopping="val_aux_loss")
    if len(train_data) != len(train_event):
        raise ValueError(f"train_event has {len(train_event)} values for {len(train_data)} items")
    steps = len(
        EventStratifiedBatchSampler(train_event, config.batch_size, world_size=1)
    )  # global batches per epoch, the same on every rank
    return fit_lightning(
        CoxLightningModule(
            network,
            config,
            steps_per_epoch=steps,
            auxiliary_weights=auxiliary_weights,
            survival_weight=survival_weight,
        ),
        CoxDataModule(train_data, np.asarray(train_event, bool), val_data, config),
        config,
        has_validation=val_data is not None,
        steps_per_epoch=steps,
        monitor_mode="max" if config.early_stopping == "val_uno_c" else "min",
        resume=resume,
        callbacks=callbacks,
    )


def predict_batches(
    module: nn.Module,
    batches: Iterable[tuple],
    *,
    device: str | torch.device = "auto",
    precision: str | None = None,
) -> Iterator[tuple]:
    """Yield ``(output, time, event)`` numpy arrays batch by batch, in eval mode.

    Each batch is ``(*inputs, time, event)`` and the network is called as
    ``module(*inputs)``. The output is the log hazard, shape (batch,), for a Cox head, and
    the head's outputs as they are otherwise (e.g. (batch, 2) for the cause-specific pair).
    bf16 autocast on CUDA unless ``precision`` is ``"32-true"``.

    Only three numbers per patient leave the loop, so a DataLoader of images can be
    streamed into :class:`~fracrisk.baseline_hazard.BreslowBaselineHazard` or into metrics.
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device.type)
    module.to(device).eval()
    autocast = torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16")
    )
    with torch.no_grad():
        for batch in batches:
            inputs, time, event = split_batch(batch)
            with autocast:
                eta = module(*_to_device(inputs, device)).float()
            if eta.dim() == 2 and eta.shape[1] == 1:
                eta = eta.reshape(-1)
            yield (
                eta.cpu().numpy().astype(np.float64),
                np.asarray(time, dtype=np.float64),
                np.asarray(event),
            )


def _to_device(inputs, device):
    if isinstance(inputs, dict):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs.to(device, non_blocking=True) if isinstance(inputs, torch.Tensor) else inputs
