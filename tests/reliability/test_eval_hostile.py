"""``rhovid eval`` skips and counts bad samples instead of aborting (issue 13 item 9, eval side).

The same seven kinds of hostile real tar shards as the loader test, in both the train split (the
probe's / bank's features) and the test split (the scored one). Feature extraction writes a NaN
row for each bad video, every evaluation leaves those rows out, and the report says how many.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rhovid.evaluate.feature_store import read_features
from rhovid.evaluate.features import ViewConfig
from rhovid.evaluate.finetune import FinetuneConfig, finetune
from rhovid.train.models import build_backbone

HOSTILE = ("fps0", "fps_inf", "label_2e70", "nested_json", "cut_in_json", "empty_tar", "claims_1e12")
LOST = 8  # one bad sample per kind, and the 0-byte tar's good one


@pytest.fixture(scope="module")
def hostile_eval_data(eval_data, make_hostile_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-eval") / "data"
    made = {split: make_hostile_data(eval_data, out, HOSTILE, split=split) for split in ("train", "test")}
    return out, made


def test_eval_knn_and_linear_skip_and_count(hostile_eval_data, tmp_path):
    data, made = hostile_eval_data
    base = [sys.executable, "-m", "rhovid.cli", "eval"]
    opts = ["--data", str(data), "--random-init", "--arch", "tiny", "--views", "1x1", "--frames", "4",
            "--stride", "2", "--crop", "32", "--workers", "0", "--no-progress"]
    for evaluation in ("knn", "linear"):
        report = tmp_path / f"{evaluation}.json"
        proc = subprocess.run([*base, evaluation, *opts, "--report", str(report)], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(report.read_text())["results"]
        assert results["skipped"] == {"train": LOST, "test": LOST}
        assert results["num_train"] == 6 + 14 - LOST and results["num_test"] == 4 + 14 - LOST
        assert "skipped videos that could not be read or decoded: {'train': 8, 'test': 8}" in proc.stdout
    feats = read_features(data, "random-tiny-seed0", "test")
    bad = {made["test"][k][1] for k in HOSTILE} | {made["test"]["empty_tar"][0]}
    nan_rows = {k for k, row in zip(feats.keys, feats.features) if not np.isfinite(row).all()}
    assert nan_rows == bad  # exactly the bad videos are NaN rows, every good one has features


def test_finetune_skips_bad_training_and_test_samples(hostile_eval_data):
    data, _ = hostile_eval_data
    views = ViewConfig(frames=4, stride=2, crop=32, temporal=1, spatial=1)
    res = finetune(data, build_backbone("tiny"), views, FinetuneConfig(steps=3, batch_size=2, workers=0),
                   progress=False)
    assert res["skipped"]["test"] == LOST and res["skipped"]["train"] >= 1
    assert res["num_test"] == 4 + 14 - LOST and 0 <= res["top1"] <= 100
