"""Fixtures of the reliability suite: real shards, real runs, real processes (train / eval / checkpoint side)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def epoch_data(tmp_path_factory):
    """DATA of 6 short labelled videos (2 classes x 3, 1.5 s at 15 fps, 64x48) in 3 shards.

    Small enough that a run of a few epochs takes seconds: batch 2 with one worker is 3 batches
    per epoch, so a 9-step run crosses two epoch boundaries.
    """
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("epoch-data")
    synthesize(root / "src", SynthConfig(classes=2, per_class=3, seconds=1.5, width=64, height=48, fps=15, seed=0))
    rep = ingest([str(root / "src")], root / "data",
                 IngestConfig(short_side=48, gop=8, fps=15, shard_count=2, workers=0, progress=False, min_frames=8))
    assert rep.ingested == 6 and rep.failed == 0
    return root / "data"
