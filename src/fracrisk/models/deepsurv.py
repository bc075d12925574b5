"""DeepSurv: a Cox model whose log hazard ratio is a multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from fracrisk.data.cohort import Cohort
from fracrisk.data.splits import split_cohort
from fracrisk.models._base import SurvivalEstimator
from fracrisk.training import TrainingConfig, TrainingHistory, train_cox_network

__all__ = ["DeepSurv"]


class DeepSurv(SurvivalEstimator):
    r"""DeepSurv (Katzman et al. 2018): :math:`h(t \mid x) = h_0(t) \exp(g_\theta(x))`.

    :math:`g_\theta` is a :class:`~fracrisk.heads.DeepSurvHead` trained with AdamW on the
    mini-batch Cox partial likelihood (exact Efron ties by default). A stratified part of
    the training data is held out for early stopping; the best epoch's weights are kept.
    The baseline hazard is Breslow's estimator on the whole training data, so the model
    gives absolute survival curves, not only a ranking.

    Parameters
    ----------
    hidden : sequence of int, default (32, 32)
        Hidden layer widths.
    dropout : float, default 0.1
        Dropout after each hidden block.
    norm : {"batch", "layer", "none"}, default "batch"
        Normalisation in each hidden block.
    activation : str, default "relu"
        Activation function (see :class:`~fracrisk.heads.DeepSurvHead`).
    learning_rate : float, default 1e-3
        AdamW step size.
    weight_decay : float, default 1e-4
        AdamW weight decay.
    batch_size : int, default 256
        Patients per mini-batch; each batch is its own risk set.
    max_epochs : int, default 300
        Upper bound on epochs.
    patience : int, default 20
        Early-stopping patience in epochs.
    validation_fraction : float, default 0.2
        Share of the training patients held out (stratified by event) for early
        stopping; 0 trains for ``max_epochs`` without early stopping.
    ties : {"efron", "breslow"}, default "efron"
        Tie handling in the loss.
    device : str, default "auto"
        ``"auto"`` uses CUDA when available.
    mixed_precision : bool or "auto", default "auto"
        bfloat16 autocast on CUDA.
    seed : int, default 0
        Seeds weight initialisation, dropout, shuffling and the validation split; the
        caller's random state is left untouched.
    progress : bool, default False
        Show a progress bar.

    Attributes
    ----------
    history_ : TrainingHistory
        Training and validation loss per epoch.
    """

    _params = (
        "hidden",
        "dropout",
        "norm",
        "activation",
        "learning_rate",
        "weight_decay",
        "batch_size",
        "max_epochs",
        "patience",
        "validation_fraction",
        "ties",
        "device",
        "mixed_precision",
        "seed",
        "progress",
    )
    _head_name = "deepsurv"

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (32, 32),
        dropout: float = 0.1,
        norm: str = "batch",
        activation: str = "relu",
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 300,
        patience: int = 20,
        validation_fraction: float = 0.2,
        ties: str = "efron",
        device: str = "auto",
        mixed_precision: bool | str = "auto",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {batch_size!r}")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout, self.norm, self.activation = dropout, norm, activation
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.validation_fraction, self.ties = validation_fraction, ties
        self.device, self.mixed_precision, self.seed = device, mixed_precision, seed
        self.progress = progress

    def _head_kwargs(self) -> dict:
        return {
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "norm": self.norm,
            "activation": self.activation,
        }

    def _loader(self, x, time, event, rows, *, shuffle: bool) -> DataLoader:
        data = TensorDataset(
            torch.as_tensor(x[rows], dtype=torch.float32),
            torch.as_tensor(time[rows]),
            torch.as_tensor(event[rows]),
        )
        generator = torch.Generator().manual_seed(self.seed)
        # A last batch of one patient would break batch normalisation and carries no
        # comparable pair, so it is dropped (a different one each epoch when shuffling).
        drop_last = shuffle and len(rows) % self.batch_size == 1
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            drop_last=drop_last,
        )

    def _fit_network(
        self, x: np.ndarray, time: np.ndarray, event: np.ndarray, cohort: Cohort
    ) -> None:
        positions = np.arange(len(cohort))
        if self.validation_fraction > 0:
            _, val = split_cohort(
                cohort, self.validation_fraction, method="stratified", seed=self.seed
            )
            is_val = cohort.df.index.isin(val.df.index)
            train_rows, val_rows = positions[~is_val], positions[is_val]
        else:
            train_rows, val_rows = positions, None
        train_loader = self._loader(x, time, event, train_rows, shuffle=True)
        val_loader = (
            None if val_rows is None else self._loader(x, time, event, val_rows, shuffle=False)
        )
        config = TrainingConfig.from_estimator(self)
        self.history_: TrainingHistory = train_cox_network(
            self.network_, train_loader, val_loader, config
        )
