"""Probe a source video with PyAV: what is in it, and can its first frame be decoded.

There is no ffprobe in the pip-only setup (DESIGN.md decision 7); PyAV links the same
libavformat/libavcodec. The probe decodes the first video frame because container headers
lie: a file can declare an H.264 stream whose payload is garbage, and the frame also carries
the display-matrix rotation.

Only container formats of ``ALLOWED_FORMATS`` are opened, and only through the ``file``
protocol (``INPUT_OPTIONS``, given to PyAV here and to ffmpeg by the transcoder): a playlist
(HLS ``.m3u8``), a concat script or an image-sequence pattern in a source tree would otherwise
make libavformat open other files anywhere on the machine, or URLs (issue 13, item 10).
The probe also reads every video packet's timestamp (no decoding): a source whose timestamps
jump by an hour becomes a 100,000-frame sample once resampled to a constant frame rate, so
the worker rejects long holds (``Probe.max_hold_s``) and bounds the output by the duration.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import numpy as np

ALLOWED_FORMATS = (
    "mov", "matroska", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "ogg", "asf", "mxf", "nut", "ivf",
    "obu", "h264", "hevc", "m4v", "mjpeg", "yuv4mpegpipe", "gif", "dv", "rm",
)
"""Demuxers ingest opens (libavformat names; ``mov`` covers mp4/m4v/3gp, ``matroska`` webm).
Left out on purpose: ``hls``, ``dash``, ``concat``, ``image2`` and the like, which open other
files or URLs named inside the source, and devices/virtual inputs (``lavfi``, ``dvdvideo``)."""
PROTOCOLS = "file"
"""The only protocol a source may be read through: a local file (``file:/abs/path`` URLs)."""
INPUT_OPTIONS = {"format_whitelist": ",".join(ALLOWED_FORMATS), "protocol_whitelist": PROTOCOLS}
"""libavformat input options applied to every open of a source, by PyAV and by ffmpeg."""


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
    packets: int = 0
    """Video packets the demuxer returns (counted, not decoded)."""
    max_hold_s: float | None = None
    """Longest time one video frame is shown: the largest gap between consecutive packet
    timestamps, or the last packet's duration; None when the packets carry no timestamps."""

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
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ProbeError("file not found") from None
    except OSError as e:  # ELOOP (a symlink loop), EACCES, ENAMETOOLONG, ...
        raise ProbeError(f"cannot read it ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the probe forever, a device read forever
        raise ProbeError("not a regular file (a FIFO, device or socket)")
    if st.st_size == 0:
        raise ProbeError("empty file (0 bytes)")
    container = _open(path)
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
        fps, duration, frames = _fps(stream), _duration(container, stream), stream.frames or None
        pix_fmt = frame.format.name
        try:
            bit_depth = av.VideoFormat(pix_fmt).components[0].bits
        except (ValueError, IndexError):
            bit_depth = 8
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        fmt, width, height = container.format.name, frame.width, frame.height
        rotation = int(round(frame.rotation or 0)) % 360
    packets, max_hold = _scan_packets(path)
    return Probe(
        container=fmt,
        codec=codec,
        width=width,
        height=height,
        sar=float(sar) if sar else 1.0,
        rotation=rotation,
        pix_fmt=pix_fmt,
        bit_depth=int(bit_depth),
        fps=fps,
        duration_s=duration,
        frames=frames,
        streams=streams,
        packets=packets,
        max_hold_s=max_hold,
    )


def _open(path: str):
    """``av.open`` restricted to ``INPUT_OPTIONS``; ProbeError naming the problem otherwise."""
    try:
        return av.open(ffmpeg_url(path), metadata_errors="ignore", container_options=dict(INPUT_OPTIONS))
    except av.error.FFmpegError as e:
        if e.errno == errno.EINVAL:  # libavformat refused the format (not on the whitelist)
            raise ProbeError(
                f"not a container format ingest reads ({_reason(e)}); allowed: {', '.join(ALLOWED_FORMATS)} "
                "(playlists such as HLS .m3u8, concat scripts and image sequences are refused: they open other files)"
            ) from None
        raise ProbeError(f"not a readable media file ({_reason(e)})") from None


def _scan_packets(path: str) -> tuple[int, float | None]:
    """(video packets, longest frame hold in seconds) from the demuxer alone (no decoding).

    Linear in the file size; memory 8 bytes per packet (a 10-hour 30 fps video: 8.6 MB).
    """
    times, durations = [], []
    with _open(path) as container:
        stream = container.streams.video[0]
        tb = float(stream.time_base) if stream.time_base else 0.0
        count = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                count += 1
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is not None and tb > 0:
                    times.append(ts * tb)
                    durations.append((packet.duration or 0) * tb)
        except av.error.FFmpegError:
            pass  # a damaged tail: the transcoder and the coverage check judge the rest
    if not times:
        return count, None
    order = np.argsort(np.asarray(times))
    t = np.asarray(times)[order]
    hold = float(np.max(np.diff(t))) if len(t) > 1 else 0.0
    return count, max(hold, float(np.asarray(durations)[order][-1]))


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
