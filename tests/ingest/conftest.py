"""Fixtures of the ingest tests: real videos encoded with the project's ffmpeg (argv lists, no shell)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rhovid.ffmpeg import ffmpeg_exe


def encode(
    path: Path,
    *,
    size: str = "160x120",
    rate: float = 30,
    seconds: float = 2.0,
    pattern: str = "testsrc2",
    codec: list[str] | None = None,
    vf: str | None = None,
    extra_in: list[str] | None = None,
    audio: bool = False,
) -> Path:
    """Encode a lavfi test pattern to ``path`` (container from the suffix) and return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *(extra_in or [])]
    args += ["-f", "lavfi", "-i", f"{pattern}=size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    if vf:
        args += ["-vf", vf]
    args += codec or ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    args += ["-t", f"{seconds}"]
    args += ["file:" + str(path.resolve())]
    subprocess.run(args, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def encode_video():
    """The ``encode`` helper as a fixture (tests import nothing from conftest)."""
    return encode
