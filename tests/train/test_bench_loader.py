"""`rhovid bench loader` end to end on tiny sources: every cell measured, the table and json written."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from rhovid.benchmarks.loader import add_arguments, run


def test_loader_bench_runs_every_cell_and_writes_its_table(tmp_path):
    out = tmp_path / "loader.md"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--lengths", "3,6", "--timespans", "1,3", "--videos", "1",
                                      "--samples", "3", "--repeats", "1", "--no-dali", "--out", str(out)])
    assert run(args) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["length_s"], r["timespan_s"]) for r in rows] == [(3, 1), (3, 3), (6, 1), (6, 3)]
    for r in rows:
        for k in ("a_clips_cpu_s", "b_clips_cpu_s", "b2_clips_cpu_s", "exec_shared_clips_cpu_s",
                  "exec_alone_clips_cpu_s", "decode_direct_clips_cpu_s", "decode_demuxer_clips_cpu_s"):
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)
        # the design's bound: a clip's slice is its span plus at most one GOP before it
        assert r["a_worst_clip_decoded"] <= r["bound_span_plus_gop"]
        # fragment slicing decodes far fewer frames than seeking the x264 original (keyframes up to 250 apart)
        assert r["a_dec_per_frame"] < r["b_dec_per_frame"]
    text = out.read_text()
    assert text.startswith("# rhovid bench loader") and text.count("\n| 3 s |") + text.count("\n| 6 s |") == 4
    assert "every clip decoded on its own" in text and "sample table -> decoder vs av.open" in text


def test_remote_loader_bench_counts_bytes_and_gets_exactly(tmp_path, nginx):
    """`rhovid bench loader --remote` on tiny videos: every cell, and the byte/GET columns hold what
    the design promises (the server fixture only proves nginx can start here; the bench starts its own)."""
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("webdataset streams http:// shards with curl, which is not installed")
    out = tmp_path / "remote.md"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--remote", "--remote-lengths", "6", "--rtts", "0,20", "--replicas", "6",
                              "--remote-epochs", "1", "--repeats", "1", "--size", "160x120", "--out", str(out)])
    assert run(args) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    cells = {(r["storage"], r["rtt_ms"]) for r in rows}
    assert cells == {("local disk", None), ("ranged GETs", 0.0), ("ranged GETs", 20.0),
                     ("whole-shard streaming (webdataset)", 0.0), ("whole-shard streaming (webdataset)", 20.0)}
    for r in rows:
        assert r["samples"] == 6 and r["skipped"] == 0 and math.isfinite(r["samples_per_s"])
        if r["storage"] != "whole-shard streaming (webdataset)":
            # init + covering fragments, plus the index and manifests: nothing else is read
            assert r["bytes_per_sample"] <= 1.05 * r["needed_bytes_per_sample"] + r["metadata_bytes_per_sample"]
            assert r["data_gets_per_sample"] <= 2  # at most one GET per clip, rho = 2
        else:
            assert r["bytes_per_sample"] > r["video_bytes_per_sample"]  # whole shards, tar headers included
    assert out.read_text().count("\n| 6 s |") == 5
