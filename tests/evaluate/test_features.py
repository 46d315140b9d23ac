"""Feature extraction: multi-view averaging against a direct calculation, reuse, the eval CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from rhovid.evaluate.feature_store import read_features
from rhovid.evaluate.features import (
    ViewConfig,
    extract_split,
    parse_views,
    sample_views,
    split_rows,
    view_frames,
)
from rhovid.ingest.fragments import slice_clips

VIEWS = ViewConfig(frames=2, stride=4, crop=32, temporal=2, spatial=3)


class CountingBackbone(torch.nn.Module):
    """A real (tiny) 3D conv net that counts the clips it encodes."""

    feature_dim = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2))
        self.clips = 0

    def forward(self, x):
        self.clips += len(x)
        return torch.relu(self.conv(x)).mean(dim=(2, 3, 4))


def test_multiview_rows_are_mean_of_views(split_data):
    model = CountingBackbone().eval()
    st = extract_split(split_data, "test", model, "counting", VIEWS, {"run": "test", "step": 1}, block=2,
                       progress=False)
    rows = split_rows(split_data, "test")
    assert st.computed_rows == len(rows) == 3 and model.clips == 3 * 6
    f = read_features(split_data, "counting", "test")
    assert f.keys == [r["key"] for r in rows] and list(f.labels) == [r["label"] for r in rows]
    # direct: decode the 2x3 views of one video and average the backbone's outputs by hand
    from rhovid.ingest.reader import iter_shard

    key = rows[1]["key"]
    shard = split_data / "shards" / rows[1]["shard"]
    sample = next(s for s in iter_shard(shard) if s["__key__"] == key)
    meta = sample["json"]
    views = sample_views(meta, VIEWS, slice_clips(sample["mp4"], meta, view_frames(meta, VIEWS)))
    assert views.shape == (6, 3, 2, 32, 32)
    assert not np.allclose(views[0], views[2])  # left and right crops differ
    with torch.no_grad():
        want = torch.stack([model(torch.from_numpy(v[None]))[0] for v in views]).mean(0).numpy()
    np.testing.assert_allclose(f.features[1], want, rtol=1e-5, atol=1e-6)
    # second extraction: nothing is encoded
    model.clips = 0
    st2 = extract_split(split_data, "test", model, "counting", VIEWS, {"run": "test", "step": 1}, block=2,
                        progress=False)
    assert (st2.computed_rows, model.clips) == (0, 0)
    # other views: recomputed, not reused
    st3 = extract_split(split_data, "test", model, "counting", ViewConfig(2, 4, 32, 1, 1), {"run": "test", "step": 1},
                        progress=False)
    assert st3.recreated and model.clips == 3


def test_parse_views_and_errors(split_data):
    assert parse_views("2x3") == (2, 3) and parse_views("1X1") == (1, 1)
    for bad in ("2", "0x1", "2x4", "axb"):
        with pytest.raises(ValueError, match="--views"):
            parse_views(bad)
    with pytest.raises(ValueError, match="splits present"):
        split_rows(split_data, "val")


def test_eval_cli_random_init(split_data, tmp_path, capsys):
    from rhovid.cli import main

    # a private copy without any stored features: other tests may have filled the shared one
    data = tmp_path / "data"
    shutil.copytree(split_data, data, ignore=shutil.ignore_patterns("features.zarr"))
    common = ["--data", str(data), "--random-init", "--arch", "tiny", "--views", "1x1", "--frames", "2",
              "--stride", "4", "--crop", "32", "--workers", "0", "--no-progress"]
    for evaluation in ("knn", "retrieval", "linear"):
        report = tmp_path / f"{evaluation}.json"
        assert main(["eval", evaluation, *common, "--report", str(report)]) == 0
        r = json.loads(report.read_text())
        assert r["evaluation"] == evaluation and r["features"] == "random-tiny-seed0"
        assert r["results"]["num_test" if evaluation != "retrieval" else "num_queries"] == 3
    out = capsys.readouterr().out
    assert "computed 6 videos" in out and out.count("reused (stored)") == 4  # 2 splits x 2 later evals
    assert "| random-tiny-seed0 | linear |" in out
    assert main(["eval", "knn", "--data", str(data)]) == 1  # neither --run nor --random-init
    # a folder as --report (existing, or new with a trailing slash) gets <evaluation>.json inside
    (tmp_path / "reports").mkdir()
    assert main(["eval", "knn", *common, "--report", str(tmp_path / "reports")]) == 0
    assert main(["eval", "linear", *common, "--report", str(tmp_path / "new") + "/"]) == 0
    assert json.loads((tmp_path / "reports" / "knn.json").read_text())["evaluation"] == "knn"
    assert json.loads((tmp_path / "new" / "linear.json").read_text())["evaluation"] == "linear"


def _tree(folder):
    """Every file under ``folder`` with its size and mtime (what a write would change)."""
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_eval_with_features_elsewhere_writes_nothing_into_data(split_data, tmp_path, capsys):
    from rhovid.cli import main

    data = tmp_path / "data"  # stands for a dataset on a read-only disk
    shutil.copytree(split_data, data, ignore=shutil.ignore_patterns("features.zarr"))
    before = _tree(data)
    store = tmp_path / "scratch" / "features.zarr"
    common = ["--data", str(data), "--random-init", "--arch", "tiny", "--views", "1x1", "--frames", "2",
              "--stride", "4", "--crop", "32", "--workers", "0", "--no-progress"]
    reports = {}
    for where in (["--features", str(store)], []):  # elsewhere, then the default DATA/features.zarr
        report = tmp_path / f"knn{len(where)}.json"
        assert main(["eval", "knn", *common, *where, "--report", str(report)]) == 0
        reports[len(where)] = json.loads(report.read_text())["results"]
        if where:
            assert _tree(data) == before and store.is_dir()
            assert "computed 6 videos" in capsys.readouterr().out
            assert main(["eval", "knn", *common, *where, "--report", str(report)]) == 0
            assert capsys.readouterr().out.count("reused (stored)") == 2  # the second run reads the store back
    assert (data / "features.zarr").is_dir() and reports[2] == reports[0]  # same features, same numbers
