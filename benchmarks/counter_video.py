"""Frame-counter videos: every frame shows its own index, so a decoder's output can be checked.

The index is written in base 4 into a 3x3 grid of flat grey blocks (levels 0, 85, 170, 255)
that fills the centred square of the frame, so it survives lossy encoding (flat blocks) and
the loader's deterministic centre crop. 18 bits: up to 262,143 frames (2.4 h at 30 fps).
Used by the loader tests and by ``rhovid bench loader``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from rhovid.ffmpeg import ffmpeg_exe

LEVELS = np.array([0, 85, 170, 255], np.uint8)
GRID = 3


def counter_frame(index: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 RGB frame showing ``index``."""
    side = min(width, height)
    cell = side // GRID
    x0, y0 = (width - cell * GRID) // 2, (height - cell * GRID) // 2
    img = np.full((height, width, 3), 40, np.uint8)
    for d in range(GRID * GRID):
        r, c = divmod(d, GRID)
        img[y0 + r * cell : y0 + (r + 1) * cell, x0 + c * cell : x0 + (c + 1) * cell] = LEVELS[(index >> (2 * d)) & 3]
    return img


def read_counter(frames: np.ndarray) -> np.ndarray:
    """Frame indices shown by (N, H, W, 3) uint8 frames (any size with the grid in the centred square)."""
    frames = np.asarray(frames)
    n, h, w = frames.shape[:3]
    side = min(w, h)
    cell = side / GRID
    x0, y0 = (w - side) / 2 + (side - cell * GRID) / 2, (h - side) / 2 + (side - cell * GRID) / 2
    out = np.zeros(n, np.int64)
    for d in range(GRID * GRID):
        r, c = divmod(d, GRID)
        ya, yb = int(y0 + (r + 0.3) * cell), int(y0 + (r + 0.7) * cell)
        xa, xb = int(x0 + (c + 0.3) * cell), int(x0 + (c + 0.7) * cell)
        mean = frames[:, ya : max(yb, ya + 1), xa : max(xb, xa + 1)].reshape(n, -1).mean(1)
        out |= np.clip(np.rint(mean / 85.0), 0, 3).astype(np.int64) << (2 * d)
    return out


def write_counter_video(
    path: str | Path, frames: int, fps: float = 15.0, width: int = 64, height: int = 48,
    codec_args: tuple[str, ...] = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"),
    out_args: tuple[str, ...] = (),
) -> Path:
    """Encode a counter video of ``frames`` frames with ffmpeg (raw RGB piped in, no shell)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "pipe:0",
        *codec_args, *out_args, str(path),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    chunk = 256
    try:
        for a in range(0, frames, chunk):
            block = np.stack([counter_frame(i, width, height) for i in range(a, min(frames, a + chunk))])
            proc.stdin.write(block.tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {err.decode(errors='replace')[-400:]}")
    return path


def vp9_fmp4_sample(frames: int, fps: float = 15.0, width: int = 64, height: int = 48, gop: int = 16,
                    key: str = "vp9") -> tuple[bytes, dict]:
    """A VP9 counter video in fragmented MP4 laid out like an ingest sample (DALI's CPU decoder
    has no H.264): fixed GOP, one fragment per keyframe, fragment table from ``rhovid.ingest.fmp4``.

    Returns:
        (mp4 bytes, sample json with ``key, fps, num_frames, width, height, gop, init_size, fragments``).
    """
    import tempfile

    from rhovid.ingest.fmp4 import parse_fragments

    with tempfile.TemporaryDirectory() as tmp:
        out = write_counter_video(
            Path(tmp) / "v.mp4", frames, fps, width, height,
            codec_args=("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-crf", "20", "-b:v", "0",
                        "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop)),
            out_args=("-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer", "-f", "mp4"),
        )
        mp4 = out.read_bytes()
    table = parse_fragments(mp4)
    meta = {
        "key": key, "label": 0, "fps": fps, "num_frames": table.num_frames, "width": width, "height": height,
        "gop": gop, "init_size": table.init_size,
        "fragments": [[f.byte_offset, f.first_frame, f.num_frames] for f in table.fragments],
    }
    return mp4, meta
