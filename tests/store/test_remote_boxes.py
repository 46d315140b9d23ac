"""``rhovid boxes`` on a DATA in S3 (moto): one Zarr group per shard written to the bucket through
zarr's fsspec store, the same boxes as from the local copy, resumable, readable by the loader."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import torch

from rhovid import storage
from rhovid.cli import main
from rhovid.store.compute import compute_box_set
from rhovid.store.zarr_store import BoxStore, group_status, store_root
from rhovid.train.data import ClipLoader, LoaderConfig


def upload_tree(local, url):
    for p in sorted(local.rglob("*")):
        if p.is_file():
            storage.upload(p, storage.join(url, *p.relative_to(local).parts))


def test_boxes_on_s3_equal_local_boxes_and_feed_the_loader(tiny_data, bucket, tmp_path, capsys):
    local = tmp_path / "local"
    shutil.copytree(tiny_data, local)
    url = f"{bucket}/tiny"
    upload_tree(tiny_data, url)
    kw = dict(box_fps=1.0, max_boxes=6, name="fh1", workers=0, progress=False)
    a = compute_box_set(local, "fh", **kw)
    b = compute_box_set(url, "fh", **kw)
    assert a.set_name == b.set_name and sorted(b.computed) == ["train-000000", "train-000001"]
    root = store_root(url)
    assert storage.list_dirs(root) == ["train-000000", "train-000001"]  # one group per shard
    assert all(group_status(root, s, b.set_name) == "complete" for s in b.computed)
    for shard in b.computed:
        x, y = BoxStore(local).load(shard, "fh1"), BoxStore(url).load(shard, "fh1")
        assert x.keys == y.keys
        for name in ("boxes", "count", "frame", "video_offsets"):
            assert np.array_equal(getattr(x.rows, name), getattr(y.rows, name)), name
    again = compute_box_set(url, "fh", **kw)
    assert again.noop and sorted(again.skipped) == sorted(b.computed)
    # an interrupted group in the bucket is recomputed, a complete one never rewritten
    storage.remove(storage.join(root, "train-000001", b.set_name, "zarr.json"))
    assert group_status(root, "train-000001", b.set_name) is None
    redo = compute_box_set(url, "fh", **kw)
    assert redo.computed == ["train-000001"] and redo.skipped == ["train-000000"]

    cfg = LoaderConfig(data="", rho=2, frames=4, stride=4, crop=48, boxes="fh1", max_boxes=4, batch_size=2,
                       workers=0, seed=1, drop_last=False)
    x, y = list(ClipLoader(replace(cfg, data=str(local)))), list(ClipLoader(replace(cfg, data=url)))
    assert len(x) == len(y) > 0
    for p, q in zip(x, y):
        assert p["key"] == q["key"] and torch.equal(p["boxes"], q["boxes"]) and torch.equal(p["video"], q["video"])
        assert p["box_mask"].any()
    assert main(["boxes", url, "--list"]) == 0
    listing = capsys.readouterr().out
    assert "fh1" in listing and "2/2" in listing


def test_split_shards_on_s3_write_what_the_local_per_shard_path_writes(tiny_data, bucket, tmp_path):
    """Fewer shards than workers on a remote DATA: range workers read their videos from the
    bucket, the driver writes each shard's group there once, with the arrays a local
    one-task-per-shard run writes."""
    local = tmp_path / "local"
    shutil.copytree(tiny_data, local, ignore=shutil.ignore_patterns("boxes.zarr"))
    url = f"{bucket}/tiny"
    upload_tree(local, url)
    kw = dict(box_fps=1.0, max_boxes=6, progress=False)
    whole = compute_box_set(local, "motion", workers=0, **kw)
    split = compute_box_set(url, "motion", workers=3, **kw)
    assert split.tasks == 4 and whole.tasks == 2 and not split.failed  # 2 shards of 3 videos as 2 ranges each
    assert sorted(split.computed) == sorted(whole.computed) == storage.list_dirs(store_root(url))
    for shard in split.computed:
        x, y = BoxStore(local).load(shard, whole.set_name), BoxStore(url).load(shard, split.set_name)
        assert x.keys == y.keys and x.attrs["stats"] == y.attrs["stats"]
        for name in ("boxes", "count", "frame", "video_offsets"):
            assert np.array_equal(getattr(x.rows, name), getattr(y.rows, name)), name
