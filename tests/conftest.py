"""Shared fixtures. Tests make their own data: real ffmpeg encodes, real shards."""

from __future__ import annotations

import pytest


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
