"""Global batches with events in each, dealt out to the ranks of a distributed run."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EventStratifiedBatchSampler"]


class EventStratifiedBatchSampler(Sampler[list[int]]):
    r"""Shuffled global batches that each hold their share of the events; one rank's part.

    Why: each mini-batch is its own set of risk sets for the Cox loss. A batch without an
    event contributes nothing (zero loss, zero gradient) and a batch of one patient has
    no comparable pair, so a plain shuffle wastes steps when events are rare (5% of a
    cohort, say). Here the events and the other patients are shuffled separately and then
    spread evenly through the epoch: event :math:`i` of :math:`n_e` is placed at position
    :math:`(i + u_i) / n_e` and patient :math:`j` of :math:`n_c` at :math:`(j + v_j) / n_c`,
    with :math:`u, v \\sim U(0, 1)`, and the merged order is cut into global batches of
    ``batch_size``. Every global batch then holds about ``batch_size * n_e / n`` events.

    The order depends only on ``(seed, epoch)``, so a resumed run sees the same batches.
    In a distributed run, each global batch is split into ``world_size`` contiguous
    parts of sizes differing by at most one (``numpy.array_split``), one per rank: the
    ranks together see exactly the global batches of a single-process run. A last
    global batch smaller than ``max(2, world_size)`` is dropped (a different one each
    epoch), so that every rank gets the same number of non-empty batches and no rank
    waits for the others in a collective.

    Parameters
    ----------
    event : array-like of bool, shape = (n,)
        Whether each item is an event (of interest).
    batch_size : int
        Global batch size.
    shuffle : bool, default True
        False keeps the items in order (no stratification).
    seed : int, default 0
        Seed of the shuffles.
    rank, world_size : int, default 0 and 1
        This process and the number of processes.
    """

    def __init__(
        self,
        event,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.event = np.asarray(event, dtype=bool).reshape(-1)
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if batch_size < world_size:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the number of processes "
                f"{world_size}: some ranks would get no patient"
            )
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration gives."""
        self.epoch = int(epoch)

    def global_order(self) -> np.ndarray:
        """The positions of all items in this epoch's order (before batching)."""
        n = len(self.event)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch])
        keys = np.empty(n)
        for group in (np.flatnonzero(self.event), np.flatnonzero(~self.event)):
            rng.shuffle(group)
            keys[group] = (np.arange(len(group)) + rng.uniform(size=len(group))) / max(
                len(group), 1
            )
        return np.argsort(keys, kind="stable")

    def global_batches(self) -> list[np.ndarray]:
        """The global batches of the current epoch (every rank's part together)."""
        order = self.global_order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if batches and len(batches[-1]) < max(2, self.world_size):
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield np.array_split(batch, self.world_size)[self.rank].tolist()

    def __len__(self) -> int:
        n, b = len(self.event), self.batch_size
        full, last = divmod(n, b)
        return full + (1 if last >= max(2, self.world_size) else 0)
