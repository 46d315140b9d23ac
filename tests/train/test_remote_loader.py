"""The ClipLoader on a DATA served by real servers: nginx (HTTP Range) and moto (S3), with and
without a proxy that injects 503s and connection resets. Same seed -> the same batches as from
the local copy, bit for bit; per sample only the clips' covering fragments are fetched."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rhovid import storage
from rhovid.benchmarks.netproxy import HttpProxy
from rhovid.ingest.fragments import clip_groups, fragment_bytes
from rhovid.ingest.manifest import manifest_name
from rhovid.ingest.reader import ShardReader, read_index, split_shards
from rhovid.ranged import coalesce
from rhovid.train.data import ClipLoader, LoaderConfig

# 'window' sampling: clip i's frames are start + i * stride, which the byte count below rebuilds
CFG = LoaderConfig(data="", rho=2, frames=4, stride=4, clip_sampling="window", timespan_s=60, crop=48, boxes="random",
                   max_boxes=4, batch_size=2, workers=0, seed=7, drop_last=False)


def upload_tree(local: Path, url: str) -> None:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            storage.upload(p, storage.join(url, *p.relative_to(local).parts))


@pytest.fixture(scope="module")
def served(tiny_data, nginx):
    """tiny_data copied under nginx's root: its http:// URL."""
    shutil.copytree(tiny_data, nginx.root / "tiny", dirs_exist_ok=True)
    return f"{nginx.url}/tiny"


def batches(data: str, **kw) -> tuple[list[dict], ClipLoader]:
    loader = ClipLoader(replace(CFG, data=str(data), **kw))
    return list(loader), loader


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["key"] == y["key"]
        for k in ("video", "boxes", "box_mask", "box_frame", "label", "clip_start_s"):
            assert torch.equal(x[k], y[k]), k


def test_http_gives_the_local_batches(tiny_data, served):
    local, _ = batches(tiny_data)
    http, loader = batches(served)
    assert_same(local, http)
    assert loader.skipped == 0 and loader.io_stats.retries == 0


def test_s3_and_gcs_give_the_local_batches(tiny_data, store_bucket):
    local, _ = batches(tiny_data)
    upload_tree(tiny_data, f"{store_bucket}/tiny")
    remote, loader = batches(f"{store_bucket}/tiny")
    assert_same(local, remote)
    assert loader.skipped == 0 and loader.io_stats.retries == 0 and loader.io_stats.requests > 0


def test_only_the_covering_fragments_are_fetched(tiny_data, served):
    """Requests: index.json, one manifest per shard, one ranged read per group of overlapping clips;
    bytes: those files + exactly those fragments (init segments come with the manifest)."""
    got, loader = batches(served)
    index = {e["key"]: e for e in read_index(tiny_data)}
    reader = ShardReader()
    samples = {s.key: s for url, _ in split_shards(tiny_data) for s in reader.manifest(url).samples}
    expect_requests, expect_bytes = 1, (Path(tiny_data) / "index.json").stat().st_size
    for url, _ in split_shards(tiny_data):
        expect_requests += 1
        expect_bytes += Path(url).with_name(manifest_name(Path(url).name)).stat().st_size
    video_bytes = 0
    for b in got:
        for i, key in enumerate(b["key"]):
            meta = samples[key].meta
            starts = [round(float(s) * meta["fps"]) for s in b["clip_start_s"][i]]
            clips = [list(range(s, s + 4 * 4, 4)) for s in starts]
            reads = coalesce(fragment_bytes(meta, *g.fragments, samples[key].members["mp4"][1])
                             for g in clip_groups(meta, clips))
            expect_requests += len(reads)
            expect_bytes += sum(b - a for a, b in reads)
            video_bytes += meta["bytes"]
            assert index[key]["num_frames"] == meta["num_frames"]
    stats = loader.io_stats
    assert (stats.requests, stats.bytes) == (expect_requests, expect_bytes)
    assert stats.requests <= 3 + 2 * len(index)  # at most one read per clip after index + manifests
    assert "requests, 0 retries" in loader.summary() and "0 skipped samples" in loader.summary()


def test_faults_are_retried_in_workers_and_nothing_is_duplicated(tiny_data, served, nginx):
    local, _ = batches(tiny_data)
    with HttpProxy(nginx.port, fail_503=0.2, drop=0.15, seed=1) as proxy:
        got, loader = batches(served.replace(nginx.url, proxy.url), workers=1, io_attempts=8)
    assert_same(local, got)
    faults = proxy.counters.injected_503 + proxy.counters.dropped
    assert faults > 0 and loader.io_stats.retries == faults and loader.io_stats.failed == 0
    assert loader.skipped == 0
    keys = [k for b in got for k in b["key"]]
    assert sorted(keys) == sorted(e["key"] for e in read_index(tiny_data))  # each sample once


def test_a_sample_that_keeps_failing_is_skipped_and_counted(tiny_data, nginx):
    """The tar on the server is cut inside its last video (the manifest still lists it): that
    sample's reads fail on every try; the epoch goes on without it."""
    root = nginx.root / "cut"
    shutil.copytree(tiny_data, root, dirs_exist_ok=True)
    reader = ShardReader()
    url, _ = split_shards(root)[-1]
    victim = reader.manifest(url).samples[-1]
    with open(url, "r+b") as f:
        f.truncate(victim.members["mp4"][0] + 100)
    got, loader = batches(f"{nginx.url}/cut", io_attempts=2)
    keys = [k for b in got for k in b["key"]]
    assert victim.key not in keys and len(keys) == len(read_index(tiny_data)) - 1
    stats = loader.io_stats  # each of the sample's reads (one per clip group) was tried twice
    assert loader.skipped == 1 and 1 <= stats.failed <= 2 and stats.retries == stats.failed, (loader.skipped, stats)
