"""Resume and crash safety: reruns skip finished work; SIGKILL never leaves a partial or duplicate sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from rhovid.atomic import read_jsonl
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import iter_shard, list_shards, read_index
from rhovid.train.data import ClipLoader, LoaderConfig

CFG = IngestConfig(short_side=64, gop=8, shard_count=2, progress=False)


@pytest.fixture(scope="module")
def src(tmp_path_factory, encode_video):
    root = tmp_path_factory.mktemp("resume-src")
    for i in range(5):
        encode_video(root / f"c{i % 2}" / f"v{i}.mp4", size="96x64", seconds=1.0)
    (root / "c0" / "broken.mp4").write_bytes(b"not a video")
    return root


def _keys_in_shards(data):
    return Counter(s["__key__"] for p in list_shards(data) for s in iter_shard(p))


def test_rerun_skips_finished_and_adds_new(src, tmp_path, encode_video):
    first = ingest([str(src)], tmp_path, CFG)
    assert (first.ingested, first.failed, len(first.shards)) == (5, 1, 3)
    again = ingest([str(src)], tmp_path, CFG)
    assert (again.ingested, again.skipped, again.failed, again.shards) == (0, 5, 1, [])
    # a failure is retried on rerun and recorded once, not appended again
    assert [r["source"].endswith("broken.mp4") for r in read_jsonl(tmp_path / "failed.jsonl")] == [True]

    extra = tmp_path.parent / f"{tmp_path.name}-extra"
    encode_video(extra / "c2" / "new.mp4", size="96x64", seconds=1.0)
    more = ingest([str(src), str(extra)], tmp_path, CFG)
    assert (more.ingested, more.skipped, more.shards) == (1, 5, ["train-000003.tar"])
    counts = _keys_in_shards(tmp_path)
    assert len(counts) == 6 and set(counts.values()) == {1}
    index = read_index(tmp_path)
    assert sorted(e["key"] for e in index) == sorted(counts)
    assert {e["label_name"]: e["label"] for e in index} == {"c0": 0, "c1": 1, "c2": 2}


def test_same_source_under_another_split_is_a_recorded_failure(src, tmp_path):
    """Ingesting the train tree again as "test" must not silently skip it (nor duplicate keys)."""
    from dataclasses import replace

    first = ingest([str(src)], tmp_path, CFG)
    before = sorted((e["key"], e["split"]) for e in read_index(tmp_path))
    again = ingest([str(src)], tmp_path, replace(CFG, split="test"))
    assert (again.ingested, again.skipped, again.failed) == (0, 0, first.ingested + 1)  # + broken.mp4
    clashes = [r for r in read_jsonl(tmp_path / "failed.jsonl") if r["stage"] == "split"]
    assert len(clashes) == first.ingested
    assert all("already ingested as split 'train'" in r["reason"] and "not 'test'" in r["reason"] for r in clashes)
    assert sorted((e["key"], e["split"]) for e in read_index(tmp_path)) == before  # nothing written or lost
    assert not list_shards(tmp_path, "test")


def test_rerun_recovers_index_idx_and_sweeps_temporaries(src, tmp_path):
    ingest([str(src)], tmp_path, CFG)
    shards = list_shards(tmp_path)
    (tmp_path / "index.json").unlink()
    shards[0].with_suffix(".idx").unlink()
    leftover = tmp_path / "shards" / ".tmp-train-000009.tar.123"
    leftover.write_bytes(b"partial")
    report = ingest([str(src)], tmp_path, CFG)
    assert (report.ingested, report.skipped) == (0, 5)  # nothing re-transcoded
    assert not leftover.exists()
    assert shards[0].with_suffix(".idx").exists()
    assert sorted(e["key"] for e in read_index(tmp_path)) == sorted(_keys_in_shards(tmp_path))


def test_damaged_index_is_named_by_readers_and_rebuilt_by_ingest(src, tmp_path):
    ingest([str(src)], tmp_path, CFG)
    before = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text('{"samples": [{"key": "cut off')  # a torn copy
    with pytest.raises(ValueError, match=r"index.json is damaged .*rerun `rhovid ingest`"):
        read_index(tmp_path)
    with pytest.raises(ValueError, match=r"index.json is damaged"):
        ClipLoader(LoaderConfig(data=str(tmp_path), workers=0))
    report = ingest([str(src)], tmp_path, CFG)
    assert (report.ingested, report.skipped) == (0, 5)  # rebuilt from the shards, nothing re-transcoded
    after = json.loads((tmp_path / "index.json").read_text())
    assert after["labels"] == before["labels"] == ["c0", "c1"]
    assert sorted(after["samples"], key=lambda e: e["key"]) == sorted(before["samples"], key=lambda e: e["key"])


def test_changed_output_settings_are_refused(src, tmp_path):
    ingest([str(src / "c1")], tmp_path, CFG)
    with pytest.raises(ValueError, match="gop"):
        ingest([str(src / "c1")], tmp_path, IngestConfig(short_side=64, gop=16, progress=False))


def _run_cli(src, data, workers=2):
    cmd = [sys.executable, "-m", "rhovid.cli", "ingest", str(src), "--out", str(data), "--short-side", "64",
           "--gop", "8", "--shard-count", "2", "--workers", str(workers), "--no-progress"]
    # own session: SIGKILL below hits the whole group (pool workers, ffmpeg), like a machine kill
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for(pred, proc, timeout=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def test_sigkill_mid_run_then_rerun_yields_every_good_source_once(tmp_path, encode_video):
    src = tmp_path / "src"
    for i in range(12):
        encode_video(src / "a" / f"v{i:02d}.mp4", size="96x64", seconds=1.5)
    (src / "a" / "bad.mp4").write_bytes(b"")
    data = tmp_path / "data"
    shard_dir = data / "shards"

    def tmp_shard_open():
        return shard_dir.is_dir() and any(p.name.startswith(".tmp-") for p in shard_dir.iterdir())

    # kill 1: while the first shard is still a temporary; kill 2: after some shards finished
    for pred in (tmp_shard_open, lambda: len(list_shards(data)) >= 2 and tmp_shard_open()):
        proc = _run_cli(src, data)
        hit = _wait_for(pred, proc)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
        assert hit or proc.returncode == 0
        for p in list_shards(data):  # every finished shard is a complete, readable tar
            assert all({"mp4", "json"} <= set(s) for s in iter_shard(p))

    proc = _run_cli(src, data)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    counts = _keys_in_shards(data)
    assert len(counts) == 12 and set(counts.values()) == {1}, counts
    assert not [p for p in shard_dir.iterdir() if p.name.startswith(".tmp-")]
    assert sorted(e["key"] for e in read_index(data)) == sorted(counts)
    assert [r["source"].endswith("bad.mp4") for r in read_jsonl(data / "failed.jsonl")] == [True]
    assert all(p.with_suffix(".idx").exists() for p in list_shards(data))


def test_ctrl_c_keeps_finished_samples_and_rerun_completes(tmp_path, encode_video):
    src = tmp_path / "src"
    for i in range(10):
        encode_video(src / "a" / f"v{i:02d}.mp4", size="96x64", seconds=1.5)
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "rhovid.cli", "ingest", str(src), "--out", str(data), "--short-side", "64",
           "--gop", "8", "--shard-count", "2", "--workers", "1", "--no-progress"]
    # Ctrl-C reaches the terminal's whole foreground group; SIGINT is reset to its default in the
    # child because a non-interactive CI shell may have started this test with SIGINT ignored
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    hit = _wait_for(lambda: len(list_shards(data)) >= 1, proc, timeout=60)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert hit or proc.returncode == 0
    if proc.returncode != 0:  # interrupted: a clean exit, what was added is kept and indexed
        assert proc.returncode == 130 and b"interrupted; rerun the same command to resume" in err, err
        assert "Traceback" not in err.decode()
        kept = _keys_in_shards(data)
        assert sorted(e["key"] for e in read_index(data)) == sorted(kept) and set(kept.values()) == {1}
    assert not [p for p in (data / "shards").iterdir() if p.name.startswith(".tmp-")]
    assert subprocess.run(cmd[:-1] + ["--no-progress"], capture_output=True).returncode == 0
    counts = _keys_in_shards(data)
    assert len(counts) == 10 and set(counts.values()) == {1}
