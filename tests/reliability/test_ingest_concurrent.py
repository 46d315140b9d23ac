"""Two ``rhovid ingest`` runs into one DATA, and a SIGKILL among them: nothing lost, nothing twice
(issue 13, item 3). Before, both exited 0 while samples were lost (the second run swept the
first one's open shard, both wrote shard 000000, each rewrote index.json from its own view).
Now a run holds ``DATA/.ingest.lock`` (flock: released by the kernel when the holder dies) and
index recovery compares each shard's contents with the index.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections import Counter

import pytest
from process_tree import finish, rhovid, wait_until

from rhovid.atomic import read_jsonl
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import iter_shard, list_shards, read_index

ARGS = ["--short-side", "64", "--gop", "8", "--shard-count", "2", "--workers", "1", "--no-progress"]
TRIALS = [0, *(pytest.param(t, marks=pytest.mark.slow) for t in range(1, 6))]


@pytest.fixture(scope="module")
def trees(tmp_path_factory, encode_video):
    """Three source trees: a (4 videos + a broken file), b (4 videos), shared (2 videos)."""
    root = tmp_path_factory.mktemp("concurrent-src")
    for tree, n in (("a", 4), ("b", 4), ("shared", 2)):
        for i in range(n):
            encode_video(root / tree / f"c_{tree}" / f"v{i}.mp4", size="96x64", seconds=1.5, vf=f"hue=h={37 * i}")
    (root / "a" / "c_a" / "broken.mp4").write_bytes(b"not a video")
    return root


def _check_data(data, good: int) -> None:
    """Every good source exactly once, index.json = the shards' contents, no temporaries, one failure."""
    counts = Counter(s["__key__"] for p in list_shards(data) for s in iter_shard(p))
    assert len(counts) == good and set(counts.values()) == {1}, counts
    assert sorted(e["key"] for e in read_index(data)) == sorted(counts)
    assert not [p.name for p in (data / "shards").iterdir() if p.name.startswith(".tmp-")]
    assert [r["source"].endswith("broken.mp4") for r in read_jsonl(data / "failed.jsonl")] == [True]
    assert all(p.with_suffix(".idx").exists() for p in list_shards(data))


@pytest.mark.parametrize("trial", TRIALS)
def test_two_ingests_into_one_data_lose_nothing(trees, tmp_path, trial):
    data = tmp_path / "data"
    one = rhovid("ingest", str(trees / "a"), str(trees / "shared"), "--out", str(data), *ARGS)
    time.sleep(random.Random(trial).uniform(0.0, 1.0))  # the second starts at a random moment
    two = rhovid("ingest", str(trees / "b"), str(trees / "shared"), "--out", str(data), *ARGS)
    results = [finish(one, 180), finish(two, 180)]
    assert [rc for rc, _, _ in results] == [0, 0], [err for _, _, err in results]
    _check_data(data, good=10)


@pytest.mark.parametrize("trial", TRIALS)
def test_sigkilled_ingest_frees_data_for_the_other_and_the_rerun(trees, tmp_path, trial):
    """The run holding the lock is SIGKILLed at a random moment: the other one proceeds at once
    (the kernel dropped the lock), and a rerun of the killed command completes it."""
    data = tmp_path / "data"
    one = rhovid("ingest", str(trees / "a"), str(trees / "shared"), "--out", str(data), *ARGS)
    assert wait_until(lambda: (data / "ingest.json").exists(), 60)  # it has started work
    two = rhovid("ingest", str(trees / "b"), str(trees / "shared"), "--out", str(data), *ARGS)
    time.sleep(random.Random(trial).uniform(0.5, 4.0))
    os.killpg(one.pid, signal.SIGKILL)  # the whole command: parent, pool worker, ffmpeg
    one.communicate(timeout=30)
    rc, _, err = finish(two, 180)
    assert rc == 0, err
    rc, _, err = finish(rhovid("ingest", str(trees / "a"), str(trees / "shared"), "--out", str(data), *ARGS), 180)
    assert rc == 0, err
    _check_data(data, good=10)


def test_index_recovery_reads_the_shards_not_their_names(trees, tmp_path):
    """A finished shard replaced behind the index's back (what a second writer did before the
    lock) is read back: its samples are indexed, the samples it lost are ingested again."""
    cfg = IngestConfig(short_side=64, gop=8, shard_count=2, progress=False)
    data, other = tmp_path / "data", tmp_path / "other"
    ingest([str(trees / "a")], data, cfg)
    ingest([str(trees / "b")], other, cfg)
    lost = [e["key"] for e in read_index(data) if e["shard"] == "train-000000.tar"]
    for suffix in (".tar", ".idx"):
        shutil.copyfile(other / "shards" / f"train-000000{suffix}", data / "shards" / f"train-000000{suffix}")
    report = ingest([str(trees / "a"), str(trees / "b")], data, cfg)
    assert report.ingested == len(lost) + 2  # the lost ones again, and b's samples not in the copied shard
    _check_data(data, good=8)
