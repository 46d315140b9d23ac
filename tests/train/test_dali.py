"""The DALI pipeline graph: on CPU against a VP9 fixture (everywhere), mixed decode on GPU.

DALI's CPU decoder has no H.264 (DESIGN.md decision 3), so the CPU tests use a VP9 counter
video written as fragmented MP4 with the same fixed-GOP fragment layout as ingest
(``rhovid.benchmarks.counter_video.vp9_fmp4_sample``) and the same ``clip_slice`` logic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rhovid.benchmarks.counter_video import read_counter, vp9_fmp4_sample, write_counter_video
from rhovid.ingest.fragments import slice_clips
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, AugmentConfig, ClipAug
from rhovid.train.dali_pipeline import DaliClipExecutor
from rhovid.train.data_config import DataConfig
from rhovid.train.decode_pyav import execute_plan
from rhovid.train.sampler import ClipPlan, SamplePlan, plan_sample

FPS, SIDE = 15, 48


@pytest.fixture(scope="module")
def vp9():
    return vp9_fmp4_sample(70 * FPS, FPS, SIDE, SIDE, gop=16)


def to_counter(video: torch.Tensor) -> np.ndarray:
    """(N, 3, T, S, S) normalised -> (N, T) counter values."""
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    v = ((video.cpu() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    return np.stack([read_counter(c) for c in v.permute(0, 2, 3, 4, 1).numpy()])


def test_dali_cpu_returns_the_planned_frames(vp9):
    mp4, meta = vp9
    n = meta["num_frames"]
    aug = ClipAug(crop=(0, 0, SIDE, SIDE), size=SIDE)
    starts = [0, n - 29, 30, 30 + 60 * FPS]  # start, end, two clips 60 s apart
    clips = tuple(ClipPlan(frames=tuple(s + 4 * i for i in range(8)), start_s=s / FPS, aug=aug) for s in starts)
    plan = SamplePlan("vp9", 0, clips)
    slices = slice_clips(mp4, meta, [c.frames for c in clips])
    out = DaliClipExecutor(len(clips), 8, SIDE, device_id=None, num_threads=1).run([plan], [slices])
    assert out.shape == (4, 3, 8, SIDE, SIDE)
    assert to_counter(out).tolist() == [list(c.frames) for c in clips]


def test_dali_cpu_agrees_with_pyav_path_on_the_same_plans(vp9):
    mp4, meta = vp9
    spec = DataConfig(rho=2, frames=4, stride=3, timespan_s=60, crop=32,
                      augment=(AugmentConfig(colour_p=1.0, grayscale_p=0.3, blur_p=0.6),))
    plans = [plan_sample(meta, s, spec) for s in range(6)]
    slices = [slice_clips(mp4, meta, [c.frames for c in p.clips]) for p in plans]
    dali = DaliClipExecutor(12, 4, 32, device_id=None, num_threads=1).run(plans, slices).numpy()
    cpu = np.concatenate([execute_plan(p, s) for p, s in zip(plans, slices)])
    assert dali.shape == cpu.shape == (12, 3, 4, 32, 32)
    assert any(c.aug.flip for p in plans for c in p.clips) and any(c.aug.blur_sigma for p in plans for c in p.clips)
    diff = np.abs(dali - cpu)
    # 1 grey level = 1 / (255 * 0.225) = 0.017 normalised; what differs is resampling rounding
    assert diff.mean() < 0.005, diff.mean()
    assert np.quantile(diff, 0.99) < 0.05
    # and they are not trivially equal: an unflipped DALI output would differ a lot
    flipped = next(i for i, c in enumerate(c for p in plans for c in p.clips) if c.aug.flip)
    assert np.abs(dali[flipped][..., ::-1] - cpu[flipped]).mean() > 0.05


def test_dali_executor_rejects_oversized_batch(vp9):
    mp4, meta = vp9
    plan = plan_sample(meta, 0, DataConfig(rho=2, frames=2, crop=16))
    ex = DaliClipExecutor(1, 2, 16, device_id=None, num_threads=1)
    with pytest.raises(ValueError, match="exceed"):
        ex.run([plan], [slice_clips(mp4, meta, [c.frames for c in plan.clips])])


@pytest.fixture(scope="module")
def h264_data(tmp_path_factory):
    from rhovid.ingest.pipeline import IngestConfig, ingest

    root = tmp_path_factory.mktemp("dali-h264")
    for i in range(4):
        write_counter_video(root / "src" / "c" / f"v{i}.mp4", 70 * FPS if i == 0 else 90, FPS, SIDE, SIDE)
    ingest([str(root / "src")], root / "data",
           IngestConfig(fps=FPS, short_side=SIDE, gop=16, shard_count=2, workers=0, progress=False))
    return root / "data"


@pytest.mark.gpu
def test_dali_mixed_loader_matches_cpu_loader(h264_data):
    from rhovid.train.data import ClipLoader, LoaderConfig

    base = dict(data=str(h264_data), rho=2, frames=4, stride=4, crop=32, batch_size=2, workers=0, seed=4,
                boxes="random", augment=(AugmentConfig(colour_p=1.0, blur_p=0.5),))
    gpu = list(ClipLoader(LoaderConfig(**base, device="cuda")))
    cpu = list(ClipLoader(LoaderConfig(**base, device="cpu")))
    assert len(gpu) == len(cpu) == 2
    for g, c in zip(gpu, cpu):
        assert g["video"].is_cuda and g["video"].shape == c["video"].shape == (2, 2, 3, 4, 32, 32)
        assert g["key"] == c["key"] and torch.equal(g["boxes"], c["boxes"])
        assert (g["video"].cpu() - c["video"]).abs().mean() < 0.02


@pytest.mark.gpu
def test_dali_mixed_returns_the_planned_frames(h264_data):
    from rhovid.train.data import ClipLoader, LoaderConfig

    plain = AugmentConfig(area=(1, 1), aspect=(1, 1), flip_p=0, colour_p=0, grayscale_p=0, blur_p=0)
    loader = ClipLoader(LoaderConfig(data=str(h264_data), rho=2, frames=8, stride=4, crop=SIDE, batch_size=1,
                                     workers=0, device="cuda", augment=(plain,), seed=1))
    for b in loader:
        got = to_counter(b["video"][0])
        for r in range(2):
            s = round(float(b["clip_start_s"][0, r]) * FPS)
            assert got[r, 0] == s and (np.diff(got[r]) <= 4).all()
