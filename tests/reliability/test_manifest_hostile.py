"""Hostile per-shard manifests (``<shard>.manifest.json.gz``, issue 13, items 6 and 9): the
manifest is input like the tar it describes (a bucket may hold anything), so a reader bounds
its decompressed size and checks every member range against the tar before it reads a byte.

Real shards from a real ingest, the real ``ShardReader``; each bad manifest gives a
``ValueError`` naming it (which the loader turns into skipped, counted samples).
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
import zlib

import pytest

from rhovid.ingest.manifest import MAX_MANIFEST_BYTES, manifest_name
from rhovid.ingest.reader import ShardReader, list_shards


def _shard(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    shard = list_shards(data)[0]
    return shard, shard.with_name(manifest_name(shard.name))


def _rewrite(manifest, edit) -> None:
    doc = json.loads(gzip.decompress(manifest.read_bytes()))
    edit(doc)
    manifest.write_bytes(gzip.compress(json.dumps(doc).encode()))


def _refused(shard, match: str) -> float:
    reader = ShardReader()
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=match) as e:
        reader.manifest(str(shard))
    assert manifest_name(shard.name) in str(e.value)
    reader.close()
    return time.monotonic() - t0


def test_a_gzip_bomb_manifest_stops_at_the_size_limit(tiny_data, tmp_path):
    """~0.3 MB on disk, 1 GiB decompressed: refused after MAX_MANIFEST_BYTES, not decompressed whole."""
    shard, manifest = _shard(tiny_data, tmp_path)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    chunk = b" " * (1 << 20)  # JSON whitespace: a parser would accept all of it
    parts = [z.compress(b'{"format": "rhovid-manifest/1",')]
    parts += [z.compress(chunk) for _ in range(1024)]
    parts += [z.compress(b'"samples": [], "inits": [], "tar_bytes": 0}'), z.flush()]
    manifest.write_bytes(b"".join(parts))
    assert manifest.stat().st_size < 2 << 20 < MAX_MANIFEST_BYTES < 1 << 30
    seconds = _refused(shard, "MAX_MANIFEST_BYTES")
    print(f"{manifest.stat().st_size} bytes, refused in {seconds:.2f} s")


@pytest.mark.parametrize("member", [(10**12, 100), (0, 10**12), (-512, 100)])
def test_member_ranges_outside_the_tar_are_refused(tiny_data, tmp_path, member):
    """A member claiming bytes past the tar's end (or before its start) would read other data or
    ask a server for 10^12 bytes: the manifest is refused before any read."""
    shard, manifest = _shard(tiny_data, tmp_path)
    _rewrite(manifest, lambda doc: doc["samples"][0]["members"].update(mp4=list(member)))
    _refused(shard, "outside the .*-byte tar")


def test_a_deeply_nested_manifest_is_a_value_error(tiny_data, tmp_path):
    """json raises RecursionError for deep nesting, which no reader catches; it becomes ValueError."""
    shard, manifest = _shard(tiny_data, tmp_path)
    manifest.write_bytes(gzip.compress(b"[" * 200_000 + b"]" * 200_000))
    _refused(shard, "RecursionError")


def test_a_sample_meta_that_is_not_an_object_is_refused(tiny_data, tmp_path):
    shard, manifest = _shard(tiny_data, tmp_path)
    _rewrite(manifest, lambda doc: doc["samples"][0].update(meta=[1, 2]))
    _refused(shard, "not an object")
