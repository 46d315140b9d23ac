"""The per-shard manifest ``<shard>.manifest.json.gz``: everything a reader needs before the video bytes.

A remote reader would otherwise pay one GET per sample for the tar's ``<key>.json`` members
(and one per sample for each MP4's init segment). The manifest holds, in one object per
shard: the sample keys in shard order, each member's byte offset and size in the tar, each
sample's json (fragment table included) and the distinct init segments (``ftyp`` + ``moov``,
base64; videos of one size and encoding share one), so after one read per shard a clip costs
one ranged GET of its covering fragments (DESIGN.md decision 8; ingest/FORMAT.md "Manifest").

The tar stays the source of truth: the manifest is derived from it (``build_manifest``),
written beside it by ingest (atomically, after the tar is in place) and checked against it by
``rhovid ingest --verify``. Shards without one (written before it existed) still read
locally: the reader builds it in memory from the tar.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rhovid.atomic import atomic_path
from rhovid.ingest.tar_members import member_groups, parse_json

MANIFEST_FORMAT = "rhovid-manifest/1"
MANIFEST_SUFFIX = ".manifest.json.gz"
MAX_MANIFEST_BYTES = 256 << 20
"""Largest manifest accepted, decompressed (a gzip bomb stops here). A 1 GiB shard of 10 s clips
holds ~3,500 sample jsons and a few distinct inits: a few MB."""


def manifest_name(shard: str) -> str:
    """``train-000003.tar`` -> ``train-000003.manifest.json.gz`` (a file name or a URL)."""
    return (shard[: -len(".tar")] if shard.endswith(".tar") else shard) + MANIFEST_SUFFIX


@dataclass(frozen=True)
class ManifestSample:
    """One sample of a shard as the manifest records it."""

    key: str
    """Sample key (tar member stem)."""
    members: dict
    """Extension -> ``(offset of the first payload byte in the tar, size)``."""
    meta: dict | None
    """The parsed ``<key>.json``; None when it does not parse (then ``error`` says why)."""
    init: bytes | None
    """The MP4's init segment (``mp4[:init_size]``); None when unknown."""
    error: str | None = None
    """Why the sample cannot be read (a damaged json), else None."""


@dataclass(frozen=True)
class Manifest:
    """A shard's samples in shard order (the parsed manifest)."""

    tar_bytes: int
    """Size of the tar the manifest describes."""
    samples: tuple[ManifestSample, ...]

    @functools.cached_property
    def by_key(self) -> dict[str, ManifestSample]:
        """Samples by key (built once)."""
        return {s.key: s for s in self.samples}


MAX_JSON_BYTES = 64 * 2**20
"""Largest sample json a reader parses (a 10-hour video's fragment table is ~2 MB)."""


def build_manifest(tar_path: str | os.PathLike, strict: bool = False) -> Manifest:
    """Read a local shard's headers, json members and init segments into a ``Manifest``.

    Tolerant like the loader: a damaged json gives a sample with ``error``; a truncated tar ends
    the listing at the last whole member group (``rhovid.ingest.tar_members``). With ``strict``
    a cut or damaged tar raises ``tarfile.ReadError`` instead (boxes must not store a cut shard).
    """
    tar_path = Path(tar_path)
    with open(tar_path, "rb") as f:
        samples = tuple(iter_manifest_samples(f, tar_path, strict))
    return Manifest(tar_path.stat().st_size, samples)


def iter_manifest_samples(f, tar_path, strict: bool = False) -> Iterator[ManifestSample]:
    """The ``ManifestSample`` of each member group of the open shard file ``f``, in shard order.

    Work is bounded by the file: every member lies inside it (``member_groups``), a json member
    must parse as an object (nesting included), an init segment is read only when ``init_size``
    fits its mp4. With ``strict`` a cut or damaged tar raises ``tarfile.ReadError`` after the
    samples before the damage (``rhovid ingest --verify`` reports them and the cut).
    """
    with tarfile.open(fileobj=f, mode="r:") as tar:
        for key, members in member_groups(tar, tar_path, tolerant=not strict):
            ranges = {m.name.partition(".")[2]: (m.offset_data, m.size) for m in members}
            meta = init = error = None
            if "json" in ranges:
                off, size = ranges["json"]
                try:
                    # member_groups checked that the member lies inside the file; a legal but huge
                    # json is still refused before it is read
                    if size > MAX_JSON_BYTES:
                        raise ValueError(f"{key}.json: the member claims {size} bytes; a sample json is at most "
                                         f"{MAX_JSON_BYTES} (MAX_JSON_BYTES)")
                    f.seek(off)
                    meta = parse_json(f.read(size), f"{key}.json")
                except ValueError as e:
                    meta, error = None, str(e)
            if error is None and not {"json", "mp4"} <= ranges.keys():  # a group cut short by the damage
                error = f"{key}: json or mp4 member missing"
            if meta is not None and "mp4" in ranges:
                size = meta.get("init_size")
                if type(size) is int and 0 < size <= ranges["mp4"][1]:
                    f.seek(ranges["mp4"][0])
                    init = f.read(size)
            yield ManifestSample(key, ranges, meta, init, error)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The manifest file's contents (ingest/FORMAT.md "Manifest"): gzip of compact JSON, inits
    deduplicated, fragment tables as delta-coded columns. Deterministic (gzip mtime 0)."""
    inits: dict[bytes, int] = {}
    rows = []
    for s in manifest.samples:
        row: dict = {"key": s.key, "members": {ext: list(r) for ext, r in s.members.items()}}
        if s.init is not None:
            row["init"] = inits.setdefault(s.init, len(inits))
        if s.error is not None:
            row["error"] = s.error
        else:
            row["meta"] = _pack_meta(s.meta)
        rows.append(row)
    doc = {"format": MANIFEST_FORMAT, "tar_bytes": manifest.tar_bytes,
           "inits": [base64.b64encode(b).decode("ascii") for b in inits], "samples": rows}
    return gzip.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"), compresslevel=9, mtime=0)


# A 10-minute video has ~1,100 fragment rows (~22 KB as JSON); as delta-coded columns under gzip
# they take ~3 KB, which is what a remote reader pays per sample for its metadata.
_COLUMNS = "fragment_columns"


def _pack_meta(meta: dict) -> dict:
    """``meta`` with a well-formed fragment table replaced by delta-coded columns (exactly invertible)."""
    rows = meta.get("fragments")
    if not (isinstance(rows, list) and rows and all(
            isinstance(r, list) and len(r) == 3 and all(type(v) is int for v in r) for r in rows)):
        return meta  # anything else is kept verbatim (and reported by --verify)
    offsets, firsts, counts = zip(*rows)
    columns = {"offset_deltas": _deltas(offsets), "first_frame_deltas": _deltas(firsts), "num_frames": list(counts)}
    return {(_COLUMNS if k == "fragments" else k): (columns if k == "fragments" else v) for k, v in meta.items()}


def _unpack_meta(meta: dict | None) -> dict | None:
    if not isinstance(meta, dict) or _COLUMNS not in meta:
        return meta
    c = meta[_COLUMNS]
    rows = [list(r) for r in zip(_sums(c["offset_deltas"]), _sums(c["first_frame_deltas"]), c["num_frames"])]
    return {("fragments" if k == _COLUMNS else k): (rows if k == _COLUMNS else v) for k, v in meta.items()}


def _deltas(values) -> list[int]:
    return [values[0], *(b - a for a, b in zip(values, values[1:]))]


def _sums(deltas) -> list[int]:
    out, total = [], 0
    for d in deltas:
        total += int(d)
        out.append(total)
    return out


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Parse manifest bytes read from ``where`` (named in errors).

    A manifest is input like the tar it describes (a bucket may hold anything): it is
    decompressed to at most ``MAX_MANIFEST_BYTES``, and every member must lie inside the
    ``tar_bytes`` it claims (the reader compares those with a local tar's size).

    Raises:
        ValueError: not a manifest of this format, larger than the limit, a row without its
            fields, or a member outside the tar.
    """
    try:
        if data[:2] == b"\x1f\x8b":  # a server may also hand it over already decompressed
            data = _gunzip(data, MAX_MANIFEST_BYTES)
        if len(data) > MAX_MANIFEST_BYTES:
            raise ValueError(f"more than {MAX_MANIFEST_BYTES} bytes (MAX_MANIFEST_BYTES)")
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {doc.get('format') if isinstance(doc, dict) else None!r}, "
                             f"expected {MANIFEST_FORMAT!r}")
        tar_bytes = int(doc["tar_bytes"])
        inits = [base64.b64decode(b) for b in doc["inits"]]
        samples = []
        for row in doc["samples"]:
            members = {str(ext): (int(r[0]), int(r[1])) for ext, r in row["members"].items()}
            for ext, (off, size) in members.items():
                if off < 0 or size < 0 or off + size > tar_bytes:
                    raise ValueError(f"{row['key']}.{ext}: {size} bytes at byte {off}, outside the "
                                     f"{tar_bytes}-byte tar")
            init = inits[row["init"]] if "init" in row else None
            meta = _unpack_meta(row.get("meta"))
            if meta is not None and not isinstance(meta, dict):
                raise ValueError(f"{row['key']}: meta is a JSON {type(meta).__name__}, not an object")
            samples.append(ManifestSample(str(row["key"]), members, meta, init,
                                          None if row.get("error") is None else str(row["error"])))
        return Manifest(tar_bytes, tuple(samples))
    except (ValueError, KeyError, TypeError, IndexError, OSError, EOFError, AttributeError, RecursionError,
            zlib.error) as e:
        raise ValueError(f"{where}: not a valid shard manifest ({type(e).__name__}: {e}); rebuild it with "
                         "`rhovid ingest --out DATA` on a local copy (missing or stale manifests are rewritten)") from None


def _gunzip(data: bytes, limit: int) -> bytes:
    """``gzip.decompress(data)``, refusing output beyond ``limit`` bytes (a gzip bomb)."""
    out = gzip.GzipFile(fileobj=io.BytesIO(data)).read(limit + 1)
    if len(out) > limit:
        raise ValueError(f"decompresses to more than {limit} bytes (MAX_MANIFEST_BYTES)")
    return out


def write_manifest(tar_path: str | os.PathLike) -> Path:
    """Write ``<shard>.manifest.json.gz`` beside a local shard, atomically; returns its path."""
    tar_path = Path(tar_path)
    path = tar_path.with_name(manifest_name(tar_path.name))
    data = manifest_bytes(build_manifest(tar_path))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
