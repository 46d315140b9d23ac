"""Clip sampling against the authors' code: PySlowFast's decoder (rho-methods) and CVRL/ConST-CL's
``sample_ssl_sequence`` (tensorflow/models video_ssl)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from rhovid.train.data_config import DataConfig
from rhovid.train.sampler import plan_sample
from rhovid.train.temporal import draw_clips

META = {"key": "v0", "num_frames": 30 * 120, "fps": 30.0, "width": 160, "height": 120, "label": 3}
RHO = DataConfig(rho=2, frames=8, stride=8, crop=64)  # clip_sampling="slowfast"


def slowfast_reference(rng, video_size, fps, num_frames, sampling_rate, rho, min_delta, max_delta, target_fps=30):
    """decoder.decode -> torchvision_decode's get_multiple_start_end_idx (decoder.py:79-183) and
    temporal_sampling (decoder.py:17-34), for num_decode = rho clips of one video; uniform draws
    from ``rng`` (``random.uniform`` in PySlowFast), the output permutation drawn last."""
    clip_sizes = [np.maximum(1.0, sampling_rate * num_frames / target_fps * fps) for _ in range(rho)]

    def sample_clips(num_retries=100):
        se_inds = np.empty((0, 2))
        dt = np.empty(0)
        for clip_size in clip_sizes:
            for i_try in range(num_retries):
                max_start = max(video_size - clip_size, 0)
                start_idx = rng.uniform(0, max_start)
                end_idx = start_idx + clip_size - 1
                se_inds_new = np.append(se_inds, [[start_idx, end_idx]], axis=0)
                if se_inds.shape[0] < 1:
                    se_inds = se_inds_new
                    break
                se_inds_new = np.sort(se_inds_new, 0)
                t_start, t_end = se_inds_new[:, 0], se_inds_new[:, 1]
                dt = t_start[1:] - t_end[:-1]
                if (any(dt < min_delta) or any(dt > max_delta)) and i_try < num_retries - 1:
                    continue
                else:
                    se_inds = se_inds_new
                    break
        return se_inds, dt

    goodness = -math.inf
    for _ in range(100):
        se_inds, dt = sample_clips()
        success = not (any(dt < min_delta) or any(dt > max_delta))
        if success:
            se_final = se_inds
            break
        cur_goodness = np.r_[dt[dt < min_delta], -dt[dt > max_delta]].sum()
        if goodness < cur_goodness:
            se_final = se_inds
            goodness = cur_goodness
    ind_clips = rng.permutation(rho)
    out = []
    for start_idx, end_idx in se_final[ind_clips]:
        index = torch.linspace(start_idx, end_idx, num_frames)
        index = torch.clamp(index, 0, video_size - 1).long()
        out.append(tuple(index.tolist()))
    return out


@pytest.mark.parametrize("fps,n,rho,dmin,dmax", [
    (30.0, 3600, 2, None, None), (30.0, 3600, 4, None, None), (15.0, 900, 3, None, None),
    (30.0, 3600, 3, 1.0, 3.0),  # feasible DELTA_CLIPS window (gaps of 30..90 frames)
    (30.0, 300, 4, 5.0, None),  # infeasible: the least-violating of 100 rounds is kept
    (30.0, 40, 2, None, None),  # shorter than one clip: frames clamped to the last one
])
def test_slowfast_sampling_is_the_decoders(fps, n, rho, dmin, dmax):
    cfg = replace(RHO, rho=rho, delta_min_s=dmin, delta_max_s=dmax)
    for seed in range(2 if n == 300 else 30):  # the infeasible case runs 100 x 100 draws per clip: 1 s a sample
        ours = draw_clips(np.random.default_rng(seed), n, fps, cfg)
        ref = slowfast_reference(np.random.default_rng(seed), float(n), fps, 8, 8, rho,
                                 -math.inf if dmin is None else dmin * fps, math.inf if dmax is None else dmax * fps)
        assert ours == ref


def test_slowfast_frames_are_a_linspace_over_t_times_tau():
    """8 x 8 at 30 fps: each clip spans T x tau = 64 frames, its 8 frames 63 / 7 = 9 apart (not 8);
    starts are uniform over the whole 120 s video (the configs leave DELTA_CLIPS_MAX at inf)."""
    firsts, distances = [], []
    for seed in range(400):
        plan = plan_sample(META, seed, RHO)
        for c in plan.clips:
            assert list(np.diff(c.frames)) == [9] * 7
            assert 0 <= c.frames[0] and c.frames[-1] <= 3599
            firsts.append(c.frames[0])
        distances.append(abs(plan.clips[0].frames[0] - plan.clips[1].frames[0]))
    assert min(firsts) < 60 and max(firsts) > 3600 - 64 - 60
    assert max(distances) > 90 * 30  # far beyond 60 s: independent over the whole video
    assert np.mean(distances) == pytest.approx((3600 - 64) / 3, rel=0.12)  # E|U1 - U2| = L / 3


def test_slowfast_scales_the_span_to_the_video_rate():
    meta = dict(META, fps=15.0, num_frames=15 * 60)
    for seed in range(50):
        for c in plan_sample(meta, seed, RHO).clips:
            # clip_size = 8 * 8 / 30 * 15 = 32 frames: linspace(s, s + 31, 8), truncated
            assert c.frames[-1] - c.frames[0] in (31, 30, 32) and all(d in (4, 5) for d in np.diff(c.frames))


def _bisect(u, max_offset):
    """The while_loop of sample_ssl_sequence (video_ssl_preprocess_ops.py), float32-free transcription."""
    def cdf(k):
        return -(k ** 2) / (1.0 * max_offset ** 2) + k * 2 / (1.0 * max_offset)
    k_low, k_up, k = 0.0, max_offset, math.floor(max_offset / 2.0)
    while abs(k_up - k_low) > 1.0:
        k_low, k_up, k = (k_low, k, math.floor((k + k_low) / 2.0)) if cdf(k) > u else \
            (k, k_up, math.floor((k_up + k) / 2.0))
    return int(k)


def test_linear_gap_is_constcls_sampler():
    """ConST-CL (CVRL's sample_ssl_sequence): gap density 2 (1 - k / M) / M on [0, M], M = L - (T - 1) tau;
    first start U[0, M - gap), second = first + gap, the two shuffled; frames start + i tau."""
    cfg = DataConfig(rho=2, frames=16, stride=2, clip_sampling="linear_gap", crop=64)
    n, M = 300, 300 - 30
    gaps = []
    for seed in range(3000):
        rng = np.random.default_rng(seed)
        clips = draw_clips(rng, n, 30.0, cfg)
        for c in clips:
            assert list(np.diff(c)) == [2] * 15 and 0 <= c[0] and c[-1] < n
        gap = abs(clips[0][0] - clips[1][0])
        u = np.random.default_rng(seed).random()  # the first draw: the gap's quantile
        assert gap == _bisect(u, M)
        assert abs(gap - M * (1 - math.sqrt(1 - u))) <= 1.5  # the inverse CDF, to the bisection's 1 frame
        gaps.append(gap)
    gaps = np.asarray(gaps)
    assert gaps.mean() == pytest.approx(M / 3, rel=0.05)  # linearly decreasing: E[gap] = M / 3
    assert np.mean(gaps <= M / 2) == pytest.approx(0.75, abs=0.03)
    first_later = sum(draw_clips(np.random.default_rng(s), n, 30.0, cfg)[0][0] >
                      draw_clips(np.random.default_rng(s), n, 30.0, cfg)[1][0] for s in range(400))
    assert 150 < first_later < 250  # shuffled


def test_linear_gap_short_video_loops():
    """Shorter than one clip: two independent starts and frames wrapping around (_sample_or_pad_sequence_indices)."""
    cfg = DataConfig(rho=2, frames=16, stride=2, clip_sampling="linear_gap", crop=64)
    for seed in range(50):
        for c in draw_clips(np.random.default_rng(seed), 20, 30.0, cfg):
            assert c == tuple((c[0] + 2 * i) % 20 for i in range(16))


def test_linear_gap_needs_two_clips():
    from rhovid.train.data_config import check_data_config

    with pytest.raises(ValueError, match="exactly 2 clips"):
        check_data_config(DataConfig(rho=3, clip_sampling="linear_gap"))
