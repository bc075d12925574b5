"""The Lightning module of survival training: the maths of one step, nothing about devices.

A batch is ``(*inputs, time, event)``; the network is called as ``network(*inputs)`` and
returns what its head's ``objective`` says (:mod:`fracrisk.heads`): the log hazard ratio,
shape (batch,) or (batch, 1), for a Cox head; two log hazard ratios (fracture, death) for
the cause-specific pair; logits on a time grid for the discrete-time heads, whose
``loss`` the module calls. So ``(features, time,
event)`` trains a tabular head and ``(images, covariates, time, event)`` a
:class:`~fracrisk.encoders.FusionSurvivalNet`. With dense targets (``auxiliary_weights``)
a batch is ``(*inputs, targets, time, event)`` and the loss adds
:func:`~fracrisk.losses.auxiliary_loss` of ``network.forward_with_auxiliary(*inputs)``.
Lightning owns the loop, the devices, precision, the checkpoints and the logging.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from fracrisk.losses import auxiliary_loss, cox_partial_likelihood
from fracrisk.training.config import TrainingConfig
from fracrisk.training.distributed import global_cox_loss

__all__ = ["CoxLightningModule", "adamw_with_schedule", "epoch_seed", "split_batch"]


def split_batch(batch) -> tuple[tuple, torch.Tensor, torch.Tensor]:
    """``(*inputs, time, event)`` -> ``(inputs, time, event)``, with at least one input."""
    n = len(batch) if isinstance(batch, (tuple, list)) else None
    if n is None or n < 3:
        got = f"{n} elements" if n is not None else f"a {type(batch).__name__}"
        raise ValueError(
            f"a batch must be a tuple (*inputs, time, event) with at least one input, got {got}"
        )
    return tuple(batch[:-2]), batch[-2], batch[-1]


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of an epoch: a function of (seed, epoch) alone (resumable)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def survival_objective(network: nn.Module) -> tuple[str, nn.Module]:
    """The objective of ``network``'s head (``"cox"`` unless the head says otherwise), and the head.

    A network with a ``head`` attribute (e.g. :class:`~fracrisk.encoders.FusionSurvivalNet`)
    is judged by it; otherwise the network is the head.
    """
    head = getattr(network, "head", network)
    return getattr(head, "objective", "cox"), head


class CoxLightningModule(pl.LightningModule):
    """Minimises the survival loss of ``network``: Cox's, or its head's own.

    Training loss, by the head's objective:

    * ``"cox"``: :func:`~fracrisk.training.global_cox_loss` (per event, over the global
      batch of a distributed run);
    * ``"cause_specific"``: the fracture and the death Cox losses of the global batch,
      summed and divided by the events of both causes (the joint partial likelihood);
    * ``"discrete"``: the head's ``loss`` (pycox's losses), a mean per patient on each
      rank, which DDP's gradient averaging makes the global mean.

    Validation: the same loss over the whole validation set at once (exact risk sets) as
    ``val_loss``, and Uno's C of the fracture score (log hazard, or the head's
    ``risk_score``) as ``val_uno_c``; each rank evaluates the whole validation set, so
    both are the same on every rank. The batches' ``event`` holds the codes 0, 1
    (fracture) and 2 (death); Cox heads treat 2 as censoring.

    Parameters
    ----------
    network : torch.nn.Module
        Maps the batch inputs to log hazard ratios.
    config : TrainingConfig
        Optimiser, schedule and seed.
    steps_per_epoch : int
        Optimiser steps per epoch (for the one-cycle schedule).
    auxiliary_weights : sequence of float, optional
        Weights :math:`w_k` of the network's dense targets: the training loss is the Cox
        loss per event plus :func:`~fracrisk.losses.auxiliary_loss` (a per-patient mean on
        each rank, which DDP's gradient averaging makes the global mean). Validation logs
        it as ``val_aux_loss``; ``val_loss`` stays the Cox loss.
    survival_weight : float, default 1.0
        Weight of the Cox loss in the training loss. 0 trains on the dense targets alone
        (the first stage of a two-stage model; the Cox loss is still logged).
    """

    def __init__(
        self,
        network: nn.Module,
        config: TrainingConfig,
        steps_per_epoch: int,
        auxiliary_weights=None,
        survival_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.config = config
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        if not (math.isfinite(survival_weight) and survival_weight >= 0):
            raise ValueError(f"survival_weight must be a finite number >= 0, got {survival_weight}")
        if survival_weight == 0 and auxiliary_weights is None:
            raise ValueError("survival_weight=0 needs auxiliary_weights: nothing would be trained")
        self.survival_weight = float(survival_weight)
        self.auxiliary_weights = (
            None
            if auxiliary_weights is None
            else torch.as_tensor(list(auxiliary_weights), dtype=torch.float32)
        )
        self.objective, self._head = survival_objective(network)
        self._val_aux: list[float] = []
        self._val_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._train_sum = 0.0
        self._train_events = 0

    def forward(self, *inputs) -> torch.Tensor:
        """Log hazard ratios of the inputs."""
        return self.network(*inputs)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        """Reseed dropout and augmentation from (seed, epoch); point the sampler at the epoch."""
        epoch = self.current_epoch
        torch.manual_seed(epoch_seed(self.config.seed, epoch))
        loader = self.trainer.train_dataloader
        sampler = getattr(loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        dataset = getattr(loader, "dataset", None)
        while dataset is not None and not hasattr(dataset, "set_epoch"):
            dataset = getattr(dataset, "dataset", None)  # through Subset
        if dataset is not None:
            dataset.set_epoch(epoch)
        self._train_sum, self._train_events = 0.0, 0

    def _forward(self, inputs: tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log hazards, and the auxiliary loss when the batch carries dense targets."""
        if self.auxiliary_weights is None:
            return self.network(*inputs), None
        *inputs, targets = inputs
        eta, predicted, logits = self.network.forward_with_auxiliary(*inputs, return_logits=True)
        scale = self.network.auxiliary_scale
        weight = self.auxiliary_weights.to(predicted.device)
        target = targets.to(predicted.dtype)
        return eta, auxiliary_loss(predicted, target, scale, weight, logits=logits)

    def survival_loss(
        self, output: torch.Tensor, time: torch.Tensor, event: torch.Tensor, *, exact: bool = False
    ) -> tuple[torch.Tensor, int]:
        """The objective's loss and what it is averaged over (events, or patients).

        ``exact=True`` computes the Cox losses on this process's tensors alone (the whole
        validation set), not over the global batch.
        """
        ties = self.config.ties
        if self.objective == "discrete":
            return self._head.loss(output, time, event), int(len(time))

        def cox(eta, code):
            if exact:
                is_event = code == 1
                total = cox_partial_likelihood(
                    eta.reshape(-1).double(), time.double(), is_event, ties=ties, reduction="sum"
                )
                n = int(is_event.sum())
                return total / max(n, 1), n
            return global_cox_loss(eta, time, code, ties=ties)

        if self.objective == "cause_specific":
            if output.dim() != 2 or output.shape[1] != 2:
                raise ValueError(
                    f"a cause-specific head returns (batch, 2), got {tuple(output.shape)}"
                )
            fracture, n_f = cox(output[:, 0], (event == 1).long())
            death, n_d = cox(output[:, 1], (event == 2).long())
            n = n_f + n_d
            return (fracture * max(n_f, 1) + death * max(n_d, 1)) / max(n, 1), n
        return cox(output, (event == 1).long())

    def _score(self, output: torch.Tensor) -> torch.Tensor:
        """Fracture ranking score of the outputs (log hazard or the head's risk score)."""
        if self.objective == "discrete":
            return self._head.risk_score(output)
        if self.objective == "cause_specific":
            return output[:, 0]
        return output.reshape(-1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Weighted survival loss of one global batch, plus the auxiliary loss (if any)."""
        inputs, time, event = split_batch(batch)
        eta, extra = self._forward(inputs)
        loss, n_events = self.survival_loss(eta, time, event)
        self._train_sum += float(loss.detach()) * max(n_events, 1)
        self._train_events += n_events
        if self.survival_weight != 1.0:
            loss = self.survival_weight * loss
        if extra is not None:
            self.log("train_aux_loss", extra.detach(), on_step=False, on_epoch=True)
            loss = loss + extra
        return loss

    def epoch_train_loss(self) -> float:
        """Mean training loss per event (per patient for discrete heads) over the epoch so far."""
        return self._train_sum / max(self._train_events, 1)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training loss per event."""
        self.log("train_loss", self.epoch_train_loss(), prog_bar=True, sync_dist=False)

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        """Start collecting the validation log hazards."""
        self._val_parts = []
        self._val_aux = []

    def validation_step(self, batch, batch_idx: int) -> None:
        """Collect the log hazards; the metrics need the whole validation set at once."""
        inputs, time, event = split_batch(batch)
        eta, extra = self._forward(inputs)
        eta = eta.float()
        if self.objective == "cox":
            eta = eta.reshape(-1)
        if extra is not None:
            self._val_aux.append(float(extra))
        self._val_parts.append((eta.detach().cpu().double(), time.cpu(), event.cpu()))

    def on_validation_epoch_end(self) -> None:
        """``val_loss`` (the exact loss) and ``val_uno_c`` on all validation patients."""
        from fracrisk.metrics import uno_c

        if not self._val_parts:
            return
        eta = torch.cat([p[0] for p in self._val_parts])
        time = torch.cat([p[1] for p in self._val_parts]).double()
        event = torch.cat([p[2] for p in self._val_parts])
        is_event = event == 1
        if bool(is_event.any()) and torch.isfinite(eta).all():
            # Cox losses on the CPU, as always; a discrete head's grid lives with the network.
            device = self._head.cuts.device if self.objective == "discrete" else "cpu"
            with torch.no_grad():
                out, t, e = eta.to(device), time.to(device), event.to(device)
                loss = float(self.survival_loss(out, t, e, exact=True)[0])
                score = self._score(out).double().cpu().numpy()
            try:
                c = float(uno_c(time.numpy(), is_event.numpy().astype(int), score))
            except ValueError:  # no comparable pair
                c = math.nan
        else:
            loss, c = math.nan, math.nan
        self.log("val_loss", loss, prog_bar=True, sync_dist=False)
        self.log("val_uno_c", c, prog_bar=True, sync_dist=False)
        if self._val_aux:
            self.log("val_aux_loss", float(np.mean(self._val_aux)), sync_dist=False)

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        """AdamW, with the configured learning-rate schedule."""
        return adamw_with_schedule(self.network.parameters(), self.config, self.steps_per_epoch)


def adamw_with_schedule(parameters, config: TrainingConfig, steps_per_epoch: int, *, warmup=0.3):
    """AdamW and ``config.lr_schedule``, as Lightning's ``configure_optimizers`` returns them.

    ``"onecycle"`` rises to ``learning_rate`` over the first ``warmup`` share of the steps
    and anneals after (stepped per batch); ``"cosine"`` anneals to 0 over ``max_epochs``
    (stepped per epoch); ``"constant"`` keeps ``learning_rate``.
    """
    optimiser = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    if config.lr_schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=config.learning_rate,
            total_steps=config.max_epochs * max(int(steps_per_epoch), 1),
            pct_start=warmup,
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
    if config.lr_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.max_epochs)
        return {
            "optimizer": optimiser,
            "lr_scheduler": {"scheduler": schedule, "interval": "epoch"},
        }
    return optimiser
