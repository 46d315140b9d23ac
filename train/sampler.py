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
random frame) either read from a box set (``lookup``, nearest stored frame) or drawn at random
(K boxes, width U(0.1, 0.5) of the crop window, aspect U(0.5, 2)), then mapped through the
clip's crop, resize and flip, clipped to the crop, degenerate ones dropped, padded to K.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rhovid.train.augment import AugmentConfig, ClipAug, draw_clip_aug, fixed_crop

# (global frames) -> (boxes (F, K, 4) x0y0x1y1 stored pixels, count (F,), score or None)
BoxLookup = Callable[[Sequence[int]], tuple]


@dataclass(frozen=True)
class ClipSpec:
    """What the rho clips of one sample are (temporal fields)."""

    rho: int = 2
    """Clips per video (positives of each other)."""
    frames: int = 8
    """Frames per clip (T)."""
    stride: int = 8
    """Frame stride within a clip (tau), in frames of the stored video."""
    timespan_s: float = 60.0
    """Maximum distance between any two clip starts, seconds."""
    min_gap_s: float = 0.0
    """Minimum distance between any two clip starts, seconds (clamped for short videos)."""


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


def clip_span(spec: ClipSpec) -> int:
    """Frames covered by one clip, first to last inclusive: (T - 1) * tau + 1."""
    return (spec.frames - 1) * spec.stride + 1


def draw_starts(rng: np.random.Generator, num_frames: int, fps: float, spec: ClipSpec) -> list[int]:
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


def even_starts(num_frames: int, spec: ClipSpec, clips_per_video: int) -> list[int]:
    """Deterministic test clips: centres of ``clips_per_video`` equal segments of the valid starts."""
    last = max(num_frames - clip_span(spec), 0)
    return [int(round(last * (i + 0.5) / clips_per_video)) for i in range(clips_per_video)]


def clip_frames(start: int, num_frames: int, spec: ClipSpec) -> tuple[int, ...]:
    """Global frame indices of a clip; past the end of a short video the last frame repeats."""
    return tuple(min(start + i * spec.stride, num_frames - 1) for i in range(spec.frames))


def random_boxes(rng: np.random.Generator, crop: tuple[int, int, int, int], k: int) -> np.ndarray:
    """ConST-CL random boxes inside a crop window: width U(0.1, 0.5) of it, aspect w/h U(0.5, 2).

    Returns (k, 4) float32 x0, y0, x1, y1 in stored-video pixels.
    """
    x0, y0, w, h = crop
    bw = rng.uniform(0.1, 0.5, k) * w
    bh = np.minimum(bw / rng.uniform(0.5, 2.0, k), h)
    bx = x0 + rng.uniform(0, 1, k) * (w - bw)
    by = y0 + rng.uniform(0, 1, k) * (h - bh)
    return np.stack([bx, by, bx + bw, by + bh], 1).astype(np.float32)


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


MAX_LABEL = 2**31 - 1
"""Largest class index a sample may carry (labels become int64 tensors and index arrays)."""


def check_meta(meta: dict) -> None:
    """Raise ``ValueError`` naming the first field of a sample json that the sampler cannot trust.

    Checked: ``key`` (str), ``num_frames`` (int >= 1), ``fps`` (finite, > 0), ``width`` / ``height``
    (int >= 1), ``label`` (None or an int in 0..``MAX_LABEL``). A sample failing here is skipped and
    counted by the loader and the evaluation, never allowed to end an epoch (fps 0 divided by zero,
    fps inf overflowed, a label of 2**70 broke the batch's int64 tensor).
    """
    if not isinstance(meta, dict):
        raise ValueError(f"sample json is a {type(meta).__name__}, not an object")
    if not isinstance(meta.get("key"), str):
        raise ValueError(f"sample json key {meta.get('key')!r} is not a string")

    def integer(name: str, low: int, high: int) -> None:
        v = meta.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ValueError(f"sample {meta['key']!r}: {name} {v!r} is not an integer in {low}..{high}")

    integer("num_frames", 1, 2**40)
    integer("width", 1, 2**16)
    integer("height", 1, 2**16)
    fps = meta.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"sample {meta['key']!r}: fps {fps!r} is not a finite number > 0")
    if meta.get("label") is not None:
        integer("label", 0, MAX_LABEL)


def plan_sample(
    meta: dict,
    rng_seed: int,
    spec: ClipSpec,
    aug: AugmentConfig,
    *,
    augment: bool = True,
    boxes: str | None = None,
    max_boxes: int = 8,
    box_frame: str = "centre",
    lookup: BoxLookup | None = None,
    clips_per_video: int = 1,
    spatial_crops: Sequence[str] = ("centre",),
) -> SamplePlan:
    """Plan one sample. Pure: the same arguments give the same plan.

    Args:
        meta: the sample's json (``key, num_frames, fps, width, height, label``).
        rng_seed: seed of this sample (see ``sample_seed``).
        spec: rho, T, tau, timespan and minimum gap.
        aug: augmentation ranges and output size.
        augment: False = evaluation: ``clips_per_video`` evenly spaced clips times
            ``spatial_crops`` fixed square crops, no flip/colour/blur; ``spec.rho`` is ignored
            and the views come out in temporal-major order.
        boxes: None (no boxes, K slots all masked), "random" or "store" (use ``lookup``).
        max_boxes: K.
        box_frame: "centre" (frame T // 2 of the clip) or "random" (a random frame of the clip).
        lookup: for ``boxes="store"``: global frames -> (boxes (F, K', 4), count (F,), score).

    Returns:
        the ``SamplePlan``.
    """
    check_meta(meta)
    n, fps = int(meta["num_frames"]), float(meta["fps"])
    width, height = int(meta["width"]), int(meta["height"])
    rng = np.random.default_rng(rng_seed)
    if augment:
        starts = draw_starts(rng, n, fps, spec)
        rng.shuffle(starts)
        augs = [draw_clip_aug(rng, width, height, aug) for _ in starts]
    else:
        pairs = [(s, p) for s in even_starts(n, spec, clips_per_video) for p in spatial_crops]
        starts = [s for s, _ in pairs]
        augs = [fixed_crop(width, height, aug.crop, p) for _, p in pairs]
    clips = []
    for start, a in zip(starts, augs):
        frames = clip_frames(start, n, spec)
        bf = int(rng.integers(0, spec.frames)) if (box_frame == "random" and augment) else spec.frames // 2
        if boxes is None:
            raw = np.zeros((0, 4), np.float32)
        elif boxes == "random":
            raw = random_boxes(rng, a.crop, max_boxes)
        elif boxes == "store":
            if lookup is None:
                raise ValueError("boxes='store' needs a lookup")
            found, count, _ = lookup([frames[bf]])
            raw = np.asarray(found[0][: int(count[0])], np.float32)
        else:
            raise ValueError(f"boxes must be None, 'random' or 'store', got {boxes!r}")
        b, m = map_boxes(raw, a, max_boxes)
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
