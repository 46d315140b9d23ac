"""Read a DATA at a path or URL: index, shard list, manifests, and clip slices by byte ranges.

The reading side of the shard format (ingest/FORMAT.md) for every later stage — train, evaluate,
store, verify — and for the writer when it resumes (``rhovid.ingest.shards`` writes; this module
reads). DESIGN.md decision 8: a shard
costs one metadata read (its manifest, ``rhovid.ingest.manifest``), and a clip costs one
ranged read of its covering fragments, since the manifest carries the init segments. Reads
go through a ``RangeFetcher`` (many in flight, retried, counted), so the same code serves a
local disk, S3, GCS or an HTTP server.

Shards without a manifest still read: locally the reader walks the tar's headers (as before
manifests existed); remotely it reads the DALI ``.idx`` and then each sample's json member
(one read per sample, in parallel) and warns once per shard.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from rhovid import storage
from rhovid.errors import NotFoundError, UsageError
from rhovid.ingest.fragments import ClipSlice, clip_groups, fragment_bytes, slices_of_groups
from rhovid.ingest.manifest import (
    MAX_JSON_BYTES,
    Manifest,
    ManifestSample,
    build_manifest,
    manifest_name,
    parse_manifest,
)
from rhovid.ingest.tar_members import member_groups, parse_json
from rhovid.ranged import RangeFetcher, coalesce, prefetch

log = logging.getLogger(__name__)
SHARDS_DIR = "shards"
INDEX_FILE = "index.json"
FORMAT_VERSION = "rhovid-shards/1"
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<num>\d{6})\.tar$")
"""A finished shard's file name (``<split>-NNNNNN.tar``); temporaries never match."""


# ----------------------------------------------------------------------------- local folders and tars


def shards_dir(data: str | os.PathLike) -> Path:
    return Path(data) / SHARDS_DIR


def list_shards(data: str | os.PathLike, split: str | None = None) -> list[Path]:
    """Finished shards of a local ``DATA`` (optionally of one split), sorted by name."""
    folder = shards_dir(data)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = SHARD_RE.match(p.name)
        if m and (split is None or m["split"] == split):
            out.append(p)
    return sorted(out)


def shard_name(path: str | os.PathLike) -> str:
    """``.../train-000003.tar`` -> ``train-000003`` (the box store's group name)."""
    name = Path(path).name
    return name[: -len(".tar")] if name.endswith(".tar") else name


def iter_shard(path: str | os.PathLike) -> Iterator[dict]:
    """Samples of one local shard in shard order: ``{"__key__": str, "mp4": bytes, "json": dict}``.

    ``json`` members are parsed, others are returned as bytes under their extension. Strict
    (ingest's resume scan and the tests rely on it): a truncated shard raises
    ``tarfile.ReadError``, a damaged json ``ValueError``. The loader reads clips by byte ranges
    instead (``ShardReader``).
    """
    with tarfile.open(path, mode="r:") as tar:
        for key, members in member_groups(tar, path):
            sample: dict = {"__key__": key}
            for m in members:
                ext = m.name.partition(".")[2]
                payload = tar.extractfile(m).read()
                sample[ext] = parse_json(payload, m.name) if ext == "json" else payload
            yield sample


def shard_keys(path: str | os.PathLike) -> list[str]:
    """Sample keys of one local shard in shard order, from its tar headers alone (strict, like ``iter_shard``)."""
    with tarfile.open(path, mode="r:") as tar:
        return [key for key, _ in member_groups(tar, path)]


def read_index_file(data: str | os.PathLike) -> dict:
    """The whole ``DATA/index.json`` document of a local DATA (samples, labels, format), or an empty one."""
    path = Path(data) / INDEX_FILE
    if not path.exists():
        return {"format": FORMAT_VERSION, "labels": [], "samples": []}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list):
            raise ValueError("no 'samples' list")
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedIndexError(
            f"{path} is damaged ({e}); the shards hold everything in it: rerun `rhovid ingest` with the same "
            f"sources and --out {data} to rebuild it"
        ) from e
    return doc


class DamagedIndexError(UsageError):
    """index.json exists but does not parse (ingest rebuilds it from the shards)."""


# ----------------------------------------------------------------------------- folders and URLs


def read_index_doc(data: str | os.PathLike, fetcher: RangeFetcher | None = None) -> dict:
    """The whole ``DATA/index.json`` of a local or remote DATA (remote: read through ``fetcher``,
    retried and counted; a new one when None).

    Raises:
        NotFoundError: DATA has no index.json (not ingested yet); a ``FileNotFoundError``.
        ValueError: it does not parse (naming the file; locally a ``DamagedIndexError``).
    """
    if not storage.is_remote(data):
        path = storage.local_path(data) / INDEX_FILE
        if not path.exists():
            raise NotFoundError(f"{path} not found: run `rhovid ingest SRC --out {data}` first")
        return read_index_file(storage.local_path(data))
    url = storage.join(data, INDEX_FILE)
    try:
        raw = (fetcher or RangeFetcher()).get_all(url)
    except FileNotFoundError:
        raise NotFoundError(f"{url} not found: run `rhovid ingest SRC --out {data}` first") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list):
            raise ValueError("no 'samples' list")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{url} is damaged ({e}); rerun `rhovid ingest` with the same sources and --out {data}") \
            from None
    return doc


def read_index(data: str | os.PathLike, fetcher: RangeFetcher | None = None) -> list[dict]:
    """Entries of ``DATA/index.json``, one per sample (ingest/FORMAT.md)."""
    return read_index_doc(data, fetcher)["samples"]


def shard_url(data: str | os.PathLike, shard: str) -> str:
    """Path or URL of shard file ``shard`` (``train-000000.tar``) of DATA."""
    return storage.join(data, SHARDS_DIR, shard)


def split_shards(data: str | os.PathLike, split: str | None = None,
                 fetcher: RangeFetcher | None = None) -> list[tuple[str, int]]:
    """``(path or URL, samples)`` of every shard of ``split`` that index.json lists, sorted by name.

    Readers take the shard list from index.json rather than a listing: an HTTP server need not
    list folders, and a shard that index.json does not list holds nothing a reader may use.
    """
    counts: dict[str, int] = collections.Counter(
        e["shard"] for e in read_index(data, fetcher) if split is None or e["split"] == split)
    return [(shard_url(data, name), counts[name]) for name in sorted(counts)]


def data_shards(data: str | os.PathLike, split: str | None = None) -> list[str]:
    """Paths or URLs of the finished shards of DATA (optionally of one split), sorted by name.

    Local: the tars in ``DATA/shards`` (as ``list_shards``). Remote: a
    listing where the store offers one (S3, GCS), else the shards index.json names (HTTP).
    """
    if not storage.is_remote(data):
        return [str(p) for p in list_shards(storage.local_path(data), split)]
    if storage.protocol(data) in ("http", "https"):
        return [url for url, _ in split_shards(data, split)]
    names = storage.list_names(storage.join(data, SHARDS_DIR))
    return [shard_url(data, n) for n in names
            if n.endswith(".tar") and (split is None or n.rsplit("-", 1)[0] == split)]


@contextlib.contextmanager
def local_copy(url: str, fetcher: RangeFetcher | None = None) -> Iterator[Path]:
    """A local path holding the bytes of ``url``: the file itself, or a temporary download removed
    afterwards (``verify`` reads every byte of a shard anyway, and tarfile wants a seekable file).
    The download goes through ``fetcher`` (retried and counted; a new one when None)."""
    if not storage.is_remote(url):
        yield storage.local_path(url)
        return
    with tempfile.TemporaryDirectory(prefix="rhovid-shard-") as tmp:
        path = Path(tmp) / storage.name(url)
        (fetcher or RangeFetcher()).download(url, path)
        yield path


class ShardReader:
    """Manifests and clip slices of shards at paths or URLs, through one ``RangeFetcher``.

    Args:
        fetcher: the fetcher to read through (a new one with defaults when None).
        cache: manifests kept in memory (least recently used dropped first). A parsed manifest
            of a 1 GiB shard of 10 s clips holds ~3,500 sample jsons (tens of MB as Python
            objects), and a loader worker reads its shards one after another, so a few suffice;
            a worker whose shards all fit reads each manifest once per run instead of per epoch.
        strict: a local shard is read from its tar alone (a manifest beside it is not trusted:
            one of the same size may describe other jsons), and must be whole: a cut or damaged
            tar raises ``tarfile.ReadError`` instead of reading as a shorter shard (``rhovid
            boxes`` must not store a cut shard as complete; issue 13, item 11).
    """

    def __init__(self, fetcher: RangeFetcher | None = None, cache: int = 4, strict: bool = False):
        self.fetcher = fetcher or RangeFetcher()
        self.strict = strict
        self._cache: collections.OrderedDict[str, Manifest] = collections.OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()

    def manifest(self, shard: str) -> Manifest:
        """The shard's manifest: one read, cached (see the module docstring for shards without one).

        Raises:
            FileNotFoundError: neither the shard nor its manifest exists.
            ValueError: the manifest is damaged (naming it).
        """
        with self._lock:
            if shard in self._cache:
                self._cache.move_to_end(shard)
                return self._cache[shard]
        found = self._load(shard)
        with self._lock:
            self._cache[shard] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _load(self, shard: str) -> Manifest:
        url = manifest_name(shard)
        local = not storage.is_remote(shard)
        if local and self.strict:  # the tar's own headers and jsons, whatever a manifest beside it says
            return build_manifest(storage.local_path(shard), strict=True)
        try:
            found = parse_manifest(self.fetcher.get_all(url), url)
            # a local tar changed after its manifest was written (a copy cut short, a hand edit):
            # its own headers are the truth (a remote one is checked by `rhovid ingest --verify`)
            if not local or found.tar_bytes == storage.local_path(shard).stat().st_size:
                return found
            log.warning("%s does not match %s (stale); reading the tar's headers instead", url, shard)
        except FileNotFoundError:
            pass
        if local:
            return build_manifest(storage.local_path(shard), strict=self.strict)
        return self._manifest_from_idx(shard)

    def _manifest_from_idx(self, shard: str) -> Manifest:
        """A remote shard without manifest: its ``.idx`` (one read), then every json member."""
        idx_url = shard[: -len(".tar")] + ".idx" if shard.endswith(".tar") else shard + ".idx"
        log.warning("%s has no manifest: reading its .idx and one json per sample; rerun ingest on a local "
                    "copy to write manifests (one read per shard)", shard)
        lines = self.fetcher.get_all(idx_url).decode("utf-8").splitlines()[1:]
        rows = []
        for line in lines:
            parts = line.split()
            members = {}
            for k in range(0, len(parts) - 3, 4):
                ext, off, size, name = parts[k:k + 4]
                members[ext] = (int(off), int(size))
            rows.append((parts[3].partition(".")[0] if len(parts) >= 4 else "?", members))
        # the .idx gives (offset, size); the fetcher reads [start, end) ranges. A json claiming more
        # than MAX_JSON_BYTES is not read (the sample gets the error), as when a manifest is built.
        span = {i: (m["json"][0], m["json"][0] + m["json"][1]) for i, (_, m) in enumerate(rows)
                if "json" in m and 0 <= m["json"][1] <= MAX_JSON_BYTES}
        jsons = self.fetcher.submit(shard, list(set(span.values()))).result()
        samples = []
        for i, (key, members) in enumerate(rows):
            meta, error = None, None
            try:
                if "json" in members and i not in span:
                    raise ValueError(f"the member claims {members['json'][1]} bytes; a sample json is at "
                                     f"most {MAX_JSON_BYTES} (MAX_JSON_BYTES)")
                meta = parse_json(jsons[span[i]], f"{key}.json")
            except (KeyError, ValueError) as e:
                error = f"{key}.json: missing or invalid ({type(e).__name__}: {e})"
            samples.append(ManifestSample(key, members, meta, None, error))
        return Manifest(-1, tuple(samples))

    def submit_clips(self, shard: str, sample: ManifestSample, frames: list[list[int]]) -> Future:
        """Start reading the slices of ``frames`` (per clip, global frame indices) of ``sample``.

        One ranged read per group of overlapping clips (groups that touch share a read), plus
        the init segment when the manifest lacks it. The future gives ``list[ClipSlice]``
        (or raises ``FetchError``, ``IndexError`` for frames outside the video).
        """
        meta = sample.meta
        off, size = sample.members["mp4"]
        clips = [list(fr) for fr in frames]
        groups = clip_groups(meta, clips)
        spans = [fragment_bytes(meta, *g.fragments, size) for g in groups]
        init_size = meta["init_size"]
        # a hostile fragment table must not make us read outside the member (or 10^12 bytes)
        if not all(type(v) is int and 0 <= v <= size for span in spans for v in span) or \
                not all(a < b for a, b in spans) or not (type(init_size) is int and 0 < init_size <= size):
            raise ValueError(f"{sample.key}: fragment table or init_size outside its {size}-byte mp4")
        wanted = [(off + a, off + b) for a, b in spans]
        init_range = None if sample.init is not None else (off, off + init_size)
        reads = coalesce(wanted + ([init_range] if init_range else []))
        pending = self.fetcher.submit(shard, reads)
        out: Future = Future()

        def assemble(f: Future) -> None:
            try:
                got = f.result()
                init = sample.init if init_range is None else _cut(got, reads, *init_range)
                pieces = [_cut(got, reads, a, b) for a, b in wanted]
                out.set_result(slices_of_groups(meta, clips, groups, pieces, init))
            except Exception as e:  # noqa: BLE001 - handed to the consumer
                out.set_exception(e)

        pending.add_done_callback(assemble)
        return out

    def read_clips(self, shard: str, sample: ManifestSample, frames: list[list[int]]) -> list[ClipSlice]:
        """``submit_clips`` and wait."""
        return self.submit_clips(shard, sample, frames).result()

    def iter_samples(self, shard: str, ahead: int = 4) -> Iterator[dict]:
        """Every sample of a shard, whole: ``{"__key__", "json", "mp4": bytes}`` in shard order, the
        next ``ahead`` videos read meanwhile (one ranged read each). Strict, like ``iter_shard``: a
        damaged sample raises ``ValueError`` naming it."""
        samples = self.manifest(shard).samples

        def start(sample: ManifestSample) -> Future:
            if sample.error is not None:
                raise ValueError(f"{shard}: {sample.error}")
            off, size = sample.members["mp4"]
            return self.fetcher.submit(shard, [(off, off + size)])

        for sample, fut in prefetch(samples, start, ahead):
            yield {"__key__": sample.key, "json": sample.meta, "mp4": next(iter(fut.result().values()))}

    def read_member(self, shard: str, sample: ManifestSample, ext: str = "mp4") -> bytes:
        """A whole member of a sample (one ranged read): box priors and verify need every frame."""
        off, size = sample.members[ext]
        return self.fetcher.get(shard, off, off + size)

    def close(self) -> None:
        self.fetcher.close()


def _cut(got: dict, reads: list[tuple[int, int]], a: int, b: int) -> bytes:
    """Bytes ``a..b-1`` out of the coalesced reads that hold them."""
    for r in reads:
        if r[0] <= a and b <= r[1]:
            return got[r][a - r[0] : b - r[0]]
    raise AssertionError(f"range {a}..{b} not in the reads {reads}")


__all__ = ["FORMAT_VERSION", "INDEX_FILE", "SHARDS_DIR", "SHARD_RE", "DamagedIndexError", "ShardReader", "data_shards",
           "iter_shard", "list_shards", "local_copy", "read_index", "read_index_doc", "read_index_file", "shard_keys",
           "shard_name", "shard_url", "shards_dir", "split_shards"]
