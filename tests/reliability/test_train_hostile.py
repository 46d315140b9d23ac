"""One bad sample never ends an epoch (issue 13 item 9, loader side): real hostile tar shards.

Each kind of ``HOSTILE`` is a real shard of one good sample and one bad one (fps 0, fps
inf, label 2**70, JSON nested 100,000 deep, a tar cut inside a json member, a 0-byte tar, a member
header claiming 10^12 bytes), beside the good shards. The loader must run every epoch to its full
length, skip and count exactly the bad samples, return every good one, and stay bounded.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import pytest
from process_tree import run_measured

from rhovid.atomic import read_jsonl
from rhovid.ingest.reader import read_index
from rhovid.train.data import ClipLoader, LoaderConfig

HOSTILE = ("fps0", "fps_inf", "label_2e70", "nested_json", "cut_in_json", "empty_tar", "claims_1e12")
LOST = {"empty_tar": 2}  # samples each kind loses: its bad one; the 0-byte tar both of its samples


@pytest.fixture(scope="module")
def hostile_data(epoch_data, make_hostile_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "data"
    return out, make_hostile_data(epoch_data, out, HOSTILE)


def _loader(data, **kw):
    cfg = dict(data=str(data), rho=2, frames=4, stride=2, timespan_s=1.0, crop=32, batch_size=2, workers=0, seed=3)
    return ClipLoader(LoaderConfig(**{**cfg, **kw}))


@pytest.mark.parametrize("kind", HOSTILE)
def test_each_hostile_shard_is_skipped_and_counted(epoch_data, make_hostile_data, tmp_path, kind):
    data = tmp_path / "data"
    (good, bad), = make_hostile_data(epoch_data, data, (kind,)).values()
    lost = {bad, good} if kind == "empty_tar" else {bad}
    loader = _loader(data)
    epochs = [[k for b in loader for k in b["key"]] for _ in range(2)]  # two full epochs, no exception
    for keys in epochs:
        assert len(keys) == 2 * len(loader) == 8  # every epoch runs to its length (8 samples, batch 2)
        assert set(keys) == {e["key"] for e in read_index(data)} - lost
    assert loader.skipped == 2 * LOST.get(kind, 1)  # counted once per epoch; the 0-byte tar loses its good one too


def test_all_hostile_shards_with_workers_then_resume_midway(hostile_data):
    data, made = hostile_data
    loader = _loader(data, workers=2, start_method="fork")
    keys = [b["key"] for b in loader]
    flat = Counter(k for ks in keys for k in ks)
    assert len(keys) == len(loader) == 10  # 20 index rows over 2 workers at batch 2
    assert not {bad for _, bad in made.values()} & set(flat)
    good = {e["key"] for e in read_index(data)} - {bad for _, bad in made.values()} - {made["empty_tar"][0]}
    assert set(flat) == good
    assert loader.skipped == sum(LOST.get(k, 1) for k in HOSTILE) == 8
    # resume after 5 batches: the rest is what the uninterrupted loader returned (skips do not shift it)
    resumed = _loader(data, workers=2, start_method="fork")
    partial = _loader(data, workers=2, start_method="fork")
    it = iter(partial)
    for _ in range(5):
        next(it)
    resumed.load_state_dict(partial.state_dict())
    assert [b["key"] for b in resumed] == keys[5:]


def test_rhovid_train_on_hostile_shards_finishes_bounded(hostile_data, tmp_path):
    """A real ``rhovid train`` process over all of them: exit 0, every step trained, bounded memory."""
    data, _ = hostile_data
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rhovid.cli", "train", "--data", str(data), "--preset", "tiny-simclr",
           "--frames", "4", "--stride", "2", "--crop", "32", "--batch-size", "2", "--steps", "12", "--out", str(run),
           "--set", "data.timespan_s=1.0", "--set", "log_every=1", "--set", "progress=false"]
    rc, _, stderr, peak_gib = run_measured(cmd, 600)
    assert rc == 0, stderr[-3000:]
    assert 0.01 < peak_gib < 2.0, peak_gib  # < 2 GiB resident (a 10^12-byte read would not be)
    recs = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(1, 13))
    assert recs[-1]["io"]["skipped"] >= 8  # the loader's count reaches the metrics
    assert "skipped unusable sample" in stderr
    assert json.loads((run / "config.json").read_text())["data"]["workers"] >= 1  # resolved, not None
