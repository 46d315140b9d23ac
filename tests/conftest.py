"""Shared fixtures. Tests make their own data: real ffmpeg encodes, real shards."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rhovid.ffmpeg import ffmpeg_exe


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_src(tmp_path_factory):
    """A labelled synthetic tree SRC/<class>/<name>.mp4: 3 classes x 2 videos, 4 s, 160x120."""
    from rhovid.ingest.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("tiny-src")
    synthesize(root, SynthConfig(classes=3, per_class=2, seconds=4.0, width=160, height=120, fps=30, seed=0))
    return root


@pytest.fixture(scope="session")
def tiny_data(tiny_src, tmp_path_factory):
    """``tiny_src`` ingested into DATA (short side 112, GOP 16, two shards)."""
    from rhovid.ingest.pipeline import IngestConfig, ingest

    data = tmp_path_factory.mktemp("tiny-data")
    ingest([str(tiny_src)], data, IngestConfig(short_side=112, gop=16, shard_count=3, workers=0, progress=False))
    return data


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
