"""``rhovid boxes`` on hostile shards (issue 13, items 8, 9 and 11): a bad sample is skipped,
counted and recorded in its group; a billion-frame json costs nothing; a cut shard is not
stored as complete. Real shards, real Zarr store, the real command in a process of its own
under a 3 GiB address-space limit.

Before: ``num_frames`` 10**9 in one json grew the worker past 4.5 GiB, one bad sample failed
its shard's whole box set, and a tar cut at a member boundary got a "complete" set.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time

from hostile_media import edit_sample, member_spans, tar_members, zero_frames

from rhovid.ingest.reader import list_shards, shard_name
from rhovid.store.cli import list_rows
from rhovid.store.zarr_store import BoxStore, group_status, store_root

ADDRESS_SPACE = 3 << 30
ARGS = ["--method", "fh", "--box-fps", "2", "--no-progress"]


def _data(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    return data, list_shards(data)


def _boxes(data, timeout: float = 120.0) -> tuple[int, str, float]:
    """``rhovid boxes DATA ARGS`` under the address-space limit: (exit status, stdout + stderr, seconds)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rhovid.cli", "boxes", str(data), *ARGS], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def test_bad_samples_are_skipped_counted_and_recorded(tiny_data, tmp_path):
    data, shards = _data(tiny_data, tmp_path)
    first = shards[0]
    huge = edit_sample(first, 0, meta=lambda m: m.update(num_frames=10**9))
    no_fps = edit_sample(first, 1, meta=lambda m: m.update(fps=0))
    garbled = edit_sample(first, 2, mp4=zero_frames(tar_members(first)[5][1]))  # boxes intact, frames zeroed
    rc, out, seconds = _boxes(data)
    assert rc == 0, out
    assert "3 samples skipped" in out and "Traceback" not in out, out
    store = BoxStore(data)
    name = store.list_sets()[0]["name"]
    for shard in shards:
        assert group_status(store_root(data), shard_name(shard), name) == "complete"
    sb = store.load(shard_name(first), name)
    assert sb.keys == []  # all three of the first shard skipped, each with its reason
    reasons = {s["key"]: s["reason"] for s in sb.attrs["skipped"]}
    assert "num_frames 1000000000: not an int" in reasons[huge]
    assert "fps 0: not a finite number" in reasons[no_fps]
    assert reasons[garbled].startswith("does not decode (InvalidDataError"), reasons[garbled]
    assert sb.attrs["stats"]["skipped"] == 3 and sb.rows.count.shape == (0,)
    full = store.load(shard_name(shards[1]), name)  # the other shard is untouched
    assert len(full.keys) == 3 and full.attrs["skipped"] == []
    try:
        sb.stored_frames(huge)
        raise AssertionError("a skipped key has no boxes")
    except KeyError as e:
        assert "was skipped by box set" in str(e)
    assert seconds < 120
    assert [row["skipped videos"] for row in list_rows(data)] == [3]  # `rhovid boxes DATA --list`


def test_a_cut_shard_is_not_stored_as_complete(tiny_data, tmp_path):
    data, shards = _data(tiny_data, tmp_path)
    cut = shards[1]
    _, _, start, size = member_spans(cut)[-1]  # after the last member's padded payload: no end-of-archive marker
    cut.write_bytes(cut.read_bytes()[: start + -(-size // 512) * 512])
    rc, out, _ = _boxes(data)
    assert rc == 1 and f"failed {shard_name(cut)}" in out and "no end-of-archive marker" in out, out
    name = BoxStore(data).list_sets()[0]["name"]
    assert group_status(store_root(data), shard_name(cut), name) != "complete"
    assert group_status(store_root(data), shard_name(shards[0]), name) == "complete"
