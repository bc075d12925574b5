"""DeepSurv: a neural survival model on tabular covariates, with a Cox or an absolute-risk head."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fracrisk._params import InstanceOf, Interval, Options, SequenceOf
from fracrisk.data.cohort import Cohort
from fracrisk.data.splits import split_cohort
from fracrisk.heads import _ACTIVATIONS, _NORMS
from fracrisk.models._base import SurvivalEstimator
from fracrisk.training.config import TRAINING_CONSTRAINTS, TrainingConfig

__all__ = ["HEADS", "DeepSurv"]

#: The heads a DeepSurv (and an image model) can have, by name.
HEADS = ("deepsurv", "cause_specific", "deephit", "pmf", "logistic_hazard", "cox_linear")


class DeepSurv(SurvivalEstimator, name="deepsurv"):
    r"""DeepSurv (Katzman et al. 2018): :math:`h(t \mid x) = h_0(t) \exp(g_\theta(x))`.

    :math:`g_\theta` is a :class:`~fracrisk.heads.DeepSurvHead` trained with AdamW on the
    mini-batch Cox partial likelihood (exact Efron ties by default). A stratified part of
    the training data is held out for early stopping; the best epoch's weights are kept.
    The baseline hazard is Breslow's estimator on the whole training data, so the model
    gives survival curves, not only a ranking. Death censors: the risk is cause-specific.

    With another ``head`` the same network gives the **absolute** risk of fracture, death
    competing (``risk_type == "absolute"``, :meth:`predict_cumulative_incidence`):

    * ``"cause_specific"``: a fracture and a death Cox head on one trunk, each with its
      Breslow baseline, combined into the cumulative incidence;
    * ``"deephit"``: DeepHit for competing risks (pycox's loss);
    * ``"pmf"``: the competing-risks PMF likelihood alone (DeepHit without ranking);
    * ``"logistic_hazard"``: discrete-time cause-specific hazards (a multinomial logit per
      interval).

    The discrete-time heads predict on a grid of ``n_intervals`` intervals cut at
    quantiles of the training event times (:func:`fracrisk.discrete_time.fit_time_grid`),
    stored with the model.

    Parameters
    ----------
    head : {"deepsurv", "cause_specific", "deephit", "pmf", "logistic_hazard", "cox_linear"}, \
default "deepsurv"
        The survival model the network parameterises (:mod:`fracrisk.heads`).
    n_intervals : int, default 20
        Intervals of the time grid of the discrete-time heads (unused by the Cox heads).
    head_kwargs : dict, optional
        Further options of the head, e.g. ``{"alpha": 0.5, "sigma": 0.1}`` for DeepHit.
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
    early_stopping : {"val_loss", "val_uno_c"} or None, default "val_loss"
        What early stopping and the choice of the kept weights watch on the validation
        patients: the exact Cox loss over all of them, or Uno's C. None trains
        ``max_epochs`` and keeps the last weights.
    lr_schedule : {"constant", "onecycle", "cosine"}, default "constant"
        Learning-rate schedule.
    gradient_clip_val : float, optional
        Clip the gradient norm to this value.
    ties : {"efron", "breslow"}, default "efron"
        Tie handling in the loss.
    accelerator, devices, strategy, num_nodes : default "auto", "auto", "auto", 1
        PyTorch Lightning's device options, passed to its ``Trainer`` (e.g.
        ``accelerator="gpu", devices=4, strategy="ddp", num_nodes=2``). ``batch_size`` is
        the global batch whatever the number of devices, and the Cox loss is computed over
        it (:mod:`fracrisk.training.distributed`). A GPU asked for and absent is a
        :class:`~fracrisk.exceptions.DeviceUnavailableError`.
    precision : str, optional
        Lightning's precision; default ``"bf16-mixed"`` on a GPU, ``"32-true"`` on a CPU.
    checkpoint_dir : str, optional
        Directory for ``last.ckpt`` (written atomically after every epoch, read back with
        ``weights_only=True``) and the log; ``fit(..., resume=True)`` goes on from it.
    logger : {"csv", "tensorboard", "mlflow"} or None, default "csv"
        Per-epoch metrics in ``checkpoint_dir/logs`` (nothing on disk without a
        ``checkpoint_dir``; ``history_`` always has them).
    seed : int, default 0
        Seeds weight initialisation and the validation split, and each epoch's batches and
        dropout from (seed, epoch) alone, so a resumed fit is bit-identical to an
        uninterrupted one; the caller's random state is left untouched.
    progress : bool, default False
        Lightning's progress bar.

    Attributes
    ----------
    history_ : TrainingHistory
        Training loss, validation loss and Uno's C per epoch (``history_.to_frame()``).

    Examples
    --------
    >>> from fracrisk.simulate import clinical_cohort
    >>> model = DeepSurv(hidden=(8,), max_epochs=3, seed=0).fit(clinical_cohort(300, seed=0))
    >>> model.risk_type
    'cause_specific'
    >>> DeepSurv(head="cause_specific").risk_type
    'absolute'
    """

    _parameter_constraints = {
        **TRAINING_CONSTRAINTS,
        "head": [Options(*HEADS)],
        "n_intervals": [Interval(int, 1, None)],
        "head_kwargs": [InstanceOf(dict), None],
        "hidden": [SequenceOf(Interval(int, 1, None), min_len=1)],
        "dropout": [Interval(float, 0, 1, closed="left")],
        "norm": [Options(*_NORMS)],
        "activation": [Options(*sorted(_ACTIVATIONS))],
        "validation_fraction": [Interval(float, 0, 1, closed="left")],
    }

    def __init__(
        self,
        *,
        head: str = "deepsurv",
        n_intervals: int = 20,
        head_kwargs: dict | None = None,
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
        early_stopping: str | None = "val_loss",
        lr_schedule: str = "constant",
        gradient_clip_val: float | None = None,
        ties: str = "efron",
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
        self.head, self.n_intervals, self.head_kwargs = head, n_intervals, head_kwargs
        self.hidden, self.dropout, self.norm, self.activation = hidden, dropout, norm, activation
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.validation_fraction, self.early_stopping = validation_fraction, early_stopping
        self.lr_schedule, self.gradient_clip_val, self.ties = lr_schedule, gradient_clip_val, ties
        self.accelerator, self.devices, self.strategy = accelerator, devices, strategy
        self.num_nodes, self.precision = num_nodes, precision
        self.checkpoint_dir, self.logger = checkpoint_dir, logger
        self.seed, self.progress = seed, progress

    @classmethod
    def _test_params(cls) -> dict:
        return {"hidden": (8,), "max_epochs": 3, "batch_size": 64, "accelerator": "cpu"}

    @property
    def _head_name(self) -> str:
        return self.head

    def _n_intervals(self) -> int:
        return int(self.n_intervals)

    def _head_kwargs(self) -> dict:
        if self.head == "cox_linear":
            return dict(self.head_kwargs or {})
        return {
            "hidden": [int(h) for h in self.hidden],
            "dropout": float(self.dropout),
            "norm": self.norm,
            "activation": self.activation,
            **dict(self.head_kwargs or {}),
        }

    def fit(
        self,
        data,
        covariates: Sequence[str] | None = None,
        *,
        resume: bool = False,
        callbacks: Sequence = (),
    ) -> DeepSurv:
        """Fit to a cohort; see :meth:`SurvivalEstimator.fit`.

        Parameters
        ----------
        data : Cohort or pandas.DataFrame
            Training patients (event 1 fracture; death is censoring).
        covariates : sequence of str, optional
            Columns to use (default: the canonical clinical columns present).
        resume : bool, default False
            Go on from ``checkpoint_dir/last.ckpt`` if there is one (the result is
            bit-identical to an uninterrupted fit on the CPU).
        callbacks : sequence of lightning.pytorch.Callback, optional
            Extra Lightning callbacks.

        Returns
        -------
        self
        """
        return super().fit(data, covariates, resume=resume, callbacks=callbacks)

    def _fit_network(
        self,
        network: nn.Module,
        x: np.ndarray,
        time: np.ndarray,
        event: np.ndarray,
        cohort: Cohort,
        *,
        resume: bool = False,
        callbacks: Sequence = (),
    ) -> nn.Module:
        from fracrisk.training import fit_cox_network

        positions = np.arange(len(cohort))
        if self.validation_fraction > 0:
            _, val = split_cohort(
                cohort, self.validation_fraction, method="stratified", seed=self.seed
            )
            is_val = cohort.df.index.isin(val.df.index)
            train_rows, val_rows = positions[~is_val], positions[is_val]
        else:
            train_rows, val_rows = positions, None

        def dataset(rows) -> TensorDataset:
            return TensorDataset(
                torch.as_tensor(x[rows], dtype=torch.float32),
                torch.as_tensor(time[rows]),
                torch.as_tensor(event[rows]),
            )

        result = fit_cox_network(
            network,
            dataset(train_rows),
            event[train_rows] == 1,
            None if val_rows is None else dataset(val_rows),
            TrainingConfig.from_estimator(self),
            resume=resume,
            callbacks=callbacks,
        )
        self.history_ = result.history
        self.fit_rank_ = result.global_rank
        return network
