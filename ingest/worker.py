"""The per-video task: probe -> transcode -> fragment table -> checks -> sample json.

This is the unit of work ``rhovid.executor.map_unordered`` runs in pool or Dask workers.
It never raises for a bad source: it returns a failure record (stage + reason) that the
parent appends to failed.jsonl, so one bad file never stops a run. The parent alone
writes shards, so a shard is never shared between processes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import av

from rhovid import __version__
from rhovid.ingest import quality
from rhovid.ingest.fmp4 import parse_fragments
from rhovid.ingest.probe import ProbeError, probe
from rhovid.ingest.sources import Source
from rhovid.ingest.timestamps import start_at_zero
from rhovid.ingest.transcode import TranscodeError, TranscodeSettings, output_size, transcode


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one source (picklable)."""

    source: Source
    """The video to ingest."""
    key: str
    """Its sample key."""
    settings: TranscodeSettings
    """Output encoding parameters."""
    min_frames: int = 16
    """Reject outputs with fewer frames (shorter than one clip)."""
    max_pixels: int = 8192 * 4320
    """Reject inputs with more coded pixels per frame (decoder memory/time guard)."""
    min_coverage: float = 0.9
    """Reject outputs covering less than this fraction of the probed duration (truncated files)."""
    timeout_s: float | None = None
    """Kill ffmpeg after this many seconds; None = ``auto_timeout`` of the source's duration."""
    quality_frames: int = 4
    """Frames compared with the source for the sample's ``quality`` record (0 = none; ingest/quality.py)."""
    max_gap_s: float = 60.0
    """Reject sources whose video timestamps leave a frame on screen longer than this."""
    max_memory: int | None = 4 << 30
    """Data-segment limit of the source's ffmpeg in bytes (None = no limit)."""


def auto_timeout(duration_s: float) -> float:
    """The default per-source time limit: 60 s plus 5 s per second of video (0.2x real time,
    10x slower than a one-thread transcode of 320x240 H.264 on a loaded 2-core VM)."""
    return 60.0 + 5.0 * duration_s


def frame_limit(expected_s: float, fps: float, gop: int) -> int:
    """Most output frames a source of ``expected_s`` seconds may give: 10 % + 1 s + 1 GOP over."""
    return math.ceil(expected_s * 1.1 * fps) + math.ceil(fps) + gop


class _Reject(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def run_task(task: Task) -> dict:
    """Ingest one source.

    Returns:
        On success ``{"ok": True, "key", "mp4": bytes, "meta": dict, "source_bytes": int,
        "transcode_s": float, "quality_s": float}`` (wall seconds of the transcode and of the
        quality measurement);
        on a bad source ``{"ok": False, "key", "source", "stage", "reason", "source_bytes"}``
        with ``stage`` one of ``probe``, ``transcode``, ``check``.
    """
    src = task.source
    size = os.path.getsize(src.path) if os.path.isfile(src.path) else 0
    try:
        mp4, meta, seconds = _ingest_one(task)
    except _Reject as e:
        return {"ok": False, "key": task.key, "source": src.path, "stage": e.stage, "reason": e.reason,
                "source_bytes": size}
    return {"ok": True, "key": task.key, "mp4": mp4, "meta": meta, "source_bytes": size, **seconds}


def _ingest_one(task: Task) -> tuple[bytes, dict, dict]:
    src, settings = task.source, task.settings
    try:
        info = probe(src.path)
    except ProbeError as e:
        raise _Reject("probe", str(e)) from None
    if info.width * info.height > task.max_pixels:
        raise _Reject("probe", f"resolution {info.width}x{info.height} exceeds max_pixels={task.max_pixels}")
    expected = info.duration_s
    if src.trim is not None:
        start, end = src.trim
        if end <= start:
            raise _Reject("probe", f"empty trim [{start}, {end}]")
        if expected is not None and start >= expected:
            raise _Reject("probe", f"trim starts at {start:.2f} s, after the end of the video ({expected:.2f} s)")
        expected = (min(end, expected) if expected is not None else end) - start
    if info.max_hold_s is not None and info.max_hold_s > task.max_gap_s:
        raise _Reject("probe", f"timestamps jump by {info.max_hold_s:.1f} s between two frames (max_gap_s="
                               f"{task.max_gap_s:g}); at constant frame rate that frame would be repeated "
                               f"{info.max_hold_s * settings.fps:.0f} times: broken or hostile timestamps")
    # Output bound: the probed duration, or without one the packets at most max_gap_s each.
    bound_s = expected if expected is not None else max(info.packets, 1) * task.max_gap_s
    limit = frame_limit(bound_s, settings.fps, settings.gop)
    limits = {"timeout_s": task.timeout_s if task.timeout_s is not None else auto_timeout(bound_s),
              "max_frames": limit + 1, "memory_bytes": task.max_memory}
    t0 = time.perf_counter()
    try:
        if task.quality_frames > 0:
            # sample frames spread over the expected output; ones past a shorter real end drop out
            guess = round((expected or 10.0) * settings.fps)
            mp4, frames, reference = quality.transcode_with_reference(
                src.path, info, settings, src.trim, quality.sample_frames(guess, task.quality_frames), **limits)
        else:
            mp4 = transcode(src.path, info, settings, src.trim, **limits)
    except TranscodeError as e:
        raise _Reject("transcode", str(e)) from None
    seconds = {"transcode_s": time.perf_counter() - t0, "quality_s": 0.0}
    try:
        # first frame presented at 0, not 1/30 s: frame i is at i / fps for every decoder
        mp4 = start_at_zero(mp4)
        table = parse_fragments(mp4)
    except ValueError as e:
        raise _Reject("transcode", f"ffmpeg output is not a fragmented MP4 ({e})") from None
    mp4 = mp4[: table.data_end]
    n = table.num_frames
    if n == 0:
        raise _Reject("check", "no decodable video frames")
    if n < task.min_frames:
        raise _Reject("check", f"too short: {n} frames at {settings.fps:g} fps < min_frames={task.min_frames}")
    duration = n / settings.fps
    if n > limit:
        raise _Reject("check", f"output runs past {limit} frames ({limit / settings.fps:.1f} s) but the source "
                               f"is {bound_s:.2f} s long: broken timestamps (e.g. a timescale of 0); "
                               "ffmpeg was stopped there")
    if expected and duration < task.min_coverage * expected - 1.0 / settings.fps:
        raise _Reject(
            "check", f"truncated or corrupt: decoded {duration:.2f} s of {expected:.2f} s ({n} frames)"
        )
    for k, frag in enumerate(table.fragments):
        if frag.starts_with_sync is False:
            raise _Reject("check", f"fragment {k} does not start with a keyframe")
        if k < len(table.fragments) - 1 and frag.num_frames != settings.gop:
            raise _Reject("check", f"fragment {k} has {frag.num_frames} frames, expected gop={settings.gop}")
    out = output_size(*info.display_size, settings.short_side)
    meta = {
        "key": task.key,
        "source": src.path,
        "split": src.split,
        "label": src.label,
        "label_name": src.label_name,
        "fps": settings.fps,
        "num_frames": n,
        "width": out[0],
        "height": out[1],
        "duration_s": round(duration, 6),
        "gop": settings.gop,
        "init_size": table.init_size,
        "fragments": [[f.byte_offset, f.first_frame, f.num_frames] for f in table.fragments],
        # extras (ingest/FORMAT.md)
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "bytes": len(mp4),
        "has_audio": bool(settings.keep_audio and info.has_audio),
        "trim": list(src.trim) if src.trim is not None else None,
        "source_info": {k: v for k, v in asdict(info).items() if k != "streams"},
        "encoder": {"crf": settings.crf, "preset": settings.preset, "tune": settings.tune, "bframes": settings.bframes,
                    "rhovid": __version__},
    }
    if task.quality_frames > 0:
        t0 = time.perf_counter()
        try:
            meta["quality"] = quality.compare(reference, frames, mp4, meta)
        except (ValueError, IndexError, av.FFmpegError) as e:
            # the stored video passed every check; only the comparison failed: keep the sample, say why
            meta["quality"] = {"error": f"{type(e).__name__}: {e}"}
        seconds["quality_s"] = time.perf_counter() - t0
    return mp4, meta, seconds

