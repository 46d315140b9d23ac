"""`rhovid bench ingest` end to end on tiny sources: every case timed, the GOP sweep, the files written."""

from __future__ import annotations

import argparse
import json
import math
import os

from rhovid.benchmarks.ingest import add_arguments, run


def test_ingest_bench_times_every_case_and_sweeps_gops(tmp_path):
    out = tmp_path / "ingest.md"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--videos", "2", "--seconds", "2", "--size", "160x120", "--short-side", "96",
                              "--repeats", "1", "--gops", "8,16", "--gop-seconds", "3", "--clips", "20",
                              "--timed-clips", "3", "--tunes", ",fastdecode", "--bframes", "7", "--crfs", "23,35",
                              "--presets", "veryfast", "--grain-seconds", "2", "--out", str(out)])
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    assert run(args) == 0
    if cores is not None:
        assert os.sched_getaffinity(0) == cores  # the 1-core case gives the cores back
    doc = json.loads(out.with_suffix(".json").read_text())
    speed = doc["speed"]
    cases = {"ffmpeg CLI", "ingest inline", "ingest 1 worker", "ingest 2 workers"}
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        cases.add("ingest 1 worker, 1 core")
        assert math.isfinite(speed["speedup_2_cores"]) and speed["speedup_2_cores"] > 0
    assert set(speed["seconds"]) == cases
    assert all(v > 0 for v in speed["seconds"].values()) and math.isfinite(speed["overhead_inline"])
    sweep = doc["gop_sweep"]
    assert sorted({r["gop"] for r in sweep}) == [8, 16]
    for r in sweep:
        # a clip decodes its 57-frame span plus at most the GOP before it
        assert 57 <= r["decoded_frames_per_clip"] <= 57 + r["gop"]
    tunes = doc["tune_sweep"]
    assert [(r["content"], r["tune"], r["bframes"]) for r in tunes] == [
        (c, t, b) for c in ("synth", "mandelbrot") for t, b in ((None, None), ("fastdecode", None), (None, 7))]
    for r in tunes:
        assert 30 < r["psnr_db"] < 80 and r["decode_ms_per_clip"] > 0  # a real encode of the source
        assert r["decoded_frames_per_clip"] <= 57 + r["gop"]
    grain = doc["quality_sweep"]
    assert [(r["content"], r["crf"], r["preset"]) for r in grain] == [
        (c, crf, "veryfast") for c in ("grainy synth", "grainy mandelbrot") for crf in (23, 35)]
    for content in ("grainy synth", "grainy mandelbrot"):
        lo, hi = [r for r in grain if r["content"] == content]
        # a higher CRF stores fewer bytes at lower quality, by the full-video and the recorded measure
        assert hi["kbytes_per_video_s"] < lo["kbytes_per_video_s"]
        assert hi["psnr_db"] < lo["psnr_db"] and hi["recorded_psnr_db"] < lo["recorded_psnr_db"]
        assert 0 < hi["ssim"] < lo["ssim"] <= 1 and 0 < hi["recorded_ssim"] < lo["recorded_ssim"] <= 1
    cost = doc["quality_cost"]
    assert cost["pairs"] == 2 and cost["ratio"] > 0 and cost["compare_s"] > 0
    text = out.read_text()
    assert "| grainy mandelbrot | `--crf 35 --preset veryfast` |" in text and "recording the quality" in text
    assert "speed-up 1 -> 2 workers" in text and "| mandelbrot | --tune fastdecode |" in text
    assert "| synth | --bframes 7 |" in text and "| synth | default |" in text
