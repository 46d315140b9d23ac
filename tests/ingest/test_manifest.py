"""The per-shard manifest: written by ingest, round-trips, agrees with the tar, and is optional."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from rhovid.ingest.fragments import slice_clips
from rhovid.ingest.manifest import build_manifest, manifest_bytes, manifest_name, parse_manifest
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import ShardReader, iter_shard, list_shards, split_shards

FRAMES = [[0, 4, 8], [30, 34], [100, 110, 119]]


def _manifest_path(shard):
    return shard.with_name(manifest_name(shard.name))


def test_ingest_writes_a_manifest_that_matches_the_tar(tiny_data):
    for shard in list_shards(tiny_data):
        raw = _manifest_path(shard).read_bytes()
        m = parse_manifest(raw, str(shard))
        assert manifest_bytes(m) == raw  # write -> read -> write is byte-identical
        assert m == build_manifest(shard) and m.tar_bytes == shard.stat().st_size
        full = list(iter_shard(shard))
        assert [s.key for s in m.samples] == [s["__key__"] for s in full]
        idx = shard.with_suffix(".idx").read_text().splitlines()[1:]
        for s, sample, line in zip(m.samples, full, idx):
            assert s.meta == sample["json"] and s.error is None
            assert s.init == sample["mp4"][: sample["json"]["init_size"]]
            # member offsets and sizes are the tar's (the same the DALI .idx lists)
            parts = line.split()
            assert {parts[k]: (int(parts[k + 1]), int(parts[k + 2])) for k in (0, 4)} == s.members
            with open(shard, "rb") as f:
                f.seek(s.members["mp4"][0])
                assert f.read(s.members["mp4"][1]) == sample["mp4"]
        # videos of one size and encoding share one init segment, stored once
        doc = json.loads(gzip.decompress(raw))
        assert len(doc["inits"]) == 1 and {r["init"] for r in doc["samples"]} == {0}
        # fragment tables are stored as delta-coded columns and come back exactly
        cols = doc["samples"][0]["meta"]["fragment_columns"]
        assert cols["num_frames"][0] == 16 and set(cols["first_frame_deltas"][1:]) == {16}
        assert parse_manifest(gzip.decompress(raw), "plain") == m  # an already decompressed copy reads too


def test_odd_fragment_tables_are_kept_verbatim(tiny_data):
    """A fragment table that is not rows of three ints is stored as it is (verify reports it)."""
    from rhovid.ingest.manifest import Manifest, ManifestSample

    odd = {"key": "k", "fragments": [[1, 2], "x"], "num_frames": 3}
    m = Manifest(10, (ManifestSample("k", {"json": (0, 5)}, odd, None),))
    assert parse_manifest(manifest_bytes(m), "m") == m


def test_a_damaged_manifest_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"x\.manifest\.json: not a valid shard manifest"):
        parse_manifest(b'{"format": "rhovid-manifest/1", "samples": [{}]}', str(tmp_path / "x.manifest.json"))
    with pytest.raises(ValueError, match="expected 'rhovid-manifest/1'"):
        parse_manifest(b"[1, 2]", "y")


def test_reader_slices_equal_in_memory_slices_with_and_without_manifest(tiny_data, tmp_path):
    """Shards written before manifests existed read the same (the reader walks the tar), and the
    next ingest into that DATA writes the missing manifests."""
    old = tmp_path / "old"
    shutil.copytree(tiny_data, old)
    for shard in list_shards(old):
        _manifest_path(shard).unlink()
    for data in (tiny_data, old):
        reader = ShardReader()
        for url, n in split_shards(data):
            manifest = reader.manifest(url)
            assert len(manifest.samples) == n
            full = {s["__key__"]: s for s in iter_shard(url)}
            for s in manifest.samples:
                assert reader.read_clips(url, s, FRAMES) == slice_clips(full[s.key]["mp4"], s.meta, FRAMES)
        reader.close()
    rep = ingest([], old, IngestConfig(short_side=112, gop=16, shard_count=3, workers=0, progress=False))
    assert rep.ingested == 0
    assert all(_manifest_path(p).read_bytes() == _manifest_path(tiny_data / "shards" / p.name).read_bytes()
               for p in list_shards(old))


def test_a_stale_local_manifest_is_not_trusted(tiny_data, tmp_path):
    """A tar cut short after its manifest was written: the reader uses the tar's own headers."""
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    shard = list_shards(data)[0]
    full = build_manifest(shard)
    cut = full.samples[-1].members["mp4"]
    with open(shard, "r+b") as f:
        f.truncate(cut[0] + cut[1] // 2)
    reader = ShardReader()
    got = reader.manifest(str(shard))
    assert got != full and got.tar_bytes == shard.stat().st_size
    # the cut sample fails alone (the loader skips and counts it): its mp4 lies past the end of the file
    assert "mp4" not in got.samples[-1].members and "member missing" in got.samples[-1].error
    assert reader.read_clips(str(shard), got.samples[0], FRAMES)


def test_a_hostile_fragment_table_reads_nothing_outside_its_member(tiny_data):
    """A json whose fragment offsets point past its mp4 (or claim 10^12 bytes) fails that sample
    with a clear error before any read, instead of reading other samples' bytes or exhausting memory."""
    from dataclasses import replace

    shard = str(list_shards(tiny_data)[0])
    reader = ShardReader()
    good = reader.manifest(shard).samples[0]
    for frags in ([[0, 0, 16], [10**12, 16, 16]], [[500, 0, 16], [100, 16, 16]]):
        bad = replace(good, meta={**good.meta, "fragments": frags, "num_frames": 32})
        before = reader.fetcher.stats.requests
        with pytest.raises(ValueError, match="outside its .*-byte mp4"):
            reader.read_clips(shard, bad, [[0, 1], [20, 21]])
        assert reader.fetcher.stats.requests == before
    reader.close()


def test_a_remote_shard_without_manifest_reads_its_idx_and_jsons(tiny_data, nginx):
    """Shards uploaded before manifests existed: over HTTP the reader takes the ``.idx`` and then each
    json member by its (offset, size) from it; the samples equal the local manifest's."""
    served = nginx.root / "no-manifest"
    shutil.copytree(tiny_data, served, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    for shard in list_shards(served):
        _manifest_path(shard).unlink()
    url = f"{nginx.url}/no-manifest"
    reader = ShardReader()
    try:
        for (remote, n), local in zip(split_shards(url), list_shards(tiny_data)):
            got, want = reader.manifest(remote), build_manifest(local)
            assert len(got.samples) == n == len(want.samples)
            assert [(s.key, s.members, s.meta, s.error) for s in got.samples] == \
                [(s.key, s.members, s.meta, s.error) for s in want.samples]
    finally:
        reader.close()


def test_a_remote_idx_claiming_a_huge_json_is_not_read(tiny_data, nginx):
    """A hostile ``.idx`` claiming a 10^12-byte json: that sample gets an error naming the bound, the
    request is never sent (it would be a 1 TB read), and the other samples read as usual."""
    served = nginx.root / "huge-idx"
    shutil.copytree(tiny_data, served, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    shard = list_shards(served)[0]
    _manifest_path(shard).unlink()
    idx = shard.with_suffix(".idx")
    lines = idx.read_text().splitlines()
    parts = lines[1].split()
    j = parts.index("json")
    parts[j + 2] = str(10**12)
    idx.write_text("\n".join([lines[0], " ".join(parts), *lines[2:]]) + "\n")
    reader = ShardReader()
    try:
        got = reader.manifest(f"{nginx.url}/huge-idx/shards/{shard.name}")
        assert "MAX_JSON_BYTES" in got.samples[0].error and got.samples[0].meta is None
        assert all(s.error is None and s.meta is not None for s in got.samples[1:]) and len(got.samples) > 1
        assert reader.fetcher.stats.bytes < shard.stat().st_size
    finally:
        reader.close()
