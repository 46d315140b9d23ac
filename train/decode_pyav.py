"""CPU executor of a sample plan: PyAV decodes each clip's slice, torch/numpy/OpenCV augment it.

DESIGN.md decision 3: on CPU, PyAV (FFmpeg's H.264 decoder) is the fast option; DALI's CPU
decoder has no H.264. The decoder sees only the clip's ``init + fragments`` slice, so it
decodes at most the clip's span plus the GOP before its first frame.

The decode loop differs from ``rhovid.ingest.decode.decode_rgb`` in three ways: the codec
runs single-threaded (a slice is one or a few GOPs, where FFmpeg's frame threading costs
more than it gains: 18 ms vs. 26-37 ms with ``thread_type="AUTO"`` for a 69-frame 128x96
slice, and the loader already runs one decoder per worker process); H.264 samples go from
the fMP4 sample table straight to the decoder, without a demuxer; and only the frames the
wanted ones need are decoded (``decode_frames``, ``_needed``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction

import av
import cv2
import numpy as np

from rhovid.ingest.decode import decode_rgb
from rhovid.ingest.fmp4 import VideoSamples, video_samples
from rhovid.ingest.fragments import ClipSlice
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, apply_clip
from rhovid.train.sampler import SamplePlan


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

    H.264 slices (everything ingest writes) skip the demuxer: the fMP4's sample table is read
    directly (``rhovid.ingest.fmp4.video_samples``) and only the samples the wanted frames need
    go to a single-threaded decoder (``_needed``). Other codecs (the VP9 test fixtures) and
    ``thread_type`` go through ``decode_demuxed``. Frames are identified by their
    timestamps (CFR: the slice's first sample is its IDR frame, local frame 0).

    Args:
        data: a fragmented MP4 (``init + fragments``).
        indices: local frame indices.
        thread_type: FFmpeg threading ("AUTO", "FRAME", "SLICE") through the demuxer, every
            frame decoded; None = single thread, only the needed samples decoded.
        stats: if given, ``stats["decoded"]`` is increased by the number of frames decoded.

    Returns:
        (len(indices), H, W, 3) uint8.

    Raises:
        IndexError: an index is past the last frame of ``data``.
        ValueError: ``data`` is not a readable fragmented MP4 (broken boxes, a sample past its end).
    """
    wanted = set(indices)
    table = video_samples(data) if thread_type is None else None
    if table is not None and table.codec == b"avc1" and table.config and table.samples \
            and table.samples[0].duration:
        got, decoded = _decode_h264(data, table, wanted)
    else:
        got, decoded = decode_demuxed(data, wanted, thread_type)
    if got is None:  # no timestamps to identify frames by (e.g. some VP9 muxes): plain decode
        got, decoded = dict(zip(indices, decode_rgb(data, list(indices)))), max(indices) + 1
    if stats is not None:
        stats["decoded"] = stats.get("decoded", 0) + decoded
    if len(got) < len(wanted):
        raise IndexError(f"frames {sorted(wanted - set(got))[:5]} are past the end of the slice")
    return np.stack([got[i] for i in indices])


def _needed(data: bytes, table: VideoSamples, index: list[int], wanted: set[int]) -> list[bool]:
    """Which samples (decode order) the wanted frames need: exact for H.264 with closed GOPs.

    A frame references only earlier reference frames (decode order) of its own GOP (an IDR
    empties the reference buffer), so per GOP the decoder needs the wanted frames and the
    reference frames before the GOP's last wanted one. Skipped, as measured on 60 s-apart
    clips (T=8, tau=8, GOP 16): non-reference frames not wanted (every B-frame of ingest's
    shards, ``b-pyramid=none``), the reference frames after a GOP's last wanted frame and GOPs
    without a wanted frame; 13 % fewer frames decoded and no demuxer (``av.open`` was 1.3-1.7 ms
    per slice): 19 vs 23 ms per clip, frames bit-identical to decoding every frame.
    """
    samples = table.samples
    nal_len = (table.config[4] & 3) + 1  # avcC lengthSizeMinusOne
    feed = [False] * len(samples)
    starts = [p for p, s in enumerate(samples) if s.sync or p == 0] + [len(samples)]
    for a, b in zip(starts, starts[1:]):
        last = max((p for p in range(a, b) if index[p] in wanted), default=-1)
        for p in range(a, last + 1):
            feed[p] = index[p] in wanted or _is_reference(data, samples[p], nal_len)
    return feed


def _is_reference(data: bytes, sample, nal_len: int) -> bool:
    """``nal_ref_idc != 0`` of the sample's first coded slice (H.264 7.4.1); True if it has none."""
    pos, end = sample.offset, sample.offset + sample.size
    while pos + nal_len < end:
        size = int.from_bytes(data[pos : pos + nal_len], "big")
        header = data[pos + nal_len]
        if header & 0x1F in (1, 5):  # coded slice of a non-IDR / IDR picture
            return bool(header >> 5 & 3)
        pos += nal_len + size
    return True


def _decode_h264(data: bytes, table: VideoSamples, wanted: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """Feed the needed samples of an ``avc1`` slice to a bare H.264 decoder."""
    samples = table.samples
    cts0, step = samples[0].cts, samples[0].duration
    index = [round((s.cts - cts0) / step) for s in samples]
    codec = av.CodecContext.create("h264", "r")
    codec.extradata = table.config
    codec.thread_count = 1  # see the module docstring
    time_base = Fraction(1, table.timescale)
    got: dict[int, np.ndarray] = {}
    decoded = 0

    def take(frames) -> None:
        nonlocal decoded
        for frame in frames:
            decoded += 1
            i = round((frame.pts - cts0) / step)
            if i in wanted:
                got[i] = to_rgb(frame)

    for s, feed in zip(samples, _needed(data, table, index, wanted)):
        if feed:
            packet = av.Packet(data[s.offset : s.offset + s.size])
            packet.pts, packet.dts, packet.time_base = s.cts, s.dts, time_base
            take(codec.decode(packet))
    take(codec.decode(None))  # drain the frames held back for reordering
    return got, decoded


def decode_demuxed(data: bytes, wanted: set[int], thread_type: str | None = None):
    """Demux with ``av.open`` and decode ``wanted`` frames: the path of non-H.264 slices and of
    ``thread_type``, and the loader's decoder before ``_decode_h264`` (``rhovid bench loader``
    times both). Single-threaded, unwanted non-reference frames are skipped
    (``skip_frame=NONREF`` per packet).

    Returns:
        ``({index: (H, W, 3) uint8}, frames decoded)``; ``(None, 0)`` when the packets carry
        no timestamps to identify frames by.
    """
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
                    return None, 0
            if skip and packet.size:
                codec.skip_frame = "DEFAULT" if index(packet.pts) in wanted else "NONREF"
            for frame in codec.decode(packet if packet.size else None):
                decoded += 1
                i = index(frame.pts)
                if i in wanted:
                    got[i] = to_rgb(frame)
            if len(got) == len(wanted):
                break
    return got, decoded


def decode_passes(slices: list[ClipSlice]) -> list[tuple[bytes, list[int], list[int]]]:
    """One decode pass per distinct slice: ``(data, clips of it, sorted union of their frames)``.

    Clips sharing one slice (the same ``data`` object, see ``rhovid.ingest.fragments.clip_groups``) share
    the pass.
    """
    groups: dict[int, list[int]] = {}
    for k, s in enumerate(slices):
        groups.setdefault(id(s.data), []).append(k)
    return [(slices[members[0]].data, members, sorted({i for k in members for i in slices[k].indices}))
            for members in groups.values()]


def decode_clips(slices: list[ClipSlice], stats: dict | None = None) -> list[np.ndarray]:
    """Decoded frames of each clip: a list of (T, H, W, 3) uint8 RGB arrays, one decode pass per
    distinct slice (``decode_passes``)."""
    out: list[np.ndarray | None] = [None] * len(slices)
    for data, members, union in decode_passes(slices):
        frames = decode_frames(data, union, stats=stats)
        pos = {f: n for n, f in enumerate(union)}
        for k in members:
            out[k] = frames[[pos[i] for i in slices[k].indices]]
    return out


def decoded_frames(slices: list[ClipSlice]) -> int:
    """Upper bound of the frames decoded for these slices: one pass per distinct slice up to its
    last wanted frame (``decode_frames(stats=...)`` counts the frames actually decoded, fewer
    because unneeded non-reference frames are skipped)."""
    return sum(union[-1] + 1 for _, _, union in decode_passes(slices))


def execute_plan(plan: SamplePlan, slices: list[ClipSlice], mean=KINETICS_MEAN, std=KINETICS_STD,
                 stats: dict | None = None) -> np.ndarray:
    """Decode and augment one sample.

    Returns:
        (rho, 3, T, S, S) float32, normalised.
    """
    clips = decode_clips(slices, stats)
    return np.stack([apply_clip(frames, c.aug, mean, std) for frames, c in zip(clips, plan.clips)])
