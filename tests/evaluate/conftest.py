"""A tiny labelled dataset with train and test splits (real synth videos, real shards)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def split_data(tmp_path_factory):
    """DATA with split train (3 classes x 2 videos, seed 0) and test (3 x 1, seed 1); 2 s, 64 px."""
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("eval-data")
    for split, per_class, seed in (("train", 2, 0), ("test", 1, 1)):
        synthesize(root / split, SynthConfig(classes=3, per_class=per_class, seconds=2.0, seed=seed))
        ingest([str(root / split)], root / "data",
               IngestConfig(short_side=64, gop=16, shard_count=4, split=split, progress=False))
    return root / "data"
