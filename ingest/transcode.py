"""Transcode one source into fragmented MP4 with ffmpeg (argv built by ffmpeg-python).

The output is what DESIGN.md decision 1 requires: H.264 8-bit 4:2:0, constant frame rate,
short side scaled to ``short_side`` (even dimensions), rotation applied, audio dropped
unless asked for, a keyframe exactly every ``gop`` frames (no scene-cut keyframes, closed
GOPs) and one ``moof``/``mdat`` fragment per GOP, so every fragment starts with an IDR
frame and ``init + fragment_k`` decodes on its own.

ffmpeg never sees a shell: ffmpeg-python compiles an argv list, and inputs are passed as
``file:/absolute/path`` URLs (see ``probe.ffmpeg_url``) opened only through the ``file``
protocol and the demuxers of ``probe.ALLOWED_FORMATS``. Each run is bounded: at most
``max_frames`` output frames, a wall-clock timeout, a memory limit, and it dies with the
process that started it (``rhovid.lifetime``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import ffmpeg

from rhovid.errors import UsageError
from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.probe import INPUT_OPTIONS, Probe, ffmpeg_url
from rhovid.lifetime import run_tied

# Fragment at each keyframe; empty moov so the init segment is just ftyp+moov; tfdt/base in
# moof so a fragment does not depend on bytes before it; no trailing mfra index.
MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof+skip_trailer"


class TranscodeError(Exception):
    """ffmpeg failed on this source; the message carries ffmpeg's last error lines."""


@dataclass(frozen=True)
class TranscodeSettings:
    """Output encoding parameters (the fields that change the bytes written)."""

    fps: float = 30.0
    """Constant output frame rate."""
    short_side: int = 256
    """Length of the shorter output side in pixels (aspect kept, both sides even)."""
    gop: int = 16
    """Frames per GOP = per fragment; every fragment starts with an IDR frame."""
    crf: int = 23
    """x264 constant rate factor (lower = better quality, larger files)."""
    preset: str = "veryfast"
    """x264 speed preset."""
    tune: str | None = None
    """x264 tune (``X264_TUNES``); None = none. ``fastdecode`` (no CABAC, no deblocking, no
    weighted prediction) halves CPU decode time for ~10 % more bytes at equal PSNR (README)."""
    bframes: int | None = None
    """B-frames between reference frames, fixed (x264 ``bframes=N:b-adapt=0``); None = the
    preset's adaptive choice (veryfast: up to 3). More B-frames: fewer frames the loader must
    decode per clip (every B-frame is a non-reference frame it skips), other bytes/quality (README)."""
    keep_audio: bool = False
    """Keep the first audio stream (re-encoded to AAC) instead of dropping it."""
    threads: int = 0
    """ffmpeg threads per transcode; 0 = ffmpeg's choice (all cores)."""


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
"""The presets libx264 accepts."""
X264_MAX_BFRAMES = 16
"""libx264's limit on consecutive B-frames."""
X264_TUNES = ("film", "animation", "grain", "stillimage", "psnr", "ssim", "fastdecode", "zerolatency")
"""The tunes libx264 accepts (``x264 --fullhelp``)."""


def output_size(display_w: int, display_h: int, short_side: int) -> tuple[int, int]:
    """Output ``(width, height)``: shorter side = ``short_side``, aspect kept, both even."""
    if short_side < 2:
        raise UsageError(f"short_side must be >= 2, got {short_side}")
    short_side += short_side % 2
    if display_w <= display_h:
        return short_side, _even(display_h * short_side / display_w)
    return _even(display_w * short_side / display_h), short_side


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def ffmpeg_args(
    src: str,
    probe: Probe,
    settings: TranscodeSettings,
    trim: tuple[float, float] | None = None,
    output: str = "pipe:1",
    reference: tuple[list[int], str] | None = None,
    max_frames: int | None = None,
) -> list[str]:
    """The full ffmpeg argv (binary first) that transcodes ``src`` to fMP4 at ``output``.

    Args:
        src: source path (any name: it is passed as a ``file:`` URL).
        probe: the source's probe (display size decides the output size; audio presence).
        settings: output encoding parameters.
        trim: ``(start_s, end_s)`` to cut from the source, or None for all of it.
        output: ``pipe:1`` (bytes on stdout) or a file URL.
        reference: ``(frames, path)``: also write output frames ``frames`` as the encoder
            received them (raw yuv420p) to ``path``, for ``ingest/quality.py``.
        max_frames: stop the mp4 after this many frames (``-frames:v``); None = no limit.
    """
    width, height = output_size(*probe.display_size, settings.short_side)
    in_kwargs = dict(INPUT_OPTIONS)
    if trim is not None:
        start, end = trim
        # -ss before -i seeks to the keyframe before `start` and decodes up to it: exact.
        in_kwargs.update({"ss": f"{max(0.0, start):.6f}", "t": f"{max(0.0, end - start):.6f}"})
    if settings.threads:
        # Decoder threads too, not only x264's: with the decoder on its default (all cores) a
        # "one-thread" transcode used 1.45 cores, so two workers on 2 cores could not scale.
        in_kwargs["threads"] = settings.threads
    inp = ffmpeg.input(ffmpeg_url(src), **in_kwargs)
    # ffmpeg auto-rotates (display matrix) before this chain, so width/height are post-rotation.
    video = (
        inp["v:0"]
        .filter("fps", fps=_fps_str(settings.fps))
        # out_range=tv: full-range inputs (MJPEG, phone videos) become limited-range like the rest
        .filter("scale", width, height, out_range="tv")
        .filter("setsar", "1")
        .filter("format", "yuv420p")
    )
    raw = None
    if reference is not None:
        # the very frames the encoder gets (one filter chain, split): no second decode of the source
        split = video.split()
        video, tap = split[0], split[1]
        frames, path = reference
        raw = ffmpeg.output(tap.filter("select", "+".join(f"eq(n,{i})" for i in frames)), path, f="rawvideo",
                            pix_fmt="yuv420p", fps_mode="passthrough")
    streams = [video]
    out_kwargs = {
        "c:v": "libx264",
        "preset": settings.preset,
        **({"tune": settings.tune} if settings.tune else {}),
        "crf": settings.crf,
        "pix_fmt": "yuv420p",
        "profile:v": "high",
        # Fixed GOP: keyframes only every `gop` frames (no scene cuts), closed GOPs, so a
        # fragment never references frames of another one. No B-pyramid: every B-frame is then
        # a non-reference frame the loader can skip, so a strided 8x8 clip decodes 18 frames
        # instead of 32 (320x240 mandelbrot, GOP 16), and the file was 1.5 % smaller, not larger.
        "g": settings.gop,
        "keyint_min": settings.gop,
        "sc_threshold": 0,
        "x264-params": f"keyint={settings.gop}:min-keyint={settings.gop}:scenecut=0:open-gop=0:b-pyramid=none"
                       + (f":bframes={settings.bframes}:b-adapt=0" if settings.bframes is not None else ""),
        "threads": settings.threads,
        "movflags": MOVFLAGS,
        "map_metadata": -1,
        "map_chapters": -1,
        "f": "mp4",
        **({"frames:v": int(max_frames)} if max_frames is not None else {}),
    }
    if settings.keep_audio and probe.has_audio:
        streams.append(inp["a:0"])
        out_kwargs.update({"c:a": "aac", "b:a": "128k", "ac": 2})
    else:
        out_kwargs["an"] = None
    out_kwargs.update({"sn": None, "dn": None})
    stream = ffmpeg.output(*streams, output, **out_kwargs)
    if raw is not None:
        stream = ffmpeg.merge_outputs(stream, raw)
    args = ffmpeg.compile(stream, cmd=ffmpeg_exe(), overwrite_output=True)
    # Quiet, never read stdin (a worker has none); errors still reach stderr.
    quiet = ["-nostdin", "-hide_banner", "-loglevel", "error"]
    if settings.threads:
        quiet += ["-filter_threads", str(settings.threads)]  # scale/fps filter threads likewise
    return [args[0], *quiet, *args[1:]]


def run_ffmpeg(args: list[str], timeout_s: float | None = None, memory_bytes: int | None = None) -> bytes:
    """Run an ffmpeg argv list and return its stdout.

    ffmpeg is killed after ``timeout_s`` seconds, gets at most ``memory_bytes`` of data segment
    (None = no limit) and dies with this process (``rhovid.lifetime.run_tied``).

    Raises:
        TranscodeError: non-zero exit (message = ffmpeg's last stderr lines) or timeout.
    """
    try:
        proc = run_tied(args, timeout_s, memory_bytes)
    except subprocess.TimeoutExpired:
        raise TranscodeError(f"ffmpeg timed out after {timeout_s:.0f} s (the per-source time limit)") from None
    if proc.returncode != 0:
        tail = _tail(proc.stderr)
        # ENOMEM from malloc, EAGAIN from a thread whose stack no longer fits under RLIMIT_DATA
        if memory_bytes is not None and any(m in tail for m in ("Cannot allocate memory", "temporarily unavailable")):
            raise TranscodeError(f"ffmpeg ran out of its memory limit ({memory_bytes / 2**20:.0f} MiB): {tail}")
        raise TranscodeError(f"ffmpeg exit {proc.returncode}: {tail}")
    return proc.stdout


def transcode(
    src: str,
    probe: Probe,
    settings: TranscodeSettings,
    trim: tuple[float, float] | None = None,
    timeout_s: float | None = None,
    max_frames: int | None = None,
    memory_bytes: int | None = None,
) -> bytes:
    """Transcode ``src`` and return the fragmented-MP4 bytes (see ``ffmpeg_args``, ``run_ffmpeg``)."""
    return run_ffmpeg(ffmpeg_args(src, probe, settings, trim, max_frames=max_frames), timeout_s, memory_bytes)


def _fps_str(fps: float) -> str:
    # 29.97 and friends as exact rationals, so the CFR grid does not drift over long videos.
    for num, den in ((30000, 1001), (24000, 1001), (60000, 1001)):
        if abs(fps - num / den) < 1e-3:
            return f"{num}/{den}"
    return f"{fps:g}"


def _tail(stderr: bytes, lines: int = 3) -> str:
    text = stderr.decode("utf-8", "replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "no error message"
