"""The same ingest tasks on a Dask distributed cluster (DESIGN.md decision 6)."""

from __future__ import annotations

import socket
from collections import Counter

import dask
import pytest

from rhovid.cli import main
from rhovid.ingest.decode import count_frames
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import iter_shard, list_shards, read_index


def test_ingest_on_a_local_dask_cluster(tmp_path, encode_video):
    from distributed import LocalCluster

    src = tmp_path / "src"
    for i in range(4):
        encode_video(src / f"c{i % 2}" / f"v{i}.mp4", size="96x64", seconds=1.0)
    (src / "c0" / "bad.mp4").write_text("not a video")
    data = tmp_path / "data"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = ingest([str(src)], data, IngestConfig(short_side=64, gop=8, shard_count=3, progress=False,
                                                       scheduler=cluster.scheduler_address))
    assert (report.ingested, report.failed) == (4, 1)
    assert report.failures[0]["source"].endswith("bad.mp4") and report.failures[0]["stage"] == "probe"
    samples = [s for p in list_shards(data) for s in iter_shard(p)]
    assert Counter(s["__key__"] for s in samples) == Counter(e["key"] for e in read_index(data))
    assert len(samples) == 4
    for s in samples:
        assert count_frames(s["mp4"]) == s["json"]["num_frames"] == 30


def test_unreachable_scheduler_is_a_clear_error(tmp_path, encode_video):
    src = encode_video(tmp_path / "src" / "v.mp4", seconds=1.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(ConnectionError, match=f"--scheduler tcp://127.0.0.1:{port}: cannot reach"):
            ingest([str(src)], tmp_path / "data", IngestConfig(progress=False, scheduler=f"tcp://127.0.0.1:{port}"))
        assert main(["ingest", str(src), "--out", str(tmp_path / "data"), "--scheduler",
                     f"tcp://127.0.0.1:{port}", "--no-progress"]) == 1
    assert list_shards(tmp_path / "data") == []
