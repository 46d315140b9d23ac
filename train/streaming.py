"""Shard streaming: which samples a rank/worker reads in an epoch, in what order, and resume.

Every epoch, the split's shards are put in a seeded order (a new permutation per epoch) and
concatenated into one sample stream. Rank ``r`` of ``world`` takes the contiguous range
``[r * q, (r + 1) * q)`` of it with ``q = total // world`` (so every rank sees the same number
of samples and DDP never waits on a rank with one batch more); worker ``w`` of a rank takes a
contiguous sub-range. A worker therefore opens only the shards its range touches (mostly
whole shards, like webdataset's shard split, with at most one partial shard at each end),
loads each shard's box set once, and no sample is read twice in an epoch.

Within a worker, samples pass through a seeded shuffle buffer. The buffer holds *planned
clip slices* (the init segment plus the few fragments of each clip, not whole videos), so
its memory is bounded by ``buffer`` x rho x (a few GOPs) however long the videos are.

Resume: a position is (epoch, batches consumed). Because the order is a pure function of
(seed, epoch, rank, world, workers) and the DataLoader reads its workers round-robin, the
number of batches each worker already produced follows from the count alone
(``worker_skips``); skipped samples are read and planned but never decoded.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShardSpan:
    """A contiguous run of samples of one shard."""

    shard: str
    """Shard file path."""
    start: int
    """First sample (position in the shard) to read."""
    stop: int
    """One past the last sample to read."""


def epoch_order(shards: list[tuple[str, int]], seed: int, epoch: int, shuffle: bool = True) -> list[tuple[str, int]]:
    """Shards ``(path, samples)`` in the order of this epoch (seeded permutation, or as given)."""
    if not shuffle:
        return list(shards)
    perm = np.random.default_rng([seed, epoch, 0x5EED]).permutation(len(shards))
    return [shards[i] for i in perm]


def rank_quota(total: int, world: int) -> int:
    """Samples per rank per epoch: equal for every rank (the remainder is left out)."""
    return total // world


def worker_sizes(quota: int, workers: int) -> list[int]:
    """Balanced contiguous sub-range sizes of a rank's quota over its workers."""
    w = max(workers, 1)
    return [quota // w + (i < quota % w) for i in range(w)]


def assign(
    shards: list[tuple[str, int]], seed: int, epoch: int, rank: int, world: int, worker: int, workers: int,
    shuffle: bool = True,
) -> list[ShardSpan]:
    """The shard spans worker ``worker`` of rank ``rank`` reads in ``epoch``.

    Args:
        shards: ``(path, number of samples)`` of every shard of the split, in a fixed order.
        seed, epoch: the epoch's shard permutation.
        rank, world: distributed position (0, 1 when single-process).
        worker, workers: DataLoader worker position (0, 1 when in-process).
        shuffle: permute the shards per epoch (False for evaluation: index order).
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    order = epoch_order(shards, seed, epoch, shuffle)
    total = sum(n for _, n in order)
    q = total if world == 1 else rank_quota(total, world)
    sizes = worker_sizes(q, workers)
    lo = rank * q + sum(sizes[:worker])
    hi = lo + sizes[worker]
    spans, pos = [], 0
    for path, n in order:
        a, b = max(lo, pos), min(hi, pos + n)
        if a < b:
            spans.append(ShardSpan(path, a - pos, b - pos))
        pos += n
    return spans


def batches_per_worker(sizes: list[int], batch_size: int, drop_last: bool) -> list[int]:
    """Batches each worker yields: full batches, plus a partial one unless ``drop_last``."""
    return [n // batch_size if drop_last else -(-n // batch_size) for n in sizes]


def worker_skips(counts: list[int], consumed: int) -> list[int]:
    """Batches each worker had produced when the main process had consumed ``consumed``.

    Mirrors torch's DataLoader: batches are taken from the workers round-robin, skipping
    workers that are exhausted.
    """
    done = [0] * len(counts)
    left = consumed
    while left > 0:
        progressed = False
        for w, c in enumerate(counts):
            if left == 0:
                break
            if done[w] < c:
                done[w] += 1
                left -= 1
                progressed = True
        if not progressed:
            raise ValueError(f"resume position {consumed} is past the end of the epoch ({sum(counts)} batches)")
    return done


def shuffle_buffer(items: Iterable, size: int, seed) -> Iterator:
    """Yield ``items`` in a seeded random order using a buffer of at most ``size`` items."""
    if size <= 1:
        yield from items
        return
    rng = random.Random(repr(seed))  # seed: an int or a tuple such as (seed, epoch, rank, worker)
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = item
    rng.shuffle(buf)
    yield from buf


def dist_position(rank: int | None, world: int | None) -> tuple[int, int]:
    """``(rank, world)``: explicit values, else torch.distributed's when initialised, else (0, 1)."""
    if rank is not None and world is not None:
        return rank, world
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return 0, 1
