"""Zarr box store: write -> read round trip, nearest-frame lookup, reader errors."""

from __future__ import annotations

import numpy as np
import pytest

from rhovid.store.boxsets import register_set
from rhovid.store.zarr_store import (
    BoxStore,
    ShardRows,
    SimulatedCrash,
    ensure_root,
    group_status,
    write_shard_set,
)

K = 3


def rows(scored: bool, seed: int = 0) -> tuple[ShardRows, list[str]]:
    """Two videos: 'a' with frames 0, 15, 30, 45 and 'b' with frames 0, 10."""
    rng = np.random.default_rng(seed)
    n = 6
    boxes = rng.uniform(0, 100, (n, K, 4)).astype(np.float32)
    return ShardRows(
        boxes=boxes,
        count=np.array([3, 2, 0, 1, 3, 1], np.int32),
        frame=np.array([0, 15, 30, 45, 0, 10], np.int32),
        video_offsets=np.array([0, 4, 6], np.int64),
        score=rng.uniform(0, 1, (n, K)).astype(np.float32) if scored else None,
    ), ["a", "b"]


def make_store(data, name="slic-0000abcd", scored=False, shards=("train-000000",)):
    root = ensure_root(data)
    entry = {
        "method": name.split("-")[0],
        "params_hashed": {"region_size": 24},
        "box_fps": 2.0,
        "max_boxes": K,
    }
    register_set(root, name, entry)
    r, keys = rows(scored)
    for shard in shards:
        write_shard_set(
            root, shard, name, r, {**entry, "set": name, "keys": keys, "frame_sizes": [[100, 80]] * 2}
        )
    return root, r


@pytest.mark.parametrize("scored", [False, True])
def test_round_trip(tmp_path, scored):
    root, r = make_store(tmp_path, scored=scored)
    got = BoxStore(tmp_path).load("train-000000", "slic-0000abcd")
    for name in ("boxes", "count", "frame", "video_offsets"):
        np.testing.assert_array_equal(getattr(got.rows, name), getattr(r, name))
        assert getattr(got.rows, name).dtype == getattr(r, name).dtype
    if scored:
        np.testing.assert_array_equal(got.rows.score, r.score)
    else:
        assert got.rows.score is None
    assert got.keys == ["a", "b"] and got.attrs["complete"] is True and got.attrs["max_boxes"] == K
    assert group_status(root, "train-000000", "slic-0000abcd") == "complete"
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_shard_set(root, "train-000000", "slic-0000abcd", r, {})


def test_nearest_frame_lookup(tmp_path):
    make_store(tmp_path, scored=True)
    sb = BoxStore(tmp_path).load("train-000000", "slic-0000abcd")
    boxes, count, score = sb.lookup("a", [0, 7, 8, 22, 23, 44, 1000, -3])
    want = np.array([0, 0, 1, 1, 2, 3, 3, 0])  # 7 is nearer 0, 8 nearer 15; ties (22.5 never) ...
    np.testing.assert_array_equal(boxes, sb.rows.boxes[want])
    np.testing.assert_array_equal(count, sb.rows.count[want])
    np.testing.assert_array_equal(score, sb.rows.score[want])
    _, count_b, _ = sb.lookup("b", [5, 6, 4, 100])  # 5 is a tie between 0 and 10: earlier wins
    np.testing.assert_array_equal(count_b, sb.rows.count[[4, 5, 4, 5]])
    np.testing.assert_array_equal(sb.stored_frames("b"), [0, 10])
    with pytest.raises(KeyError, match="video 'zz' is not in shard train-000000"):
        sb.lookup("zz", [0])


def test_reader_errors_list_sets_and_name_the_command(tmp_path):
    make_store(tmp_path, shards=("train-000000",))
    store = BoxStore(tmp_path)
    with pytest.raises(KeyError, match=r"unknown box set 'fh-1'; available: slic-0000abcd"):
        store.load("train-000000", "fh-1")
    with pytest.raises(
        KeyError,
        match=r"shard train-000001 has no box set slic-0000abcd; compute it with: rhovid boxes .* --method slic "
        r"--param region_size=24 --box-fps 2 --max-boxes 3",
    ):
        store.load("train-000001", "slic-0000abcd")


def test_interrupted_write_is_partial_then_replaced(tmp_path):
    root, r = make_store(tmp_path)
    attrs = {"set": "slic-0000abcd", "keys": ["a", "b"]}
    with pytest.raises(SimulatedCrash):
        write_shard_set(root, "train-000001", "slic-0000abcd", r, attrs, crash_before_complete=True)
    assert group_status(root, "train-000001", "slic-0000abcd") == "partial"
    with pytest.raises(KeyError, match="shard train-000001 has an interrupted .partial. write of box set"):
        BoxStore(tmp_path).load("train-000001", "slic-0000abcd")
    r2, _ = rows(False, seed=1)
    write_shard_set(root, "train-000001", "slic-0000abcd", r2, attrs)
    got = BoxStore(tmp_path).load("train-000001", "slic-0000abcd")
    np.testing.assert_array_equal(got.rows.boxes, r2.boxes)
    assert [s["shards_done"] for s in BoxStore(tmp_path).list_sets()] == [["train-000000", "train-000001"]]


def test_damaged_chunk_names_the_group_and_the_mend(tmp_path):
    root, r = make_store(tmp_path)
    chunks = sorted((root / "train-000000" / "slic-0000abcd" / "boxes").rglob("c/*/*/*"))
    assert chunks, "expected the boxes array's chunk files"
    chunks[0].write_bytes(chunks[0].read_bytes()[:10])  # a truncated copy
    with pytest.raises(ValueError, match=r"box set slic-0000abcd of shard train-000000 is damaged .*delete "
                                         r".*train-000000/slic-0000abcd and recompute it with: rhovid boxes .* "
                                         r"--method slic --param region_size=24 --box-fps 2 --max-boxes 3"):
        BoxStore(tmp_path).load("train-000000", "slic-0000abcd")
