"""Probe a source video with PyAV: what is in it, and can its first frame be decoded.

There is no ffprobe in the pip-only setup (DESIGN.md decision 7); PyAV links the same
libavformat/libavcodec. The probe decodes the first video frame because container headers
lie: a file can declare an H.264 stream whose payload is garbage, and the frame also carries
the display-matrix rotation.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction

import av


class ProbeError(Exception):
    """The source cannot be ingested; the message says why (it goes to failed.jsonl)."""


@dataclass(frozen=True)
class Probe:
    """What the transcoder needs to know about a source."""

    container: str
    """Demuxer name, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``."""
    codec: str
    """Video codec name, e.g. ``h264``."""
    width: int
    """Coded width in pixels (before rotation and sample aspect ratio)."""
    height: int
    """Coded height in pixels."""
    sar: float
    """Sample (pixel) aspect ratio; 1.0 for square pixels."""
    rotation: int
    """Display rotation in degrees counter-clockwise (0, 90, 180, 270)."""
    pix_fmt: str
    """Decoded pixel format, e.g. ``yuv420p10le``."""
    bit_depth: int
    """Bits per luma sample."""
    fps: float | None
    """Average frame rate, None when unknown."""
    duration_s: float | None
    """Duration of the video stream (or container), None when unknown."""
    frames: int | None
    """Frame count stated by the container, None when unknown (not decoded)."""
    streams: tuple[str, ...]
    """Stream types in the file, e.g. ``("video", "audio")``."""

    @property
    def display_size(self) -> tuple[int, int]:
        """``(width, height)`` as shown: sample aspect ratio and rotation applied."""
        w = self.width * self.sar if self.sar > 0 else self.width
        h = self.height
        if self.rotation % 180 == 90:
            w, h = h, w
        return max(1, round(w)), max(1, round(h))

    @property
    def has_audio(self) -> bool:
        return "audio" in self.streams

    def to_dict(self) -> dict:
        return asdict(self)


def ffmpeg_url(path: str | os.PathLike) -> str:
    """The path as an ffmpeg URL that is never parsed as an option or protocol.

    ``file:`` + absolute path: a name starting with ``-`` cannot become an option and a name
    containing ``:`` (``a:b.mp4``) cannot be taken for a protocol.
    """
    return "file:" + os.path.abspath(os.fspath(path))


def probe(path: str | os.PathLike) -> Probe:
    """Probe ``path`` and decode its first video frame.

    Raises:
        ProbeError: missing/empty file, not a media file, no video stream, unknown codec, or
            no decodable frame. The message names the problem (the caller adds the path).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ProbeError("file not found")
    if os.path.getsize(path) == 0:
        raise ProbeError("empty file (0 bytes)")
    try:
        container = av.open(ffmpeg_url(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise ProbeError(f"not a readable media file ({_reason(e)})") from None
    with container:
        streams = tuple(s.type for s in container.streams)
        if not container.streams.video:
            kinds = ", ".join(streams) or "none"
            raise ProbeError(f"no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name if ctx is not None else None
        if not codec or codec == "none":
            raise ProbeError("unsupported video codec (ffmpeg has no decoder for it)")
        stream.thread_type = "AUTO"
        frame = _first_frame(container, stream)
        pix_fmt = frame.format.name
        try:
            bit_depth = av.VideoFormat(pix_fmt).components[0].bits
        except (ValueError, IndexError):
            bit_depth = 8
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        return Probe(
            container=container.format.name,
            codec=codec,
            width=frame.width,
            height=frame.height,
            sar=float(sar) if sar else 1.0,
            rotation=int(round(frame.rotation or 0)) % 360,
            pix_fmt=pix_fmt,
            bit_depth=int(bit_depth),
            fps=_fps(stream),
            duration_s=_duration(container, stream),
            frames=stream.frames or None,
            streams=streams,
        )


def _first_frame(container, stream):
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise ProbeError(f"no decodable video frames ({_reason(e)})") from None
    raise ProbeError("no decodable video frames")


def _fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and Fraction(rate) > 0:
            return float(rate)
    return None


def _duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)
