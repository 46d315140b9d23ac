"""CPU executor of a sample plan: PyAV decodes each clip's slice, torch/numpy/OpenCV augment it.

DESIGN.md decision 3: on CPU, PyAV (FFmpeg's H.264 decoder) is the fast option; DALI's CPU
decoder has no H.264. The decoder sees only the clip's ``init + fragments`` slice, so it
decodes at most the clip's span plus the GOP before its first frame.

The decode loop differs from ``rhovid.ingest.decode.decode_rgb`` in two ways: the codec
runs single-threaded (a slice is one or a few GOPs, where FFmpeg's frame threading costs
more than it gains: 18 ms vs. 26-37 ms with ``thread_type="AUTO"`` for a 69-frame 128x96
slice, and the loader already runs one decoder per worker process), and unneeded
non-reference frames are skipped (``decode_frames``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import cv2
import numpy as np

from rhovid.ingest.decode import decode_rgb
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, apply_clip
from rhovid.train.sampler import SamplePlan
from rhovid.train.streaming import ClipSlice


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame.

    yuv420p (everything ingest writes) is converted by OpenCV: 0.08 ms vs 0.46 ms for PyAV's
    swscale ``to_ndarray(format="rgb24")`` on a 320x240 frame (same BT.601 limited-range
    matrix, values within 3 of swscale's); that conversion was 40 % of the CPU path's time.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def decode_frames(data: bytes, indices: Sequence[int], thread_type: str | None = None,
                  stats: dict | None = None) -> np.ndarray:
    """Decode frames ``indices`` (local to ``data``, any order, repeats allowed) to RGB.

    Single-threaded, frames that are neither wanted nor referenced by other frames are not
    decoded at all (FFmpeg ``skip_frame=NONREF`` switched per packet): with x264's default
    B-frames about half the frames of a GOP are non-reference, so a strided clip (tau = 8)
    decodes roughly half of its span. Frames are identified by their timestamps (CFR: the
    slice's first packet is its IDR frame, local frame 0).

    Args:
        data: a fragmented MP4 (``init + fragments``).
        indices: local frame indices.
        thread_type: FFmpeg threading ("AUTO", "FRAME", "SLICE"); None = single thread with
            non-reference skipping.
        stats: if given, ``stats["decoded"]`` is increased by the number of frames decoded.

    Returns:
        (len(indices), H, W, 3) uint8.

    Raises:
        IndexError: an index is past the last frame of ``data``.
    """
    wanted = set(indices)
    got: dict[int, np.ndarray] = {}
    decoded = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        if thread_type:
            stream.thread_type = thread_type
        skip = thread_type is None
        pts0 = step = None

        def index(pts):
            return round((pts - pts0) / step)

        for packet in container.demux(stream):
            if packet.size and pts0 is None:
                pts0, step = packet.pts, packet.duration
                if pts0 is None or not step:
                    break  # no timestamps to identify frames by (e.g. some VP9 muxes): plain decode below
            if skip and packet.size:
                codec.skip_frame = "DEFAULT" if index(packet.pts) in wanted else "NONREF"
            for frame in codec.decode(packet if packet.size else None):
                decoded += 1
                i = index(frame.pts)
                if i in wanted:
                    got[i] = to_rgb(frame)
            if len(got) == len(wanted):
                break
    if pts0 is None or not step:
        out = decode_rgb(data, list(indices))
        if stats is not None:
            stats["decoded"] = stats.get("decoded", 0) + max(indices) + 1
        return out
    if stats is not None:
        stats["decoded"] = stats.get("decoded", 0) + decoded
    if len(got) < len(wanted):
        raise IndexError(f"frames {sorted(wanted - set(got))[:5]} are past the end of the slice")
    return np.stack([got[i] for i in indices])


def decode_clips(slices: list[ClipSlice], stats: dict | None = None) -> list[np.ndarray]:
    """Decoded frames of each clip: a list of (T, H, W, 3) uint8 RGB arrays.

    Clips sharing one slice (the same ``data`` object, see ``streaming.slice_clips``) are
    decoded in one pass.
    """
    groups: dict[int, list[int]] = {}
    for k, s in enumerate(slices):
        groups.setdefault(id(s.data), []).append(k)
    out: list[np.ndarray | None] = [None] * len(slices)
    for members in groups.values():
        union = sorted({i for k in members for i in slices[k].indices})
        frames = decode_frames(slices[members[0]].data, union, stats=stats)
        pos = {f: n for n, f in enumerate(union)}
        for k in members:
            out[k] = frames[[pos[i] for i in slices[k].indices]]
    return out


def decoded_frames(slices: list[ClipSlice]) -> int:
    """Upper bound of the frames decoded for these slices: one pass per distinct slice up to its
    last wanted frame (``decode_frames(stats=...)`` counts the frames actually decoded, fewer
    because unneeded non-reference frames are skipped)."""
    last: dict[int, int] = {}
    for s in slices:
        last[id(s.data)] = max(last.get(id(s.data), 0), max(s.indices) + 1)
    return sum(last.values())


def execute_plan(plan: SamplePlan, slices: list[ClipSlice], mean=KINETICS_MEAN, std=KINETICS_STD,
                 stats: dict | None = None) -> np.ndarray:
    """Decode and augment one sample.

    Returns:
        (rho, 3, T, S, S) float32, normalised.
    """
    clips = decode_clips(slices, stats)
    return np.stack([apply_clip(frames, c.aug, mean, std) for frames, c in zip(clips, plan.clips)])
