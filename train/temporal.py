"""Which frames the rho clips of a video take (``DataConfig.clip_sampling``); pure, seeded by the caller.

- "slowfast" (rho-method presets): PySlowFast's decoder with ``temporally_rnd_clips``
  (``slowfast/datasets/decoder.py``). A clip spans ``clip_size = T x tau x fps / TARGET_FPS``
  frames of the video (``decoder.py:552-555``); the clips' starts are drawn one after another,
  each uniform (a float) over ``[0, frames - clip_size]``, and re-drawn (100 tries, 100 rounds,
  the least-violating kept) while the gap from one clip's end to the next clip's start, in time
  order, leaves ``[DELTA_CLIPS_MIN, DELTA_CLIPS_MAX]`` (``get_multiple_start_end_idx``,
  ``decoder.py:79-183``; the contrastive configs leave both at -inf / inf, so the starts are
  i.i.d. uniform over the whole video). The clip takes T frames by
  ``linspace(start, start + clip_size - 1, T)``, clamped and truncated (``temporal_sampling``,
  ``decoder.py:17-34``): for 8 x 8 at 30 fps the frames are 9 apart, not 8. The clips come out in
  random order (``decoder.py:499-502, 600-611``). (PySlowFast decodes the frames whose
  timestamps fall in the clip's span and re-indexes them, which moves a frame by at most one.)
- "window" (rhovid's own): the first start uniform, each next one uniform over the starts that
  keep every pair within ``timespan_s`` and, where possible, ``min_gap_s`` apart; frames
  ``start + i tau`` (the last frame repeats past the end of a short video); clip order shuffled.
- "linear_gap" (ConST-CL, from CVRL): ``sample_ssl_sequence`` of tensorflow/models
  ``official/projects/video_ssl/ops/video_ssl_preprocess_ops.py``: two clips whose start gap is
  drawn from the linearly decreasing density on ``[0, max_offset]`` (inverse CDF by bisection),
  frames ``start + i tau`` wrapping around the video (``_sample_or_pad_sequence_indices``).
"""

from __future__ import annotations

import math

import numpy as np

from rhovid.train.data_config import DataConfig


def clip_span(cfg: DataConfig) -> int:
    """Frames covered by a stride-sampled clip, first to last inclusive: (T - 1) * tau + 1."""
    return (cfg.frames - 1) * cfg.stride + 1


def draw_clips(rng: np.random.Generator, num_frames: int, fps: float, cfg: DataConfig) -> list[tuple[int, ...]]:
    """The rho clips' global frame indices (each of length T), in the order they are returned."""
    if cfg.clip_sampling == "slowfast":
        return slowfast_clips(rng, num_frames, fps, cfg)
    if cfg.clip_sampling == "linear_gap":
        return linear_gap_clips(rng, num_frames, cfg)
    if cfg.clip_sampling == "window":
        starts = window_starts(rng, num_frames, fps, cfg)
        rng.shuffle(starts)
        return [clip_frames(s, num_frames, cfg) for s in starts]
    raise ValueError(f"clip_sampling must be 'slowfast', 'window' or 'linear_gap', got {cfg.clip_sampling!r}")


def slowfast_clips(rng: np.random.Generator, num_frames: int, fps: float, cfg: DataConfig) -> list[tuple[int, ...]]:
    """PySlowFast's multi-clip temporal sampling (see the module docstring)."""
    import torch

    clip_size = max(1.0, cfg.stride * cfg.frames / cfg.target_fps * fps)
    lo = -math.inf if cfg.delta_min_s is None else cfg.delta_min_s * fps
    hi = math.inf if cfg.delta_max_s is None else cfg.delta_max_s * fps
    spans, goodness = None, -math.inf
    for _ in range(100):  # get_multiple_start_end_idx's outer retries
        se, dt = _sample_spans(rng, float(num_frames), clip_size, cfg.rho, lo, hi)
        if not (np.any(dt < lo) or np.any(dt > hi)):
            spans = se
            break
        score = np.r_[dt[dt < lo], -dt[dt > hi]].sum()
        if goodness < score:
            spans, goodness = se, score
    order = rng.permutation(cfg.rho)  # the time-sorted clips are returned in random order
    out = []
    for start, end in spans[order]:
        index = torch.linspace(float(start), float(end), cfg.frames)  # float32, as temporal_sampling
        out.append(tuple(int(i) for i in torch.clamp(index, 0, num_frames - 1).long()))
    return out


def _sample_spans(rng, video_size: float, clip_size: float, rho: int, lo: float, hi: float):
    """``sample_clips`` of decoder.py:108-156: (rho, 2) time-sorted [start, end] and the gaps."""
    se = np.empty((0, 2))
    dt = np.empty(0)
    for _ in range(rho):
        for i_try in range(100):
            start = rng.uniform(0, max(video_size - clip_size, 0))
            new = np.append(se, [[start, start + clip_size - 1]], axis=0)
            if se.shape[0] < 1:
                se = new
                break
            new = np.sort(new, 0)
            dt = new[1:, 0] - new[:-1, 1]
            if (np.any(dt < lo) or np.any(dt > hi)) and i_try < 99:
                continue
            se = new
            break
    return se, dt


def linear_gap_clips(rng: np.random.Generator, num_frames: int, cfg: DataConfig) -> list[tuple[int, ...]]:
    """ConST-CL's two clips (``sample_ssl_sequence``, see the module docstring)."""
    length = float(num_frames)
    reach = (cfg.frames - 1) * cfg.stride
    max_offset = length - reach if length > reach else length

    def cdf(k: float) -> float:  # CDF of the density 2 (1 - k / max_offset) / max_offset (power 1)
        return -(k**2) / max_offset**2 + 2 * k / max_offset

    u = rng.random()
    k_low, k_up, k = 0.0, max_offset, math.floor(max_offset / 2)
    while abs(k_up - k_low) > 1.0:
        if cdf(k) > u:
            k_low, k_up, k = k_low, k, math.floor((k + k_low) / 2)
        else:
            k_low, k_up, k = k, k_up, math.floor((k_up + k) / 2)
    delta, max_offset = int(k), int(max_offset)
    if max_offset == num_frames:  # video shorter than one clip: two independent starts
        first, second = int(rng.integers(0, max_offset)), int(rng.integers(0, max_offset))
    else:
        first = int(rng.integers(0, max_offset - delta))
        second = first + delta
    starts = [first, second]
    rng.shuffle(starts)
    return [tuple((s + i * cfg.stride) % num_frames for i in range(cfg.frames)) for s in starts]


def window_starts(rng: np.random.Generator, num_frames: int, fps: float, cfg: DataConfig) -> list[int]:
    """rho clip start frames, pairwise within ``timespan_s`` and at least ``min_gap_s`` apart.

    The first start is uniform over the video; each next one is uniform over the starts that
    keep every pair within the timespan and, where possible, outside the gap of every previous
    start. A gap above ``timespan / (2 (rho - 1))`` (or above what the video allows) is clamped.
    """
    last = max(num_frames - clip_span(cfg), 0)  # largest valid start
    span = min(int(round(cfg.timespan_s * fps)), last)
    gap = int(round(cfg.min_gap_s * fps))
    if cfg.rho > 1:
        # Clamp so the sequential draw below can always honour the gap: the allowed window
        # always holds >= span + 1 starts and the previous starts exclude < 2 * gap * (rho - 1).
        gap = min(gap, span // (2 * (cfg.rho - 1)))
    starts = [int(rng.integers(0, last + 1))]
    for _ in range(cfg.rho - 1):
        lo, hi = max(0, max(starts) - span), min(last, min(starts) + span)
        cand = np.arange(lo, hi + 1)
        if gap > 0:
            ok = np.all(np.abs(cand[:, None] - np.asarray(starts)[None, :]) >= gap, axis=1)
            if ok.any():
                cand = cand[ok]
        starts.append(int(cand[rng.integers(0, len(cand))]))
    return starts


def even_starts(num_frames: int, cfg: DataConfig, clips_per_video: int) -> list[int]:
    """Deterministic test clips: centres of ``clips_per_video`` equal segments of the valid starts."""
    last = max(num_frames - clip_span(cfg), 0)
    return [int(round(last * (i + 0.5) / clips_per_video)) for i in range(clips_per_video)]


def clip_frames(start: int, num_frames: int, cfg: DataConfig) -> tuple[int, ...]:
    """Global frame indices of a stride-sampled clip; past the end of a short video the last frame repeats."""
    return tuple(min(start + i * cfg.stride, num_frames - 1) for i in range(cfg.frames))
