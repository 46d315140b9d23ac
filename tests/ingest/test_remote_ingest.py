"""``rhovid ingest SRC --out s3://...`` against a real S3 server (moto): whole-object shards,
the same samples as a local ingest, and resume from what the bucket holds after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from rhovid import storage
from rhovid.ingest.fmp4 import parse_fragments
from rhovid.ingest.manifest import build_manifest, manifest_bytes
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.publish import Publisher, remote_shards
from rhovid.ingest.reader import ShardReader, iter_shard, list_shards, read_index, split_shards
from rhovid.ingest.shards import idx_text
from rhovid.ingest.verify import verify

CFG = IngestConfig(short_side=112, gop=16, shard_count=3, workers=0, progress=False)


def _remote_keys(url: str) -> Counter:
    reader = ShardReader()
    keys = Counter(s.key for name in remote_shards(url)
                   for s in reader.manifest(storage.join(url, "shards", name)).samples)
    reader.close()
    return keys


def test_ingest_to_a_bucket_equals_a_local_ingest(tiny_src, tiny_data, store_bucket, tmp_path):
    """On S3 (moto) and GCS (gcp-storage-emulator)."""
    bucket = store_bucket
    url = f"{bucket}/data"
    stage = tmp_path / "stage"
    rep = ingest([str(tiny_src)], url, CFG, stage=stage)
    assert rep.ingested == 6 and rep.failed == 0 and rep.shards == ["train-000000.tar", "train-000001.tar"]
    names = storage.list_names(f"{url}/shards")
    assert names == sorted(f"train-00000{i}.{ext}" for i in (0, 1) for ext in ("idx", "manifest.json.gz", "tar"))
    assert read_index(url) == read_index(tiny_data)  # same rows, same shard names
    assert json.loads(storage.read_bytes(f"{url}/ingest.json"))["gop"] == 16
    assert not list((stage / "shards").glob("*.tar"))  # uploaded copies are not kept
    reader = ShardReader()
    local = {s["__key__"]: s["json"] for p in list_shards(tiny_data) for s in iter_shard(p)}
    for shard, _ in split_shards(url):
        tar = tmp_path / storage.name(shard)
        tar.write_bytes(storage.read_bytes(shard))
        # the uploaded manifest and .idx describe the uploaded tar
        assert storage.read_bytes(shard[:-4] + ".manifest.json.gz") == manifest_bytes(build_manifest(tar))
        assert storage.read_bytes(shard[:-4] + ".idx").decode() == idx_text(tar)
        whole = {s["__key__"]: s for s in iter_shard(tar)}
        for s in reader.manifest(shard).samples:
            assert reader.read_member(shard, s) == whole[s.key]["mp4"] and s.meta == whole[s.key]["json"]
            # x264 with threads is not bit-reproducible across encodes; the layout contract is
            assert {k: v for k, v in s.meta.items() if k not in ("fragments", "bytes")} == \
                {k: v for k, v in local[s.key].items() if k not in ("fragments", "bytes")}
            table = parse_fragments(whole[s.key]["mp4"])
            assert [[f.byte_offset, f.first_frame, f.num_frames] for f in table.fragments] == s.meta["fragments"]
    reader.close()
    again = ingest([str(tiny_src)], url, CFG, stage=stage)
    assert (again.ingested, again.skipped, again.shards) == (0, 6, [])
    # --verify on the bucket: clean, then a manifest of another shard and a missing .idx are found
    assert verify(url, progress=False).ok
    first, second = (storage.join(url, "shards", f"train-00000{i}") for i in (0, 1))
    storage.write_bytes(first + ".manifest.json.gz", storage.read_bytes(second + ".manifest.json.gz"))
    storage.remove(second + ".idx")
    problems = verify(url, progress=False).problems
    assert problems == ["train-000000.manifest.json.gz: does not describe train-000000.tar (stale or damaged)",
                        "train-000001.idx: missing (DALI's reader needs it)"], problems


def test_a_crash_after_the_tar_upload_is_recovered_from_the_manifests(tiny_src, bucket, tmp_path, monkeypatch):
    """Killed between a shard's upload and the index update: the rerun reads the shard back from
    its manifest instead of redoing (and duplicating) its samples."""
    url = f"{bucket}/data"
    real = Publisher.write_state
    calls = []

    def crash_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # as if killed right after the first tar upload
        real(self)

    monkeypatch.setattr(Publisher, "write_state", crash_once)
    with pytest.raises(KeyboardInterrupt):
        ingest([str(tiny_src)], url, CFG, stage=tmp_path / "stage")
    assert remote_shards(url) == ["train-000000.tar"] and not storage.exists(f"{url}/index.json")
    monkeypatch.setattr(Publisher, "write_state", real)
    rep = ingest([str(tiny_src)], url, CFG, stage=tmp_path / "stage")
    assert rep.skipped == 3 and rep.ingested == 3 and rep.shards == ["train-000001.tar"]
    keys = _remote_keys(url)
    assert len(keys) == 6 and set(keys.values()) == {1}
    assert sorted(e["key"] for e in read_index(url)) == sorted(keys)


def test_sigkill_mid_upload_then_rerun_has_every_source_once(tiny_src, s3, bucket, tmp_path):
    url = f"{bucket}/data"
    cmd = [sys.executable, "-m", "rhovid.cli", "ingest", str(tiny_src), "--out", url, "--short-side", "64",
           "--gop", "8", "--shard-count", "1", "--workers", "0", "--no-progress", "--stage", str(tmp_path / "st")]
    env = {**os.environ, **s3.env}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and proc.poll() is None and len(remote_shards(url)) < 2:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    first = _remote_keys(url)
    assert set(first.values()) <= {1}
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    keys = _remote_keys(url)
    assert len(keys) == 6 and set(keys.values()) == {1}, keys
    assert sorted(e["key"] for e in read_index(url)) == sorted(keys)
    assert b"skipped %d (already in shards)" % len(first) in rerun.stdout


def test_http_is_refused_as_an_output(tiny_src, nginx):
    with pytest.raises(ValueError, match="read-only"):
        ingest([str(tiny_src)], f"{nginx.url}/data", CFG)
