"""Shared fixtures. Tests make their own data: real ffmpeg encodes, real shards."""

from __future__ import annotations

import contextlib
import os
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


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    """A real nginx on 127.0.0.1 serving the folder ``nginx.root`` at ``nginx.url`` (Range requests)."""
    from rhovid.benchmarks.servers import Nginx, ServerUnavailable

    server = Nginx(tmp_path_factory.mktemp("www"))
    try:
        server.start()
    except ServerUnavailable as e:
        pytest.skip(f"no HTTP server: {e}")
    yield server
    server.stop()


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """``env`` set in os.environ (child processes inherit it) for the block, the old values restored after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on 127.0.0.1; the AWS_* variables point s3fs at it for the session."""

    from rhovid.benchmarks.servers import MotoS3, ServerUnavailable

    server = MotoS3()
    try:
        server.start()
    except ServerUnavailable as e:
        pytest.skip(f"no S3 server: {e}")
    with _environment(server.env):
        yield server
    server.stop()


@pytest.fixture
def bucket(s3, request):
    """A new, empty bucket for one test: its ``s3://`` URL."""
    import re

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-b"
    s3.make_bucket(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def gcs():
    """gcp-storage-emulator (GCS's JSON API) on 127.0.0.1; its variables point gcsfs at it for the session
    (child processes included), with anonymous credentials."""
    import importlib.util

    import fsspec

    from rhovid.benchmarks.servers import GcsEmulator, ServerUnavailable

    if importlib.util.find_spec("gcsfs") is None:  # not imported here: gcsfs reads its switches on import
        pytest.skip("gcsfs is not installed (pip install 'rhovid[gcs]')")
    server = GcsEmulator()
    try:
        server.start()
    except ServerUnavailable as e:
        pytest.skip(f"no GCS server: {e}")
    saved_conf = fsspec.config.conf.get("gs")
    # fsspec read FSSPEC_GS_* when it was imported, before this fixture: give this process the same options
    fsspec.config.conf["gs"] = {"token": "anon", "project": server.env["FSSPEC_GS_PROJECT"]}
    with _environment(server.env):
        yield server
    if saved_conf is None:
        fsspec.config.conf.pop("gs", None)
    else:
        fsspec.config.conf["gs"] = saved_conf
    server.stop()


@pytest.fixture(params=["s3", "gs"])
def store_bucket(request):
    """A new, empty bucket on moto's S3 or the GCS emulator (the same storage contract for both): its URL."""
    import re

    server = request.getfixturevalue({"s3": "s3", "gs": "gcs"}[request.param])
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + "-b"
    name = re.sub(r"-+", "-", name)
    server.make_bucket(name)
    return f"{request.param}://{name}"
