r"""The Cox loss over the global batch of a distributed run.

The Cox partial likelihood does not split over patients: each event's risk set is
everyone still at risk, so a rank that computed the loss on its own part of the batch
would use smaller risk sets than a single process on the whole batch, and DDP would
average the gradients of a different objective. Instead every rank gathers the log
hazards, times and events of the whole global batch and computes the same loss

.. math::
    L = -\frac{1}{d} \log PL(\eta_{1..B}), \qquad d = \text{events in the global batch}.

**Gradient scale.** The gather is differentiable
(``torch.distributed.nn.functional.all_gather``): its backward pass *sums*, over the
:math:`W` ranks, the gradients that each rank's copy of :math:`L` sends to rank
:math:`r`'s slice, so rank :math:`r` receives :math:`W\,\partial L/\partial\eta_r`. DDP then
*averages* the parameter gradients over the ranks:

.. math::
    \frac{1}{W}\sum_{r} W \frac{\partial L}{\partial \eta_r}
    \frac{\partial \eta_r}{\partial\theta} = \frac{\partial L}{\partial \theta},

exactly the single-process gradient on the global batch; no rescaling is needed.

**Uneven batches.** Ranks may hold parts whose sizes differ by one (and the last global
batch is smaller); each part is padded to the largest before the gather and the padding
removed after, so no rank waits on a collective of another shape.

**Minibatch pitfalls.** A (global) batch of one patient, or one without an event, has
no comparable pair: the loss is an exact zero with a graph, so the step changes
nothing but weight decay. :class:`~fracrisk.training.EventStratifiedBatchSampler` spreads
the events over the batches to avoid that.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from fracrisk.losses import cox_partial_likelihood

__all__ = ["gather_global_batch", "global_cox_loss"]


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_global_batch(
    log_hazard: torch.Tensor, time: torch.Tensor, event: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate every rank's ``(log_hazard, time, event)``, in rank order.

    Differentiable in ``log_hazard``. Without an initialised process group (or with one
    process), the inputs are returned unchanged.
    """
    world = _world_size()
    if world == 1:
        return log_hazard, time, event
    from torch.distributed.nn.functional import all_gather

    n = torch.tensor([log_hazard.shape[0]], device=log_hazard.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    pad = longest - log_hazard.shape[0]

    def padded(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x

    etas = all_gather(padded(log_hazard))
    times = [torch.empty_like(padded(time)) for _ in range(world)]
    events = [torch.empty_like(padded(event)) for _ in range(world)]
    dist.all_gather(times, padded(time).contiguous())
    dist.all_gather(events, padded(event).contiguous())
    keep = [slice(0, s) for s in sizes]
    return (
        torch.cat([e[k] for e, k in zip(etas, keep, strict=True)]),
        torch.cat([t[k] for t, k in zip(times, keep, strict=True)]),
        torch.cat([e[k] for e, k in zip(events, keep, strict=True)]),
    )


def global_cox_loss(
    log_hazard: torch.Tensor, time: torch.Tensor, event: torch.Tensor, *, ties: str = "efron"
) -> tuple[torch.Tensor, int]:
    r"""Cox loss per event over the global batch, and the number of events in it.

    Parameters
    ----------
    log_hazard : torch.Tensor, shape = (b,) or (b, 1)
        This rank's log hazard ratios (any float dtype; computed in float32 or wider).
    time : torch.Tensor, shape = (b,)
        Follow-up times in years.
    event : torch.Tensor, shape = (b,)
        1 (or True) for the event of interest, anything else is censoring.
    ties : {"efron", "breslow"}
        Tie handling.

    Returns
    -------
    loss : torch.Tensor
        :math:`-\log PL / d` over the global batch (0 with a graph when :math:`d = 0`),
        identical on every rank.
    n_events : int
        :math:`d`.
    """
    eta = log_hazard.reshape(-1)
    if eta.dtype in (torch.float16, torch.bfloat16):
        eta = eta.float()
    eta, time, event = gather_global_batch(eta, time.reshape(-1), event.reshape(-1))
    is_event = event == 1
    total = cox_partial_likelihood(eta, time, is_event, ties=ties, reduction="sum")
    n_events = int(is_event.sum())
    return total / max(n_events, 1), n_events
