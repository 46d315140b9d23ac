"""The transcode-quality record (ingest/quality.py): values, frame alignment, round trip, run summary."""

from __future__ import annotations

import io
import json
import math
import subprocess

import av
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.pipeline import RUNS_FILE, IngestConfig, ingest
from rhovid.ingest.quality import PSNR_CAP, psnr, sample_frames, ssim
from rhovid.ingest.reader import iter_shard, list_shards

GRAIN = "noise=alls=30:allf=t+u"


def _only_sample(data):
    (path,) = list_shards(data)
    (sample,) = list(iter_shard(path))
    return sample


def _all_luma(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as c:
        return np.stack([f.to_ndarray(format="yuv420p")[: f.height] for f in c.decode(c.streams.video[0])])


def _source_luma(src, width: int, height: int, fps: float) -> np.ndarray:
    # an independent pass over the whole source: ffmpeg's own fps + scale, every frame
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(src), "-vf",
                          f"fps={fps:g},scale={width}:{height}:out_range=tv,setsar=1,format=yuv420p",
                          "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"], capture_output=True, check=True).stdout
    n = len(raw) // (width * height * 3 // 2)
    return np.frombuffer(raw, np.uint8).reshape(n, -1)[:, : width * height].reshape(n, height, width)


def test_psnr_and_ssim_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    assert psnr(a, a) == PSNR_CAP and ssim(a, a) == pytest.approx(1.0)
    b = a.astype(np.int16) + 3  # MSE = 9 where it does not clip
    b = np.clip(b, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / mse))
    c = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    # scikit-image's Gaussian SSIM with Wang et al.'s settings, an independent implementation
    ref = structural_similarity(a, c, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert ssim(a, c) == pytest.approx(ref, abs=2e-3)
    assert sample_frames(300, 4) == [37, 112, 187, 262]
    assert sample_frames(3, 4) == [0, 1, 2]


def test_sample_json_records_quality_of_the_sampled_frames(tmp_path, encode_video):
    src = encode_video(tmp_path / "src" / "c" / "grain.mp4", size="320x240", seconds=3, pattern="mandelbrot",
                       vf=GRAIN, codec=["-c:v", "libx264", "-b:v", "2M", "-pix_fmt", "yuv420p"])
    report = ingest([str(tmp_path / "src")], tmp_path / "data", IngestConfig(short_side=128, progress=False))
    sample = _only_sample(tmp_path / "data")
    q = sample["json"]["quality"]
    n = sample["json"]["num_frames"]
    assert q["plane"] == "Y" and q["frames"] == sample_frames(n, 4)
    # recomputed from scratch: every stored frame decoded, the source resampled by its own ffmpeg pass
    w, h = sample["json"]["width"], sample["json"]["height"]
    stored, source = _all_luma(sample["mp4"]), _source_luma(src, w, h, sample["json"]["fps"])
    assert len(stored) == n
    expect = [psnr(source[i], stored[i]) for i in q["frames"]]
    assert q["psnr_db"] == pytest.approx(expect, abs=1e-3)
    assert q["ssim"] == pytest.approx([ssim(source[i], stored[i]) for i in q["frames"]], abs=1e-5)
    # a neighbouring source frame fits worse: the record compares the right frames
    assert all(psnr(source[i + 1], stored[i]) < p for i, p in zip(q["frames"], q["psnr_db"]))
    assert q["psnr_db_mean"] == pytest.approx(np.mean(q["psnr_db"]), abs=1e-3)
    # run summary: on the report and appended to DATA/ingest-runs.jsonl
    assert report.quality["samples"] == 1 and report.quality["psnr_db_mean"] == q["psnr_db_mean"]
    assert "transcode quality vs source" in report.summary()
    runs = [json.loads(line) for line in (tmp_path / "data" / RUNS_FILE).read_text().splitlines()]
    assert runs[-1]["quality"] == report.quality and runs[-1]["ingested"] == 1


def test_lower_crf_records_higher_quality_and_zero_frames_records_none(tmp_path, encode_video):
    encode_video(tmp_path / "src" / "c" / "grain.mp4", size="320x240", seconds=2, pattern="mandelbrot", vf=GRAIN)
    means = {}
    for crf in (18, 35):
        ingest([str(tmp_path / "src")], tmp_path / f"crf{crf}", IngestConfig(short_side=128, crf=crf, progress=False))
        means[crf] = _only_sample(tmp_path / f"crf{crf}")["json"]["quality"]["psnr_db_mean"]
    assert means[18] > means[35] + 3
    r = ingest([str(tmp_path / "src")], tmp_path / "off", IngestConfig(short_side=128, quality_frames=0, progress=False))
    assert "quality" not in _only_sample(tmp_path / "off")["json"] and r.quality is None
