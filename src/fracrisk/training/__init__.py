"""The training engine: Cox networks trained by PyTorch Lightning, from a CPU to many GPUs.

* :class:`TrainingConfig`: the settings, with Lightning's names (``accelerator``,
  ``devices``, ``strategy``, ``num_nodes``, ``precision``) plus clipping, schedule,
  early stopping, checkpoints and logger.
* :func:`fit_cox_network`: builds the ``Trainer`` and trains (``resume=True`` goes on
  from the last checkpoint).
* :class:`CoxLightningModule`: the maths of a step; :func:`global_cox_loss` computes the
  Cox loss over the global batch of a distributed run.
* :class:`EventStratifiedBatchSampler`: global batches with events in each, dealt out to
  the ranks.
* :func:`predict_batches`: streamed ``(log_hazard, time, event)`` for Breslow and metrics.

A batch is a tuple ``(*inputs, time, event)``; the network is called as
``network(*inputs)`` and returns the log hazard ratio. The modules that need Lightning
are imported on first use, so ``import fracrisk`` stays light.
"""

from __future__ import annotations

import importlib

from fracrisk.training.config import (
    TRAINING_CONSTRAINTS,
    TrainingConfig,
    resolve_accelerator,
    resolve_device,
    resolve_precision,
)
from fracrisk.training.distributed import gather_global_batch, global_cox_loss
from fracrisk.training.sampler import EventStratifiedBatchSampler

_LAZY = {
    "BestWeights": "fracrisk.training.callbacks",
    "SafeCheckpointIO": "fracrisk.training.callbacks",
    "TrainingHistory": "fracrisk.training.callbacks",
    "CoxLightningModule": "fracrisk.training.module",
    "CoxDataModule": "fracrisk.training.engine",
    "FitResult": "fracrisk.training.engine",
    "LAST_CHECKPOINT": "fracrisk.training.engine",
    "fit_cox_network": "fracrisk.training.engine",
    "fit_lightning": "fracrisk.training.engine",
    "predict_batches": "fracrisk.training.engine",
}

__all__ = [
    "TRAINING_CONSTRAINTS",
    "EventStratifiedBatchSampler",
    "TrainingConfig",
    "gather_global_batch",
    "global_cox_loss",
    "resolve_accelerator",
    "resolve_device",
    "resolve_precision",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fracrisk.training' has no attribute {name!r}")
