"""The sampler decides, the decoders execute (DESIGN.md decision 2).

``plan_sample`` is one pure, seeded function per sample: which frames of which rho clips,
each clip's crop/flip/colour/blur, and its region boxes. The plan is a small frozen,
JSON-serialisable record; the PyAV CPU path and the DALI GPU path both execute it, so they
return the same frames.

Temporal sampling (rho-methods, Feichtenhofer et al. CVPR 2021, Sec. 3 "Temporal span"):
rho clips of ``frames`` frames at ``stride`` are drawn from one video; ``timespan_s`` bounds
the distance between any two clip starts (the paper's maximum timespan, 60 s by default)
and ``min_gap_s`` is a lower bound (PySlowFast's ``DATA.DELTA_CLIPS_MIN``; ``timespan_s``
plays ``DELTA_CLIPS_MAX``). Both are clamped to what a short video allows; a video shorter
than one clip repeats its last frame. The clip order is shuffled so that no clip index is
systematically earlier in time.

Boxes (ConST-CL, Sec. 3.2 / 4.1): for one frame of each clip (``box_frame``: the centre or a
random frame) either read from a box set (``lookup``, nearest stored frame) and mapped through
the clip's crop, resize and flip, clipped to the crop, degenerate ones dropped, padded to K; or
drawn at random in output crop pixels by the authors' generator (``random_boxes``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rhovid.train.augment import ClipAug, draw_clip_aug, fixed_crop
from rhovid.train.data_config import DataConfig

# (global frames) -> (boxes (F, K, 4) x0y0x1y1 stored pixels, count (F,), score or None)
BoxLookup = Callable[[Sequence[int]], tuple]


@dataclass(frozen=True)
class ClipPlan:
    """One clip: frames to decode, augmentation, boxes."""

    frames: tuple[int, ...]
    """Global frame indices of the clip (length T; the stride is exact unless clamped at the end)."""
    start_s: float
    """Start time of the clip in seconds."""
    aug: ClipAug
    """Spatial/colour parameters (same for every frame of the clip)."""
    box_frame: int = 0
    """Index into ``frames`` of the frame the boxes belong to."""
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    """K boxes x0, y0, x1, y1 in output crop pixels (zeros where ``box_mask`` is False)."""
    box_mask: tuple[bool, ...] = ()
    """K flags: which of ``boxes`` are real."""


@dataclass(frozen=True)
class SamplePlan:
    """Everything the executors need to produce one sample."""

    key: str
    """Sample key in the shards."""
    label: int
    """Class index or -1 when unlabelled."""
    clips: tuple[ClipPlan, ...]
    """rho clips in the order they are returned (views in evaluation mode)."""

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> SamplePlan:
        """Inverse of ``to_dict``."""
        clips = []
        for c in d["clips"]:
            a = dict(c["aug"])
            aug = ClipAug(
                crop=tuple(a["crop"]), size=a["size"], flip=a["flip"],
                colour_ops=tuple((str(n), float(f)) for n, f in a["colour_ops"]),
                grayscale=a["grayscale"], blur_sigma=a["blur_sigma"],
            )
            clips.append(ClipPlan(
                frames=tuple(c["frames"]), start_s=c["start_s"], aug=aug, box_frame=c["box_frame"],
                boxes=tuple(tuple(b) for b in c["boxes"]), box_mask=tuple(c["box_mask"]),
            ))
        return SamplePlan(key=d["key"], label=d["label"], clips=tuple(clips))


def sample_seed(seed: int, epoch: int, key: str) -> int:
    """The seed of one sample's plan: independent of worker count, rank and read order."""
    h = hashlib.blake2b(f"{seed}:{epoch}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def clip_span(spec: DataConfig) -> int:
    """Frames covered by one clip, first to last inclusive: (T - 1) * tau + 1."""
    return (spec.frames - 1) * spec.stride + 1


def draw_starts(rng: np.random.Generator, num_frames: int, fps: float, spec: DataConfig) -> list[int]:
    """rho clip start frames, pairwise within ``timespan_s`` and at least ``min_gap_s`` apart.

    The first start is uniform over the video; each next one is uniform over the starts that
    keep every pair within the timespan and, where possible, outside the gap of every
    previous start (SlowFast draws its later clips relative to the first the same way). A
    gap above ``timespan / (2 (rho - 1))`` (or above what the video allows) is clamped to it.
    """
    last = max(num_frames - clip_span(spec), 0)  # largest valid start
    span = min(int(round(spec.timespan_s * fps)), last)
    gap = int(round(spec.min_gap_s * fps))
    if spec.rho > 1:
        # Clamp so the sequential draw below can always honour the gap: the allowed window
        # always holds >= span + 1 starts and the previous starts exclude < 2 * gap * (rho - 1).
        gap = min(gap, span // (2 * (spec.rho - 1)))
    starts = [int(rng.integers(0, last + 1))]
    for _ in range(spec.rho - 1):
        lo, hi = max(0, max(starts) - span), min(last, min(starts) + span)
        cand = np.arange(lo, hi + 1)
        if gap > 0:
            ok = np.all(np.abs(cand[:, None] - np.asarray(starts)[None, :]) >= gap, axis=1)
            if ok.any():
                cand = cand[ok]
        starts.append(int(cand[rng.integers(0, len(cand))]))
    return starts


def even_starts(num_frames: int, spec: DataConfig, clips_per_video: int) -> list[int]:
    """Deterministic test clips: centres of ``clips_per_video`` equal segments of the valid starts."""
    last = max(num_frames - clip_span(spec), 0)
    return [int(round(last * (i + 0.5) / clips_per_video)) for i in range(clips_per_video)]


def clip_frames(start: int, num_frames: int, spec: DataConfig) -> tuple[int, ...]:
    """Global frame indices of a clip; past the end of a short video the last frame repeats."""
    return tuple(min(start + i * spec.stride, num_frames - 1) for i in range(spec.frames))


RANDOM_BOXES: dict[str, str] = {"random": "shared", "random-independent": "independent"}
"""Box-set names drawn on the fly -> ``random_boxes(draws=...)``."""


def random_boxes(rng: np.random.Generator, size: tuple[int, int], k: int, draws: str = "shared") -> np.ndarray:
    """ConST-CL's random boxes, in output crop pixels, as the authors' code draws them.

    The authors' generator (tensorflow/models official/projects/const_cl/datasets/
    video_ssl_inputs.py:43-75, commit 0ca414d5), in coordinates normalised to the output crop:
    x0, y0 ~ U(0, 1), w ~ U(0.1, 0.5), h = w * a with a ~ U(0.5, 2), x1 = min(x0 + w, 0.999),
    y1 = min(y0 + h, 0.999); every box is valid (mask all true), however thin the clipping leaves
    it (x0 > 0.999 even gives x1 < x0). It draws after the crop and flip, so boxes are never
    mapped through them.

    ``draws`` says which uniforms feed those formulas:

    - "shared" (box set "random", the preset): what TF executes. The four
      ``tf.random.uniform(..., seed=seed)`` calls carry the same op seed (1234, :82-83) inside a
      tf.data map, so they return the same stream (checked with TF 2.21: equal to the last bit):
      one u per box gives x0 = y0 = u, w = 0.1 + 0.4u, a = 0.5 + 1.5u. Boxes start on the crop's
      diagonal and grow with u; 43.8 % end at the right or bottom border (u > 0.5624).
    - "independent" (box set "random-independent"): four independent uniforms, what the code
      reads as; 54.7 % of the boxes are clipped.

    Args:
        rng: the sample's generator.
        size: (height, width) of the output crop in pixels.
        k: boxes per clip.
        draws: "shared" or "independent".

    Returns:
        (k, 4) float32 x0, y0, x1, y1 in output crop pixels.
    """
    h, w = size
    if draws == "shared":
        u = rng.uniform(0.0, 1.0, k)
        x0 = y0 = u
        bw, aspect = 0.1 + 0.4 * u, 0.5 + 1.5 * u
    elif draws == "independent":
        x0, y0 = rng.uniform(0.0, 1.0, k), rng.uniform(0.0, 1.0, k)
        bw, aspect = rng.uniform(0.1, 0.5, k), rng.uniform(0.5, 2.0, k)
    else:
        raise ValueError(f"random_boxes draws must be 'shared' or 'independent', got {draws!r}")
    x1 = np.minimum(x0 + bw, 1.0 - 1e-3)
    y1 = np.minimum(y0 + bw * aspect, 1.0 - 1e-3)
    return np.stack([x0 * w, y0 * h, x1 * w, y1 * h], 1).astype(np.float32)


def map_boxes(boxes: np.ndarray, aug: ClipAug, k: int, min_size: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Map stored-pixel boxes through a clip's crop/resize/flip into crop pixels.

    Args:
        boxes: (N, 4) x0, y0, x1, y1 in stored-video pixels.
        aug: the clip's crop window, output size and flip.
        k: number of output slots.
        min_size: boxes narrower or shorter than this (output pixels) after clipping are dropped.

    Returns:
        boxes (k, 4) float32 in output crop pixels, mask (k,) bool; the first N' <= k valid
        boxes in input order, zeros after them.
    """
    x0, y0, w, h = aug.crop
    S = aug.size
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.empty_like(b)
    out[:, [0, 2]] = (b[:, [0, 2]] - x0) * (S / w)
    out[:, [1, 3]] = (b[:, [1, 3]] - y0) * (S / h)
    if aug.flip:
        out[:, [0, 2]] = S - out[:, [2, 0]]
    out = np.clip(out, 0, S)
    keep = ((out[:, 2] - out[:, 0]) >= min_size) & ((out[:, 3] - out[:, 1]) >= min_size)
    out = out[keep][:k]
    res = np.zeros((k, 4), np.float32)
    res[: len(out)] = out
    mask = np.zeros(k, bool)
    mask[: len(out)] = True
    return res, mask


def plan_sample(
    meta: dict,
    rng_seed: int,
    cfg: DataConfig,
    *,
    evaluation: bool = False,
    lookup: BoxLookup | None = None,
    clips_per_video: int = 1,
    spatial_crops: Sequence[str] = ("centre",),
) -> SamplePlan:
    """Plan one sample. Pure: the same arguments give the same plan.

    Args:
        meta: the sample's json (``key, num_frames, fps, width, height, label``).
        rng_seed: seed of this sample (see ``sample_seed``).
        cfg: what to sample: rho, T, tau, timespan, gap, crop, per-view augmentation, boxes.
        evaluation: True = ``clips_per_video`` evenly spaced clips times ``spatial_crops`` fixed
            square crops, no flip/colour/blur; ``cfg.rho`` is ignored and the views come out in
            temporal-major order.
        lookup: for a stored box set (``cfg.boxes`` not None nor in ``RANDOM_BOXES``): global frames ->
            (boxes (F, K', 4), count (F,), score).
        clips_per_video: evaluation: evenly spaced clips per video.
        spatial_crops: evaluation: fixed crops per clip ("left", "centre", "right").

    Returns:
        the ``SamplePlan``.
    """
    n, fps = int(meta["num_frames"]), float(meta["fps"])
    width, height = int(meta["width"]), int(meta["height"])
    if n < 1:
        raise ValueError(f"sample {meta.get('key')!r} has no frames")
    rng = np.random.default_rng(rng_seed)
    if not evaluation:
        starts = draw_starts(rng, n, fps, cfg)
        rng.shuffle(starts)
        augs = [draw_clip_aug(rng, width, height, cfg.augment[i % len(cfg.augment)], cfg.crop)
                for i in range(len(starts))]
    else:
        pairs = [(s, p) for s in even_starts(n, cfg, clips_per_video) for p in spatial_crops]
        starts = [s for s, _ in pairs]
        augs = [fixed_crop(width, height, cfg.crop, p) for _, p in pairs]
    clips = []
    for start, a in zip(starts, augs):
        frames = clip_frames(start, n, cfg)
        bf = int(rng.integers(0, cfg.frames)) if (cfg.box_frame == "random" and not evaluation) else cfg.frames // 2
        if cfg.boxes is None:
            raw = np.zeros((0, 4), np.float32)
        elif cfg.boxes in RANDOM_BOXES:
            raw = None
        else:
            if lookup is None:
                raise ValueError(f"boxes={cfg.boxes!r} (a stored set) needs a lookup")
            found, count, _ = lookup([frames[bf]])
            raw = np.asarray(found[0][: int(count[0])], np.float32)
        if raw is None:  # drawn in output pixels, all valid: not mapped, clipped or dropped
            b, m = random_boxes(rng, (a.size, a.size), cfg.max_boxes, RANDOM_BOXES[cfg.boxes]), np.ones(cfg.max_boxes, bool)
        else:
            b, m = map_boxes(raw, a, cfg.max_boxes)
        clips.append(ClipPlan(
            frames=frames, start_s=start / fps, aug=a, box_frame=bf,
            boxes=tuple(tuple(float(v) for v in row) for row in b), box_mask=tuple(bool(v) for v in m),
        ))
    label = meta.get("label")
    return SamplePlan(key=str(meta["key"]), label=-1 if label is None else int(label), clips=tuple(clips))


def clip_span_seconds(plan: SamplePlan, fps: float) -> float:
    """Largest distance between two clip starts of a plan, seconds (for tests and stats)."""
    s = [c.frames[0] for c in plan.clips]
    return (max(s) - min(s)) / fps if s else 0.0


def gop_cover(frames: Sequence[int], gop: int) -> int:
    """Frames a keyframe-aligned decoder must decode to return ``frames``: from the GOP start
    before the first to the last (the benchmark's bound "clip span + one GOP")."""
    first = min(frames) // gop * gop
    return max(frames) - first + 1
