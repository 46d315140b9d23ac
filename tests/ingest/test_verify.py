"""`rhovid ingest --verify`: a clean DATA passes, and each kind of damage is named (real shards, real tars)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

from rhovid.cli import main
from rhovid.ingest.manifest import build_manifest
from rhovid.ingest.reader import list_shards, read_index
from rhovid.ingest.shards import write_idx
from rhovid.ingest.verify import verify


def _copy(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    return data


def test_clean_data_passes(tiny_data, tmp_path, capsys):
    data = _copy(tiny_data, tmp_path)
    report = verify(data, decode=True, progress=False)
    assert report.ok, report.problems
    assert report.samples == len(read_index(data)) and report.shards == len(list_shards(data))
    assert main(["ingest", "--verify", "--out", str(data), "--no-progress"]) == 0
    assert "0 problems" in capsys.readouterr().out


def _rewrite_first_json(shard, change):
    """Rewrite ``shard`` with ``change(meta)`` applied to its first sample's json (a plain USTAR tar)."""
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first = members[0][0].name.partition(".")[0]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, payload in members:
            if m.name == f"{first}.json":
                meta = json.loads(payload)
                change(meta)
                payload = json.dumps(meta).encode()
                m.size = len(payload)
            tar.addfile(m, io.BytesIO(payload))
    return first


def test_each_kind_of_damage_is_named(tiny_data, tmp_path, capsys):
    data = _copy(tiny_data, tmp_path)
    first, second = list_shards(data)[:2]
    # a sample json that disagrees with its mp4 (the .idx rewritten to match the new tar)
    key = _rewrite_first_json(first, lambda m: m.update(num_frames=m["num_frames"] + 1))
    write_idx(first)
    # a stale .idx
    idx = second.with_suffix(".idx")
    idx.write_text(idx.read_text().replace("json", "jsn", 1))
    # an index row without its sample
    doc = json.loads((data / "index.json").read_text())
    doc["samples"].append({**doc["samples"][0], "key": "ghost"})
    (data / "index.json").write_text(json.dumps(doc))

    problems = "\n".join(verify(data, progress=False).problems)
    assert f"{first.name}/{key}: fragments" in problems and "num_frames says" in problems
    assert f"{idx.name}: does not describe {second.name}" in problems
    assert "index.json: ghost is listed in" in problems
    capsys.readouterr()
    assert main(["ingest", "--verify", "--out", str(data), "--no-progress"]) == 1
    assert "ghost" in capsys.readouterr().err
    assert main(["ingest", "src", "--verify", "--out", str(data)]) == 1  # --verify takes no SRC


def test_cut_off_copy_is_named_with_its_missing_samples(tiny_data, tmp_path):
    data = _copy(tiny_data, tmp_path)
    shard = list_shards(data)[-1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # an interrupted copy
    problems = verify(data, progress=False).problems
    assert any(p.startswith(f"{shard.name}: unreadable tar") for p in problems), problems
    readable = {s.key for s in build_manifest(shard).samples}  # the samples before the cut (a warning says so)
    lost = [e["key"] for e in read_index(data) if e["shard"] == shard.name and e["key"] not in readable]
    assert lost and all(any(f"index.json: {k} is listed in {shard.name}" in p for p in problems) for k in lost)
