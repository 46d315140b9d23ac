"""Parse the ISO-BMFF box layout of a fragmented MP4 into a fragment table.

DESIGN.md decision 1: the loader slices ``mp4[:init_size] + fragments[i:j]`` to decode a
clip without touching the rest of the video. This module finds those byte ranges in the
bytes ffmpeg wrote (``-movflags +frag_keyframe+empty_moov+default_base_moof``): the init
segment is ``ftyp`` + ``moov``; each media fragment is a ``moof`` box followed by its
``mdat``. Frame counts come from the ``trun`` sample counts of the video track, so no
decode is needed (ISO/IEC 14496-12, sections 8.8.7-8.8.8). The same walk gives every
sample's bytes and timestamps (``video_samples``), which the loader's decoder reads
instead of a demuxer.

Bounded on hostile bytes (issue 13, item 6): every count read from the file is checked
against the bytes that hold it before anything is allocated for it: a ``trun`` of N samples
must hold N times its per-sample fields, every sample has at least one byte inside the data,
and the whole file holds at most one sample per byte; box sizes stay inside their parent.
Work and memory are linear in ``len(data)``, and every malformation is a ``ValueError``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from dataclasses import dataclass

# Container boxes we descend into; everything else is a leaf for our purposes.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts"}
# trun/tfhd/trex sample_flags bit 16: sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1).
_NON_SYNC = 0x00010000


@dataclass(frozen=True)
class Fragment:
    """One ``moof`` + ``mdat`` pair."""

    byte_offset: int
    """Offset of the ``moof`` box in the file."""
    byte_end: int
    """Offset one past the end of the fragment's ``mdat``."""
    first_frame: int
    """Global index (decode order) of the fragment's first video sample."""
    num_frames: int
    """Number of video samples in the fragment."""
    starts_with_sync: bool | None
    """Whether the first video sample is a sync (IDR) sample (True when no sample flags are
    given at all: ISO/IEC 14496-12 then has every sample sync); None for an empty fragment."""


@dataclass(frozen=True)
class FragmentTable:
    """The layout of a fragmented MP4."""

    init_size: int
    """Bytes of the init segment (everything up to the end of ``moov``)."""
    fragments: tuple[Fragment, ...]
    """Media fragments in file order."""
    data_end: int
    """Offset one past the last fragment (trailing boxes such as ``mfra`` lie beyond)."""

    @property
    def num_frames(self) -> int:
        return sum(f.num_frames for f in self.fragments)


def iter_boxes(data: bytes | memoryview, start: int = 0, end: int | None = None):
    """Yield ``(type, box_offset, header_size, box_size)`` for the boxes in ``data[start:end]``.

    Raises:
        ValueError: a box header runs past ``end`` (truncated or not an MP4).
    """
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise ValueError(f"truncated box header at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise ValueError(f"truncated 64-bit box header at byte {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # box extends to the end of the file
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box {kind!r} at byte {pos} claims {size} bytes, only {end - pos} left")
        yield bytes(kind), pos, header, size
        pos += size


def _malformed_is_value_error(fn):
    """Turn the low-level errors of reading a malformed file (a field past the end, a nesting
    too deep) into the ``ValueError`` the callers handle."""

    @functools.wraps(fn)
    def wrapper(data, *args, **kwargs):
        try:
            return fn(data, *args, **kwargs)
        except (struct.error, IndexError, RecursionError) as e:
            raise ValueError(f"malformed MP4 ({type(e).__name__}: {e})") from None

    return wrapper


@_malformed_is_value_error
def parse_fragments(data: bytes) -> FragmentTable:
    """Build the fragment table of fragmented-MP4 ``data``.

    Raises:
        ValueError: no ``moov``, no video track, a ``moof`` without ``mdat``, or broken boxes.
    """
    init_size = None
    track = None
    fragments: list[Fragment] = []
    pending: tuple[int, int, bool | None] | None = None  # (moof offset, frames, sync) awaiting its mdat
    frame = 0
    data_end = 0
    for kind, pos, header, size in iter_boxes(data):
        if kind == b"moov":
            init_size = pos + size
            track = _video_track(data, pos + header, pos + size)
        elif kind == b"moof":
            if track is None:
                raise ValueError("moof before moov: not a fragmented MP4 with an empty moov")
            n, sync = 0, None  # counted, not kept: memory stays O(1) per fragment
            for sample in _moof_samples(data, pos, pos + header, pos + size, track, len(data) - frame):
                sync = sample.sync if n == 0 else sync
                n += 1
            pending = (pos, n, sync)
        elif kind == b"mdat" and pending is not None:
            moof_pos, n, sync = pending
            fragments.append(Fragment(moof_pos, pos + size, frame, n, sync))
            frame += n
            data_end = pos + size
            pending = None
    if init_size is None:
        raise ValueError("no moov box: not an MP4")
    if pending is not None:
        raise ValueError(f"moof at byte {pending[0]} has no mdat (truncated)")
    return FragmentTable(init_size, tuple(fragments), data_end or init_size)


def _parse_trak(data, start, end) -> tuple[int | None, bytes | None]:
    track_id = handler = None
    for kind, pos, header, size in iter_boxes(data, start, end):
        if kind == b"tkhd":
            version = data[pos + header]
            # version 1 has 64-bit creation/modification times before track_ID
            off = pos + header + 4 + (16 if version == 1 else 8)
            (track_id,) = struct.unpack_from(">I", data, off)
        elif kind == b"mdia":
            for k2, p2, h2, _s2 in iter_boxes(data, pos + header, pos + size):
                if k2 == b"hdlr":
                    handler = bytes(data[p2 + h2 + 8 : p2 + h2 + 12])
    return track_id, handler


@dataclass(frozen=True)
class VideoSample:
    """One video sample (frame) of a fragmented MP4, in decode order."""

    offset: int
    """Byte offset of the sample's data in the file."""
    size: int
    """Bytes of the sample (length-prefixed NAL units for ``avc1``)."""
    dts: int
    """Decode timestamp in the track's timescale."""
    cts: int
    """Composition (presentation) timestamp in the track's timescale."""
    duration: int
    """Sample duration in the track's timescale."""
    sync: bool
    """A sync (IDR) sample: decoding may start here."""


@dataclass(frozen=True)
class VideoSamples:
    """The video track of a fragmented MP4 as a packet list, for feeding a decoder directly."""

    codec: bytes
    """Sample entry type (``b"avc1"``, ``b"vp09"``, ...)."""
    config: bytes | None
    """Decoder configuration record (``avcC`` payload = FFmpeg extradata); None when absent."""
    timescale: int
    """Track timescale (``mdhd``)."""
    samples: tuple[VideoSample, ...]


@_malformed_is_value_error
def video_samples(data: bytes) -> VideoSamples:
    """Every video sample of fragmented-MP4 ``data`` with its bytes' place and timestamps.

    A reader that has this needs no demuxer: it can hand the samples straight to a decoder
    (``rhovid.train.decode_pyav``), skipping those it does not need.

    Raises:
        ValueError: no ``moov``, no video track, or broken boxes.
    """
    track = None
    samples: list[VideoSample] = []
    for kind, pos, header, size in iter_boxes(data):
        if kind == b"moov":
            track = _video_track(data, pos + header, pos + size)
        elif kind == b"moof":
            if track is None:
                raise ValueError("moof before moov: not a fragmented MP4 with an empty moov")
            samples.extend(_moof_samples(data, pos, pos + header, pos + size, track, len(data) - len(samples)))
    if track is None:
        raise ValueError("no moov box: not an MP4")
    return VideoSamples(track["codec"], track["config"], track["timescale"], tuple(samples))


def _video_track(data, start, end) -> dict:
    """The first video track of a ``moov``: id, timescale, sample entry, trex defaults."""
    track = None
    trex: dict[int, tuple[int, int, int]] = {}
    for kind, pos, header, size in iter_boxes(data, start, end):
        if kind == b"trak" and track is None:
            track = _parse_video_trak(data, pos + header, pos + size)
        elif kind == b"mvex":
            for k2, p2, _h2, _s2 in iter_boxes(data, pos + header, pos + size):
                if k2 == b"trex":
                    # fullbox(4) track_ID(4) desc_index(4) duration(4) size(4) flags(4)
                    tid, dur, sz, flags = struct.unpack_from(">I4xIII", data, p2 + 12)
                    trex[tid] = (dur, sz, flags)
    if track is None:
        raise ValueError("no video track in moov")
    track["trex"] = trex.get(track["id"], (0, 0, 0))
    return track


def _parse_video_trak(data, start, end) -> dict | None:
    track_id, handler = _parse_trak(data, start, end)
    if handler != b"vide":
        return None
    out = {"id": track_id, "timescale": 0, "codec": b"", "config": None}

    def walk(s, e, depth=0):
        if depth > 3:  # trak > mdia > minf > stbl: anything deeper is not a video track
            raise ValueError(f"boxes nested too deep at byte {s}")
        for kind, pos, header, size in iter_boxes(data, s, e):
            if kind in (b"mdia", b"minf", b"stbl"):
                walk(pos + header, pos + size, depth + 1)
            elif kind == b"mdhd":
                version = data[pos + header]
                off = pos + header + 4 + (16 if version == 1 else 8)
                (out["timescale"],) = struct.unpack_from(">I", data, off)
            elif kind == b"stsd":  # fullbox(4) entry_count(4), then the first sample entry
                entry = pos + header + 8
                esize, out["codec"] = struct.unpack_from(">I4s", data, entry)
                if entry + esize > pos + size:
                    raise ValueError(f"sample entry at byte {entry} claims {esize} bytes, past its stsd box")
                # VisualSampleEntry: 8 header + 78 bytes of fixed fields, then child boxes
                for k2, p2, h2, s2 in iter_boxes(data, entry + 86, entry + esize):
                    if k2 in (b"avcC", b"hvcC", b"vpcC", b"av1C"):
                        out["config"] = bytes(data[p2 + h2 : p2 + s2])

    walk(start, end)
    return out


_SAMPLE_FIELDS = (0x100, 0x200, 0x400, 0x800)
"""trun flags of the optional per-sample fields (duration, size, flags, composition offset), 4 bytes each."""


def _moof_samples(data, moof_pos, start, end, track, limit: int) -> Iterator[VideoSample]:
    """The video track's samples of one ``moof`` (ISO/IEC 14496-12 8.8.7-8.8.12), in order.

    ``limit``: most samples this moof may hold (one per byte of the file not yet spoken for).
    """
    produced = 0
    last: VideoSample | None = None
    for kind, pos, header, size in iter_boxes(data, start, end):
        if kind != b"traf":
            continue
        tfhd = tfdt = None
        runs = []
        for k2, p2, h2, s2 in iter_boxes(data, pos + header, pos + size):
            if k2 == b"tfhd":
                tfhd = p2 + h2
            elif k2 == b"tfdt":
                version = data[p2 + h2]
                (tfdt,) = struct.unpack_from(">Q" if version == 1 else ">I", data, p2 + h2 + 4)
            elif k2 == b"trun":
                runs.append((p2 + h2, p2 + s2))
        if tfhd is None:
            raise ValueError(f"traf at byte {pos} has no tfhd")
        vflags, track_id = struct.unpack_from(">II", data, tfhd)
        if track_id != track["id"]:
            continue
        dur, sz, flags = track["trex"]
        # default-base-is-moof, or no base offset (first traf): the moof
        base, off = _optional(data, tfhd + 8, vflags & 0x01, moof_pos, ">Q")
        _, off = _optional(data, off, vflags & 0x02, None)  # sample_description_index
        dur, off = _optional(data, off, vflags & 0x08, dur)
        sz, off = _optional(data, off, vflags & 0x10, sz)
        flags, off = _optional(data, off, vflags & 0x20, flags)
        dts = tfdt if tfdt is not None else (last.dts + last.duration if last is not None else 0)
        pos_data = base
        for run, run_end in runs:
            (rflags,) = struct.unpack_from(">I", data, run)
            version, rflags = rflags >> 24, rflags & 0xFFFFFF
            (count,) = struct.unpack_from(">I", data, run + 4)
            rel, off = _optional(data, run + 8, rflags & 0x001, None, ">i")
            if rel is not None:
                pos_data = base + rel
            first_flags, off = _optional(data, off, rflags & 0x004, flags)
            # Check the declared count against the bytes that must hold it, before looping over it.
            field_bytes = 4 * sum(bool(rflags & f) for f in _SAMPLE_FIELDS)
            if count * field_bytes > run_end - off:
                raise ValueError(f"trun at byte {run - 8} declares {count} samples of {field_bytes} bytes each, "
                                 f"its box holds {run_end - off}")
            if produced + count > limit:
                raise ValueError(f"trun at byte {run - 8} declares {count} samples; the file has room for {limit} more")
            for i in range(count):
                s_dur, off = _optional(data, off, rflags & 0x100, dur)
                s_size, off = _optional(data, off, rflags & 0x200, sz)
                s_flags, off = _optional(data, off, rflags & 0x400, first_flags if i == 0 else flags)
                cto, off = _optional(data, off, rflags & 0x800, 0, ">i" if version else ">I")
                if s_size < 1 or pos_data < 0:
                    raise ValueError(f"sample {i} of the trun at byte {run - 8} has {s_size} bytes at byte {pos_data}")
                if pos_data + s_size > len(data):
                    raise ValueError(f"sample at byte {pos_data} ({s_size} bytes) runs past the end of the data")
                last = VideoSample(pos_data, s_size, dts, dts + cto, s_dur, not s_flags & _NON_SYNC)
                yield last
                produced += 1
                pos_data += s_size
                dts += s_dur


def _optional(data, off: int, present: int, default, fmt: str = ">I"):
    """``(value, next offset)`` of an optional box field: read at ``off`` when its flag is set."""
    if not present:
        return default, off
    return struct.unpack_from(fmt, data, off)[0], off + struct.calcsize(fmt)
