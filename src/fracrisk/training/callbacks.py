"""Lightning callbacks and checkpoint I/O of fracrisk's engine."""

from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import TQDMProgressBar

__all__ = ["BestWeights", "EpochProgressBar", "SafeCheckpointIO", "TrainingHistory"]


class TrainingHistory:
    """Per-epoch training and validation metrics, and the epoch whose weights were kept.

    Attributes
    ----------
    train_loss, val_loss, val_uno_c : list of float
        One value per epoch (the validation lists are empty without validation data).
    best_epoch : int
        Epoch (from 0) whose weights the model keeps.
    stopped_early : bool
        Whether early stopping ended training before ``max_epochs``.
    """

    def __init__(self) -> None:
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.val_uno_c: list[float] = []
        self.best_epoch = -1
        self.stopped_early = False

    def state_dict(self) -> dict:
        """The history as plain values (for checkpoints)."""
        return {
            "train_loss": list(self.train_loss),
            "val_loss": list(self.val_loss),
            "val_uno_c": list(self.val_uno_c),
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a history from :meth:`state_dict`."""
        for key, value in state.items():
            setattr(self, key, list(value) if isinstance(value, list) else value)

    def to_frame(self):
        """The history as a DataFrame, one row per epoch."""
        import pandas as pd

        n = len(self.train_loss)
        data = {"train_loss": self.train_loss}
        for key in ("val_loss", "val_uno_c"):
            values = getattr(self, key)
            if values:
                data[key] = values + [math.nan] * (n - len(values))
        return pd.DataFrame(data, index=pd.RangeIndex(n, name="epoch"))

    def __repr__(self) -> str:
        return (
            f"TrainingHistory(epochs={len(self.train_loss)}, best_epoch={self.best_epoch}, "
            f"stopped_early={self.stopped_early})"
        )


class BestWeights(pl.Callback):
    """Record each epoch's metrics and keep the best epoch's weights; restore them at the end.

    Its state (history, best value, best weights) is part of every checkpoint, so a
    resumed run ends with the same weights as an uninterrupted one.

    Parameters
    ----------
    monitor : str or None
        The validation metric (``"val_loss"``, ``"val_uno_c"``, ...); None keeps the last
        epoch's weights.
    mode : {"min", "max"}, optional
        Whether lower or higher is better; default ``"max"`` for ``"val_uno_c"``.
    """

    def __init__(self, monitor: str | None, mode: str | None = None) -> None:
        self.monitor = monitor
        self.mode = mode or ("max" if monitor == "val_uno_c" else "min")
        self.history = TrainingHistory()
        self.best_value = -math.inf if self.mode == "max" else math.inf
        self.best_state: dict[str, torch.Tensor] | None = None

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "max":
            return value > self.best_value + 1e-9
        return value < self.best_value - 1e-7

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Record the epoch's training loss."""
        self.history.train_loss.append(float(pl_module.epoch_train_loss()))

    def on_validation_end(self, trainer, pl_module) -> None:
        """Record the validation metrics; keep the weights if they are the best so far."""
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        for key in ("val_loss", "val_uno_c"):
            getattr(self.history, key).append(float(metrics.get(key, math.nan)))
        if self.monitor is None:
            return
        value = float(metrics.get(self.monitor, math.nan))
        if self._better(value):
            self.best_value = value
            self.history.best_epoch = trainer.current_epoch
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in pl_module.network.state_dict().items()
            }

    def on_fit_end(self, trainer, pl_module) -> None:
        """Restore the best weights."""
        n = len(self.history.train_loss)
        self.history.stopped_early = bool(trainer.should_stop and n < trainer.max_epochs)
        if self.best_state is not None:
            pl_module.network.load_state_dict(self.best_state)
        else:
            self.history.best_epoch = n - 1

    def state_dict(self) -> dict[str, Any]:
        """History, best value and best weights, saved in every checkpoint."""
        return {
            "history": self.history.state_dict(),
            "best_value": self.best_value,
            "best_state": None if self.best_state is None else copy.copy(self.best_state),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from a checkpoint."""
        self.history.load_state_dict(state_dict["history"])
        self.best_value = state_dict["best_value"]
        self.best_state = state_dict["best_state"]


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically and read back with ``torch.load(weights_only=True)``.

    A run killed while writing leaves the previous ``last.ckpt`` intact (the new one is
    written beside it and renamed over it), and loading a checkpoint never executes code.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename)."""
        from fracrisk._io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Read a checkpoint with ``weights_only=True`` whatever is asked: no code runs."""
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint {str(path)!r} not found")
        location = map_location if map_location is not None else (lambda storage, loc: storage)
        return torch.load(path, map_location=location, weights_only=True)


class EpochProgressBar(TQDMProgressBar):
    """Lightning's progress bar, without the validation bar that flickers under it each epoch.

    In a log file (not a terminal) it refreshes once per epoch instead of every step.
    """

    def __init__(self, steps_per_epoch: int) -> None:
        interactive = sys.stderr.isatty() or sys.stdout.isatty()
        super().__init__(refresh_rate=1 if interactive else max(1, int(steps_per_epoch)))

    def init_validation_tqdm(self):
        """A disabled bar: validation is one short pass, its numbers go in the epoch bar."""
        bar = super().init_validation_tqdm()
        bar.disable = True
        return bar
