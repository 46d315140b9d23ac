"""CPU executor of a sample plan: PyAV decodes each clip's slice, OpenCV/numpy augment it.

DESIGN.md decision 3: on CPU, PyAV (FFmpeg's H.264 decoder) is the fast option; DALI's CPU
decoder has no H.264. The decoder sees only the clip's ``init + fragments`` slice, so it
decodes at most the clip's span plus the GOP before its first frame.
"""

from __future__ import annotations

import numpy as np
from rhovid.ingest.decode import decode_rgb
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, apply_clip
from rhovid.train.sampler import SamplePlan
from rhovid.train.streaming import ClipSlice


def decode_clips(slices: list[ClipSlice]) -> list[np.ndarray]:
    """Decoded frames of each clip: a list of (T, H, W, 3) uint8 RGB arrays."""
    return [decode_rgb(s.data, s.indices) for s in slices]


def decoded_frames(slices: list[ClipSlice]) -> int:
    """Frames the decoder runs through for these slices (``decode_rgb`` stops at the last wanted)."""
    return sum(max(s.indices) + 1 for s in slices)


def execute_plan(plan: SamplePlan, slices: list[ClipSlice], mean=KINETICS_MEAN, std=KINETICS_STD) -> np.ndarray:
    """Decode and augment one sample.

    Returns:
        (rho, 3, T, S, S) float32, normalised.
    """
    clips = decode_clips(slices)
    return np.stack([apply_clip(frames, c.aug, mean, std) for frames, c in zip(clips, plan.clips)])
