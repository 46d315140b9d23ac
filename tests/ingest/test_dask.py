"""The same ingest tasks on a Dask distributed cluster (DESIGN.md decision 6)."""

from __future__ import annotations

from collections import Counter

from rhovid.ingest.decode import count_frames
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.shards import iter_shard, list_shards, read_index


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
