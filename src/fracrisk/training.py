"""The training engine: mini-batch Cox training with early stopping, on any device.

A batch is a tuple ``(*inputs, time, event)``: the network is called as
``module(*inputs)``, time is in years and event is 0/1 for the event of interest. So
``(features, time, event)`` calls ``module(features)`` (a feature tensor, or a dict or
tuple passed as one argument), and ``(images, covariates, time, event)`` calls
``module(images, covariates)``, as :class:`fracrisk.encoders.FusionSurvivalNet` takes them.
The engine knows nothing about what the network is, so image encoders with a survival head
train with the same code. The network returns the log hazard ratio, shape (batch,) or
(batch, 1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn

from fracrisk.losses import cox_partial_likelihood

__all__ = [
    "TrainingConfig",
    "TrainingHistory",
    "predict_batches",
    "resolve_device",
    "train_cox_network",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else is passed through."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrainingConfig:
    """Settings of :func:`train_cox_network`.

    Attributes
    ----------
    learning_rate : float, default 1e-3
        Adam step size.
    weight_decay : float, default 1e-4
        Decoupled weight decay (AdamW).
    max_epochs : int, default 300
        Upper bound on passes over the training data.
    patience : int, default 20
        Stop after this many epochs without a better validation loss; the best weights
        are restored.
    ties : {"efron", "breslow"}, default "efron"
        Tie handling in the Cox loss.
    device : str, default "auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    mixed_precision : bool or "auto", default "auto"
        bfloat16 autocast for the network on CUDA (the loss is always computed in
        float32); ``"auto"`` enables it on CUDA only.
    progress : bool, default False
        Show a progress bar over epochs.
    """

    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 300
    patience: int = 20
    ties: str = "efron"
    device: str = "auto"
    mixed_precision: bool | str = "auto"
    progress: bool = False

    @classmethod
    def from_estimator(cls, estimator) -> TrainingConfig:
        """The settings an estimator holds as attributes of the same names."""
        return cls(**{f.name: getattr(estimator, f.name) for f in fields(cls)})


@dataclass
class TrainingHistory:
    """Per-epoch mean training and validation loss, and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


def _to_device(inputs, device):
    if isinstance(inputs, dict):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs.to(device, non_blocking=True) if isinstance(inputs, torch.Tensor) else inputs


def _split_batch(batch) -> tuple[tuple, object, object]:
    """``(*inputs, time, event)`` -> ``(inputs, time, event)``, with at least one input."""
    n = len(batch) if isinstance(batch, (tuple, list)) else None
    if n is None or n < 3:
        got = f"{n} elements" if n is not None else f"a {type(batch).__name__}"
        raise ValueError(
            f"a batch must be a tuple (*inputs, time, event) with at least one input, got {got}"
        )
    return tuple(batch[:-2]), batch[-2], batch[-1]


def _autocast(device: torch.device, mixed_precision: bool | str):
    enabled = device.type == "cuda" and mixed_precision in (True, "auto")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def predict_batches(
    module: nn.Module,
    batches: Iterable[tuple],
    *,
    device: str | torch.device = "auto",
    mixed_precision: bool | str = "auto",
) -> Iterator[tuple]:
    """Yield ``(log_hazard, time, event)`` numpy arrays batch by batch, in eval mode.

    Each batch is ``(*inputs, time, event)`` and the network is called as
    ``module(*inputs)``, as in :func:`train_cox_network`.

    Only three numbers per patient leave the loop, so a DataLoader of images can be
    streamed into :class:`~fracrisk.baseline_hazard.BreslowBaselineHazard` or into metrics.
    """
    device = resolve_device(device)
    module.eval()
    with torch.no_grad():
        for batch in batches:
            inputs, time, event = _split_batch(batch)
            with _autocast(device, mixed_precision):
                eta = module(*_to_device(inputs, device))
            yield (
                eta.float().reshape(-1).cpu().numpy().astype(np.float64),
                np.asarray(time, dtype=np.float64),
                np.asarray(event),
            )


def _validation_loss(module, batches, device, config) -> float:
    """Cox loss over the whole validation set at once (exact risk sets), per event."""
    etas, times, events = [], [], []
    for eta, time, event in predict_batches(
        module, batches, device=device, mixed_precision=config.mixed_precision
    ):
        etas.append(eta)
        times.append(time)
        events.append(event)
    eta = torch.from_numpy(np.concatenate(etas))
    event = torch.from_numpy(np.concatenate(events)) == 1
    if not bool(event.any()):
        return math.nan
    return float(
        cox_partial_likelihood(
            eta, torch.from_numpy(np.concatenate(times)), event, ties=config.ties
        )
    )


def train_cox_network(
    module: nn.Module,
    train_batches: Iterable[tuple],
    val_batches: Iterable[tuple] | None,
    config: TrainingConfig,
) -> TrainingHistory:
    """Train ``module`` by minimising the Cox partial likelihood; returns its history.

    Each training batch is its own risk set (the usual mini-batch Cox loss); a batch
    without events contributes a zero loss and no gradient. With ``val_batches`` the
    validation loss (exact, over the whole validation set) drives early stopping and the
    best weights are restored at the end; without, training runs ``max_epochs``.
    ``train_batches`` and ``val_batches`` must be re-iterable (e.g. DataLoaders) of
    ``(*inputs, time, event)`` tuples; the network is called as ``module(*inputs)``, so a
    loader of ``(images, covariates, time, event)`` trains an image-and-covariate network.
    Reproducibility is the caller's: seed the global RNG and the loader's generator.
    """
    device = resolve_device(config.device)
    module.to(device)
    optimiser = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    history = TrainingHistory()
    best_loss, best_state, since_best = math.inf, None, 0
    epochs: Iterable[int] = range(config.max_epochs)
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(epochs, desc="training", unit="epoch", disable=None)  # off when not a TTY
        epochs = bar
    for epoch in epochs:
        module.train()
        total, n_events = 0.0, 0
        for batch in train_batches:
            inputs, time, event = _split_batch(batch)
            time, event = time.to(device), event.to(device) == 1
            with _autocast(device, config.mixed_precision):
                eta = module(*_to_device(inputs, device))
            loss = cox_partial_likelihood(
                eta.float(), time, event, ties=config.ties, reduction="sum"
            )
            k = int(event.sum())
            optimiser.zero_grad(set_to_none=True)
            (loss / max(k, 1)).backward()
            optimiser.step()
            total, n_events = total + float(loss.detach()), n_events + k
        history.train_loss.append(total / max(n_events, 1))
        if val_batches is None:
            continue
        val = _validation_loss(module, val_batches, device, config)
        history.val_loss.append(val)
        if bar is not None:
            bar.set_postfix(train=f"{history.train_loss[-1]:.4f}", val=f"{val:.4f}")
        if val < best_loss - 1e-7:
            best_loss, since_best, history.best_epoch = val, 0, epoch
            best_state = copy.deepcopy(module.state_dict())
        else:
            since_best += 1
            if since_best >= config.patience:
                history.stopped_early = True
                break
    if bar is not None:
        bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        history.best_epoch = len(history.train_loss) - 1
    module.eval()
    return history
