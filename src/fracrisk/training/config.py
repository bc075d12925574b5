"""Settings of a training run, with Lightning's own names, and the devices they resolve to."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import torch

from fracrisk._params import InstanceOf, Interval, Options

__all__ = [
    "TRAINING_CONSTRAINTS",
    "TrainingConfig",
    "resolve_accelerator",
    "resolve_device",
    "resolve_precision",
]

_GPU_NAMES = ("gpu", "cuda")


@dataclass
class TrainingConfig:
    """Settings of :func:`fracrisk.training.fit_cox_network`.

    The device options are PyTorch Lightning's, passed to its ``Trainer`` unchanged.

    Attributes
    ----------
    learning_rate : float, default 1e-3
        AdamW step size (the peak step size under ``lr_schedule="onecycle"``).
    weight_decay : float, default 1e-4
        Decoupled weight decay (AdamW).
    batch_size : int, default 256
        Patients per **global** batch, whatever the number of devices: a sampler deals
        each global batch out to the ranks, and the Cox loss is computed over the global
        batch (its risk sets), so ``devices=2`` sees the same batches as ``devices=1``.
    max_epochs : int, default 300
        Upper bound on passes over the training data.
    patience : int, default 20
        Early stopping: stop after this many epochs without a better monitored value; the
        best epoch's weights are kept.
    early_stopping : {"val_loss", "val_uno_c"} or None, default "val_loss"
        What early stopping (and the choice of the weights kept) watches on the
        validation patients: the exact Cox loss over all of them (per event, lower is
        better) or Uno's C (higher is better). None trains ``max_epochs`` and keeps the
        last weights.
    lr_schedule : {"constant", "onecycle", "cosine"}, default "constant"
        Learning-rate schedule: one-cycle (per step, peak ``learning_rate``) or cosine
        annealing to 0 over ``max_epochs``.
    gradient_clip_val : float or None, default None
        Clip the gradient norm (L2, over all parameters) to this value.
    ties : {"efron", "breslow"}, default "efron"
        Tie handling in the Cox loss.
    accelerator : str, default "auto"
        Lightning's accelerator: ``"auto"`` (CUDA when available), ``"cpu"``, ``"gpu"``,
        ``"cuda"``, ``"mps"``. Asking for a GPU that is absent is a
        :class:`~fracrisk.exceptions.DeviceUnavailableError`.
    devices : int, str or list of int, default "auto"
        Lightning's devices (``"auto"``, a count, or device indices).
    strategy : str, default "auto"
        Lightning's strategy (``"ddp"``, ``"ddp_spawn"``, ...).
    num_nodes : int, default 1
        Machines taking part.
    precision : str or None, default None
        Lightning's precision; None means ``"bf16-mixed"`` on a GPU and ``"32-true"``
        elsewhere. The Cox loss is always computed in float32 or wider.
    num_workers : int, default 0
        DataLoader worker processes.
    checkpoint_dir : str or None, default None
        Where ``last.ckpt`` is written (atomically) after every epoch, and the CSV
        log (``logs/``) beside it. Needed for ``resume=True``.
    logger : {"csv", "tensorboard", "mlflow"} or None, default "csv"
        Where per-epoch metrics go (in ``checkpoint_dir``; without one nothing is
        written, and the history stays in memory).
    seed : int, default 0
        Seeds the batches, dropout and augmentation of every epoch from (seed, epoch)
        alone, which makes a resumed run bit-identical to an uninterrupted one.
    progress : bool, default False
        Lightning's progress bar.
    """

    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 300
    patience: int = 20
    early_stopping: str | None = "val_loss"
    lr_schedule: str = "constant"
    gradient_clip_val: float | None = None
    ties: str = "efron"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    num_workers: int = 0
    checkpoint_dir: str | os.PathLike | None = None
    logger: str | None = "csv"
    seed: int = 0
    progress: bool = False

    @classmethod
    def from_estimator(cls, estimator) -> TrainingConfig:
        """The settings an estimator holds as attributes of the same names."""
        return cls(
            **{
                f.name: getattr(estimator, f.name)
                for f in fields(cls)
                if hasattr(estimator, f.name)
            }
        )


#: The constraints of the training settings, shared by every estimator that trains a network.
TRAINING_CONSTRAINTS: dict[str, list] = {
    "learning_rate": [Interval(float, 0, None, closed="neither")],
    "weight_decay": [Interval(float, 0, None)],
    "batch_size": [Interval(int, 2, None)],
    "max_epochs": [Interval(int, 1, None)],
    "patience": [Interval(int, 1, None)],
    "early_stopping": [None, Options("val_loss", "val_uno_c")],
    "lr_schedule": [Options("constant", "onecycle", "cosine")],
    "gradient_clip_val": [None, Interval(float, 0, None, closed="neither")],
    "ties": [Options("efron", "breslow")],
    "accelerator": [Options("auto", "cpu", "gpu", "cuda", "mps")],
    "devices": [
        Options("auto"),
        Interval(int, 1, None),
        InstanceOf(list, tuple, description="a list of device indices"),
    ],
    "strategy": [InstanceOf(str, description="a Lightning strategy name")],
    "num_nodes": [Interval(int, 1, None)],
    "precision": [
        None,
        Options("32-true", "32", "64-true", "64", "bf16-mixed", "16-mixed", "bf16-true"),
    ],
    "num_workers": [Interval(int, 0, None)],
    "checkpoint_dir": [None, InstanceOf(str, os.PathLike, description="a directory path")],
    "logger": [None, Options("csv", "tensorboard", "mlflow")],
    "seed": [Interval(int, 0, None)],
    "progress": [Options(True, False)],
}


def resolve_accelerator(accelerator: str = "auto", devices: Any = "auto") -> str:
    """The accelerator a run will use: ``"cuda"``, ``"mps"`` or ``"cpu"``.

    Raises
    ------
    DeviceUnavailableError
        If a GPU is asked for and torch sees none, or more GPUs than there are.
    """
    from fracrisk.exceptions import DeviceUnavailableError

    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator in _GPU_NAMES:
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"accelerator={accelerator!r} asks for a GPU, but torch sees none "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                "use accelerator='auto' or 'cpu'"
            )
        wanted = (
            devices
            if isinstance(devices, int)
            else len(devices)
            if isinstance(devices, (list, tuple))
            else 1
        )
        if wanted > torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"devices={devices!r} asks for {wanted} GPUs; this machine has "
                f"{torch.cuda.device_count()}"
            )
        return "cuda"
    if accelerator == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise DeviceUnavailableError("accelerator='mps' asks for Apple's GPU; none is available")
    return accelerator


def resolve_precision(precision: str | None, accelerator: str) -> str:
    """``precision``, or the default: bf16 mixed precision on CUDA, float32 elsewhere."""
    if precision is not None:
        return precision
    if accelerator == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """One device for prediction: ``"auto"`` picks CUDA when available, else the CPU.

    ``"gpu"`` means ``"cuda"``; a CUDA device that is absent is a
    :class:`~fracrisk.exceptions.DeviceUnavailableError`.
    """
    name = str(device)
    if name in ("auto", "cpu", "gpu", "cuda", "mps"):
        return torch.device(resolve_accelerator(name))
    resolved = torch.device(name)
    if resolved.type == "cuda":
        resolve_accelerator("cuda", devices=(resolved.index or 0) + 1)
    return resolved
