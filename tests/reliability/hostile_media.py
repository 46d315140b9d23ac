"""Hostile source files for the reliability tests, made with the real ffmpeg plus byte edits."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from rhovid.ffmpeg import ffmpeg_exe


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def gap_video(path: Path, gap_s: float = 3600.0, frames: int = 120, size: str = "64x48") -> Path:
    """An H.264 MP4 of ``frames`` frames at 30 fps whose second half starts ``gap_s`` seconds late
    (``setpts``, timestamps passed through): 12 KB for a one-hour gap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-frames:v", str(frames),
            "-vf", f"setpts='PTS+if(gte(N,{frames // 2}),{gap_s}/TB,0)'", "-fps_mode", "passthrough",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "file:" + str(path))
    return path


def timescale_zero_video(path: Path, seconds: float = 4.0, size: str = "160x120") -> Path:
    """A plain 30 fps H.264 MP4 whose video ``mdhd`` timescale is overwritten with 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "file:" + str(path))
    data = bytearray(path.read_bytes())
    at = data.index(b"mdhd")  # the only track: video
    version = data[at + 4]
    struct.pack_into(">I", data, at + 8 + (16 if version == 1 else 8), 0)
    path.write_bytes(bytes(data))
    return path


def hls_playlist(path: Path, segment: Path, seconds: float = 2.0) -> Path:
    """An HLS playlist at ``path`` naming ``segment`` (an MPEG-TS written here) by absolute path."""
    segment.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30", "-t", str(seconds), "-c:v", "libx264",
            "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mpegts", "file:" + str(segment))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{seconds:.0f}\n"
                    f"#EXTINF:{seconds:.1f},\n{segment.resolve()}\n#EXT-X-ENDLIST\n")
    return path
