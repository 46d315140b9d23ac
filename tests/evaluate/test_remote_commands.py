"""Every command that reads a DATA, run as a real process on a DATA in moto's S3: each prints one
``data:`` summary (bytes fetched, requests, retries, failed reads, skipped samples) whose numbers
match what the command had to read; and an ablation from the bucket equals one from a local copy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from rhovid import storage
from rhovid.ingest.reader import ShardReader, read_index, split_shards

SUMMARY = re.compile(r"^data: fetched (?P<mb>[\d.]+) MB in (?P<requests>\d+) requests, (?P<retries>\d+) retries, "
                     r"(?P<failed>\d+) failed reads, [\d.]+ s waiting for reads(?:; (?P<skipped>\d+) skipped samples)?$",
                     re.MULTILINE)


def rhovid(*args: str, timeout: float = 300) -> str:
    """``rhovid ARGS`` as a child process (the AWS_* variables of the ``s3`` fixture point it at moto)."""
    proc = subprocess.run([sys.executable, "-m", "rhovid.cli", *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def summary(out: str) -> dict:
    """The one ``data:`` line of a command's output, as numbers."""
    found = SUMMARY.findall(out)
    assert len(found) == 1, f"expected one data: line in\n{out}"
    m = SUMMARY.search(out)
    return {k: (float(v) if k == "mb" else None if v is None else int(v)) for k, v in m.groupdict().items()}


def object_bytes(url: str) -> dict[str, int]:
    """Size of every object under ``url``, by name relative to it."""
    fs, path = storage.filesystem(url)
    fs.invalidate_cache()
    return {name[len(path.rstrip("/")) + 1:]: size for name, size in fs.du(path, total=False).items()}


@pytest.fixture(scope="module")
def remote(s3, split_data, tmp_path_factory):
    """``split_data``'s shards and index.json in a bucket, and a local copy of exactly those files."""
    s3.make_bucket("remote-commands")
    url = "s3://remote-commands/data"
    local = tmp_path_factory.mktemp("remote-commands") / "data"
    (local / "shards").mkdir(parents=True)
    shutil.copy(split_data / "index.json", local / "index.json")
    for p in sorted((split_data / "shards").iterdir()):
        if not p.name.startswith("."):
            shutil.copy(p, local / "shards" / p.name)
    for p in sorted(local.rglob("*")):
        if p.is_file():
            storage.upload(p, storage.join(url, *p.relative_to(local).parts))
    return url, local


def mp4_bytes(data) -> tuple[int, int]:
    """(shards, total bytes of the videos' mp4 members) of DATA."""
    shards = [u for u, _ in split_shards(data)]
    reader = ShardReader()
    try:
        return len(shards), sum(s.members["mp4"][1] for u in shards for s in reader.manifest(u).samples)
    finally:
        reader.close()


def test_verify_summary_counts_every_object_it_read(remote):
    url, _ = remote
    out = rhovid("ingest", "--verify", "--out", url, "--no-progress")
    got = summary(out)
    # what verify reads (other tests of this module may have added boxes.zarr beside them)
    sizes = {n: v for n, v in object_bytes(url).items() if n == "index.json" or n.startswith("shards/")}
    shards = [n for n in sizes if n.endswith(".tar")]
    assert len(shards) == 3 and "3 shards, 9 samples, 0 problems" in out
    # index.json once, then per shard its tar (whole), .idx and manifest: one request each
    assert got["requests"] == 1 + 3 * len(shards) and got["retries"] == got["failed"] == 0
    assert got["skipped"] is None  # verify reports problems, it skips nothing
    assert got["mb"] == pytest.approx(sum(sizes.values()) / 1e6, abs=0.006)


def test_boxes_summary_counts_manifests_and_videos(remote):
    url, _ = remote
    out = rhovid("boxes", url, "--method", "fh", "--box-fps", "1", "--max-boxes", "4", "--workers", "0",
                 "--no-progress")
    got = summary(out)
    shards, video_bytes = mp4_bytes(url)
    # one manifest read per shard, then each video whole (a box prior needs every GOP at --box-fps)
    assert got["requests"] == shards + 9 and got["retries"] == got["failed"] == got["skipped"] == 0
    assert video_bytes / 1e6 < got["mb"] < sum(object_bytes(url).values()) / 1e6


@pytest.mark.parametrize("evaluation", ["knn", "finetune"])
def test_eval_summary_counts_the_clips_it_read(remote, tmp_path, evaluation):
    url, _ = remote
    extra = ["--steps", "2", "--batch-size", "2"] if evaluation == "finetune" else []
    out = rhovid("eval", evaluation, "--data", url, "--random-init", "--arch", "tiny", "--views", "1x1",
                 "--frames", "2", "--stride", "4", "--crop", "32", "--workers", "0", "--no-progress",
                 "--features", str(tmp_path / "features.zarr"), "--report", str(tmp_path / "r.json"), *extra)
    got = summary(out)
    shards, video_bytes = mp4_bytes(url)
    assert got["retries"] == got["failed"] == got["skipped"] == 0
    # at least a manifest per shard and a ranged read per video; only the clips' fragments, not the videos
    assert got["requests"] >= shards + 9
    assert 0 < got["mb"] < video_bytes / 1e6
    assert json.loads((tmp_path / "r.json").read_text())["results"]["num_test"] == 3


@pytest.mark.slow  # ~70 s on 2 cores: two 2-run ablations (train + features + probes each)
def test_ablation_from_the_bucket_equals_one_from_a_local_copy(remote, tmp_path):
    url, local = remote
    assert read_index(url) == read_index(local)
    common = ["--method", "byol", "--rho", "2", "3", "--steps", "2", "--batch-size", "2", "--frames", "2",
              "--stride", "4", "--crop", "32", "--workers", "0", "--views", "1x1", "--seed", "3",
              "--set", "method_kwargs.hidden_dim=32", "--set", "method_kwargs.proj_dim=16", "--no-progress"]
    outs = {}
    for name, data in (("s3", url), ("local", str(local))):
        outs[name] = rhovid("ablation", "--data", data, *common, "--out", str(tmp_path / name),
                            "--features", str(tmp_path / f"features-{name}.zarr"), timeout=600)
    remote_got, local_got = summary(outs["s3"]), summary(outs["local"])
    # the same reads from both (the local ones go through the same counted reader), no retries, nothing skipped
    assert remote_got["requests"] > 0 and remote_got["retries"] == remote_got["failed"] == remote_got["skipped"] == 0
    assert local_got["skipped"] == 0
    tables = {name: (tmp_path / name / "ablation.md").read_text().split("\n\n")[2] for name in outs}
    assert tables["s3"] == tables["local"] and "| byol-rho3 |" in tables["s3"]
    rows = {name: json.loads((tmp_path / name / "ablation.json").read_text())["rows"] for name in outs}
    assert [r["results"] for r in rows["s3"]] == [r["results"] for r in rows["local"]]
    assert [r["status"] for r in rows["s3"]] == ["trained", "trained", "baseline"]
