"""Shard assignment, shuffle buffer and resume arithmetic of train/streaming.py (pure)."""

from __future__ import annotations

import itertools

import pytest

from rhovid.train.streaming import (
    assign,
    batches_per_worker,
    epoch_order,
    shuffle_buffer,
    worker_sizes,
    worker_skips,
)

SHARDS = [(f"s{i}", n) for i, n in enumerate([5, 3, 8, 1, 4, 6])]  # 27 samples


def expand(spans):
    return [(s.shard, i) for s in spans for i in range(s.start, s.stop)]


@pytest.mark.parametrize("world,workers", [(1, 1), (1, 3), (2, 1), (2, 4), (4, 2), (5, 3)])
def test_ranks_and_workers_partition_the_epoch(world, workers):
    for epoch in range(3):
        order = epoch_order(SHARDS, 0, epoch)
        stream = [(p, i) for p, n in order for i in range(n)]
        q = 27 // world
        seen = []
        for rank in range(world):
            mine = [x for w in range(workers) for x in expand(assign(SHARDS, 0, epoch, rank, world, w, workers))]
            assert len(mine) == q  # every rank the same number of samples
            assert mine == stream[rank * q : (rank + 1) * q]  # contiguous, in epoch order
            seen += mine
        assert len(set(seen)) == len(seen) == q * world  # no duplicates


def test_epoch_order_is_seeded_and_changes_per_epoch():
    assert epoch_order(SHARDS, 1, 0) == epoch_order(SHARDS, 1, 0)
    assert len({tuple(epoch_order(SHARDS, 1, e)) for e in range(6)}) > 3
    assert epoch_order(SHARDS, 1, 0, shuffle=False) == SHARDS
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        assign(SHARDS, 0, 0, 2, 2, 0, 1)


def test_worker_skips_mirror_round_robin():
    for sizes in ([7, 7, 6], [3, 3, 3, 2], [5], [1, 0]):
        counts = batches_per_worker(sizes, 2, drop_last=False)
        order = []  # simulate torch's DataLoader: round-robin, exhausted workers skipped
        done = [0] * len(counts)
        while sum(done) < sum(counts):
            for w in range(len(counts)):
                if done[w] < counts[w]:
                    order.append(w)
                    done[w] += 1
        for k in range(sum(counts) + 1):
            assert worker_skips(counts, k) == [order[:k].count(w) for w in range(len(counts))]
    with pytest.raises(ValueError, match="past the end"):
        worker_skips([1, 1], 3)


def test_worker_sizes_and_batches():
    assert worker_sizes(10, 3) == [4, 3, 3] and worker_sizes(10, 0) == [10]
    assert batches_per_worker([4, 3, 3], 2, True) == [2, 1, 1]
    assert batches_per_worker([4, 3, 3], 2, False) == [2, 2, 2]


def test_shuffle_buffer_is_a_seeded_bounded_permutation():
    items = list(range(100))
    a = list(shuffle_buffer(items, 10, (0, 1)))
    assert sorted(a) == items and a != items
    assert a == list(shuffle_buffer(items, 10, (0, 1))) != list(shuffle_buffer(items, 10, (0, 2)))
    pulled = []

    def source():
        for i in items:
            pulled.append(i)
            yield i

    gen = shuffle_buffer(source(), 10, 0)
    next(gen)
    assert len(pulled) == 11  # never more than the buffer plus one item in memory
    assert list(shuffle_buffer(items, 1, 0)) == items
    assert list(itertools.islice(shuffle_buffer(iter(items), 200, 0), 5)) != items[:5]


def test_slice_clips_cuts_covering_fragments_and_shares_overlaps():
    from rhovid.ingest.fragments import slice_clips

    # 10 fragments of 16 frames and 100 bytes each after a 50-byte init segment
    mp4 = bytes(range(50)) + b"".join(bytes([k]) * 100 for k in range(10))
    meta = {"key": "v", "num_frames": 160, "init_size": 50, "fragments": [[50 + 100 * k, 16 * k, 16] for k in range(10)]}
    a, b, c, d = slice_clips(mp4, meta, [range(20, 40, 4), range(30, 50, 4), range(120, 150, 10), range(0, 8)])
    assert a.data is b.data  # clips sharing fragment 1 share one slice (decoded once)
    assert a.data == mp4[:50] + mp4[150:350]  # fragments 1..2 cover frames 20..46
    assert a.indices == (4, 8, 12, 16, 20) and b.indices == (14, 18, 22, 26, 30)
    assert c.data == mp4[:50] + mp4[750:950] and c.indices == (8, 18, 28)
    assert d.data == mp4[:150] and d.data is not a.data  # touching but not overlapping: separate
