"""The whole pipeline on object storage (moto's S3) against the same on a local copy: ingest to the
bucket, verify, compute boxes, train, evaluate; and training through a proxy that injects faults."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rhovid import storage
from rhovid.benchmarks.netproxy import HttpProxy
from rhovid.cli import main
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import read_index
from rhovid.ingest.synth import SynthConfig, synthesize
from rhovid.ingest.verify import verify
from rhovid.store.compute import compute_box_set
from rhovid.train.checkpoint import latest_checkpoint, load_checkpoint
from rhovid.train.config import get_preset, replace_data
from rhovid.train.data import ClipLoader, LoaderConfig
from rhovid.train.loop import train


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("rt-src")
    for split, per_class, seed in (("train", 2, 0), ("test", 1, 1)):
        synthesize(root / split, SynthConfig(classes=3, per_class=per_class, seconds=2.0, seed=seed))
    return root


def download_tree(url: str, local) -> None:
    fs, path = storage.filesystem(url)
    fs.invalidate_cache()
    fs.get(path.rstrip("/") + "/", str(local), recursive=True)


def _cfg(data, **kw):
    cfg = get_preset("tiny-constcl")
    cfg = dataclasses.replace(cfg, batch_size=2, steps=2, checkpoint_every=2, log_every=1, progress=False,
                              optim=dataclasses.replace(cfg.optim, lr=0.05, lr_batch=2, warmup_steps=1))
    return replace_data(cfg, data=str(data), crop=32, frames=2, stride=4, workers=0, **kw)


@pytest.mark.slow  # ~35 s on 2 cores: two ingests, two box sets, two trainings, two evaluations
def test_ingest_verify_boxes_train_eval_on_s3_equal_a_local_copy(sources, bucket, tmp_path, capsys):
    url = f"{bucket}/data"
    for split in ("train", "test"):
        ingest([str(sources / split)], url, IngestConfig(short_side=64, gop=16, shard_count=4, split=split,
                                                          workers=0, progress=False), stage=tmp_path / "stage")
    report = verify(url, decode=True, progress=False)
    assert report.ok and report.samples == 9, report.problems
    local = tmp_path / "local"
    download_tree(url, local)
    assert read_index(local) == read_index(url)
    for data in (url, local):
        compute_box_set(data, "fh", box_fps=2.0, max_boxes=6, name="fh", workers=0, progress=False)
    # the same batches: bit-identical videos, same boxes
    lcfg = LoaderConfig(data="", rho=2, frames=2, stride=4, crop=32, boxes="fh", max_boxes=4, batch_size=2,
                        workers=0, seed=3, drop_last=False)
    a = list(ClipLoader(dataclasses.replace(lcfg, data=str(local))))
    b = list(ClipLoader(dataclasses.replace(lcfg, data=url)))
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert x["key"] == y["key"]
        assert all(torch.equal(x[k], y[k]) for k in ("video", "boxes", "box_mask", "box_frame", "label"))
    # training from the bucket = training from the copy
    runs = {}
    for name, data in (("s3", url), ("local", local)):
        result = train(_cfg(data, boxes="fh"), tmp_path / f"run-{name}")
        runs[name] = load_checkpoint(latest_checkpoint(tmp_path / f"run-{name}"))["model"]
        assert "0 retries" in result["data"] and "0 skipped samples" in result["data"]
    assert all(torch.equal(runs["s3"][k], runs["local"][k]) for k in runs["local"])
    # evaluation: features into the bucket's features.zarr, the same numbers
    results = {}
    for name, data in (("s3", url), ("local", local)):
        report = tmp_path / f"knn-{name}.json"
        assert main(["eval", "knn", "--data", str(data), "--run", str(tmp_path / f"run-{name}"), "--views", "1x1",
                     "--workers", "0", "--no-progress", "--report", str(report)]) == 0
        results[name] = json.loads(report.read_text())["results"]
    assert results["s3"] == results["local"] and results["s3"]["num_test"] == 3
    assert storage.exists(f"{url}/features.zarr/zarr.json")
    capsys.readouterr()
    assert main(["ingest", "--verify", "--out", url, "--no-progress"]) == 0
    assert "9 samples, 0 problems" in capsys.readouterr().out


def test_training_through_faults_completes_once_per_sample(tiny_data, nginx, tmp_path):
    """503s and connection resets on a fifth of the requests: the run finishes, every epoch has each
    sample once, the model equals the one trained from local disk, and metrics count the retries."""
    import shutil

    shutil.copytree(tiny_data, nginx.root / "faulty", dirs_exist_ok=True)
    cfg = dataclasses.replace(_cfg(tiny_data), steps=6)  # 6 videos, batch 2: two epochs
    train(cfg, tmp_path / "local")
    with HttpProxy(nginx.port, fail_503=0.12, drop=0.08, seed=5) as proxy:
        result = train(replace_data(cfg, data=f"{proxy.url}/faulty"), tmp_path / "remote")
    faults = proxy.counters.injected_503 + proxy.counters.dropped
    records = [json.loads(line) for line in (tmp_path / "remote" / "metrics.jsonl").read_text().splitlines()]
    io = records[-1]["io"]
    assert faults > 0 and io["retries"] == faults and io["failed"] == 0 and io["skipped"] == 0
    assert f"{faults} retries" in result["data"]
    a, b = (load_checkpoint(latest_checkpoint(tmp_path / r))["model"] for r in ("local", "remote"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # same batches in the same order: nothing lost or repeated
    loader = ClipLoader(LoaderConfig.from_data(replace_data(cfg, data=f"{nginx.url}/faulty").data, batch_size=2,
                                               seed=cfg.seed))
    for epoch in range(2):
        loader.set_epoch(epoch)
        keys = [k for batch in loader for k in batch["key"]]
        assert sorted(keys) == sorted(e["key"] for e in read_index(tiny_data))
