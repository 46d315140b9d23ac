"""Write the shard set: ``DATA/shards/<split>-NNNNNN.tar`` (+ ``.idx``, manifest) and ``DATA/index.json``.

The writer of the on-disk format described in ingest/FORMAT.md, plus the tar-level walks it
shares with the reader (``list_shards``, ``iter_shard``, ``read_index_file``).
Later stages read through ``rhovid.ingest.reader`` (folders and URLs, one manifest read per
shard, clips by byte ranges), which builds on those walks.

Writes are atomic: a shard is written under a ``.tmp-`` name and renamed when complete, so
a reader (or a rerun after SIGKILL) sees finished shards only. The DALI ``.idx`` (the
``wds2idx`` format) and the manifest are written after the rename. Ctrl-C is held back while a
sample or a shard's close is being written, so an interrupted run finishes the open shard whole.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rhovid.atomic import TMP_PREFIX, atomic_path, atomic_write_json
from rhovid.errors import NotFoundError, UsageError
from rhovid.ingest.manifest import write_manifest
from rhovid.ingest.tar_members import member_groups, parse_json

SHARDS_DIR = "shards"
INDEX_FILE = "index.json"
FORMAT_VERSION = "rhovid-shards/1"
log = logging.getLogger(__name__)
_SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<num>\d{6})\.tar$")


# ----------------------------------------------------------------------------- readers


def shards_dir(data: str | os.PathLike) -> Path:
    return Path(data) / SHARDS_DIR


def list_shards(data: str | os.PathLike, split: str | None = None) -> list[Path]:
    """Finished shards of ``DATA`` (optionally of one split), sorted by name."""
    folder = shards_dir(data)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and (split is None or m["split"] == split):
            out.append(p)
    return sorted(out)


def shard_name(path: str | os.PathLike) -> str:
    """``.../train-000003.tar`` -> ``train-000003`` (the box store's group name)."""
    name = Path(path).name
    return name[: -len(".tar")] if name.endswith(".tar") else name


def iter_shard(path: str | os.PathLike) -> Iterator[dict]:
    """Samples of one shard in shard order: ``{"__key__": str, "mp4": bytes, "json": dict}``.

    ``json`` members are parsed, others are returned as bytes under their extension. Strict
    (ingest's resume scan and the tests rely on it): a truncated shard raises
    ``tarfile.ReadError``, a damaged json ``ValueError``. The loader reads clips by byte ranges
    instead (``rhovid.ingest.reader.ShardReader``).
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
    """Sample keys of one shard in shard order, from its tar headers alone (strict, like ``iter_shard``)."""
    with tarfile.open(path, mode="r:") as tar:
        return [key for key, _ in member_groups(tar, path)]


def read_index(data: str | os.PathLike) -> list[dict]:
    """Entries of ``DATA/index.json``, one per sample (see ingest/FORMAT.md).

    Raises:
        FileNotFoundError: ``DATA`` has no index.json (not ingested yet).
    """
    path = Path(data) / INDEX_FILE
    if not path.exists():
        raise NotFoundError(f"{path} not found: run `rhovid ingest SRC --out {data}` first")
    return read_index_file(data)["samples"]


def read_index_file(data: str | os.PathLike) -> dict:
    """The whole ``DATA/index.json`` document (samples, labels, format), or an empty one."""
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


# ----------------------------------------------------------------------------- writers


def index_entry(meta: dict, shard: str) -> dict:
    """The index.json row of a sample (a subset of its json plus the shard file name)."""
    return {
        "key": meta["key"],
        "shard": shard,
        "split": meta["split"],
        "label": meta["label"],
        "label_name": meta["label_name"],
        "num_frames": meta["num_frames"],
        "fps": meta["fps"],
        "duration_s": meta["duration_s"],
        "width": meta["width"],
        "height": meta["height"],
        "source": meta["source"],
    }


def write_index(data: str | os.PathLike, samples: list[dict], labels: list[str]) -> None:
    """Atomically (re)write ``DATA/index.json``; samples sorted by shard, then shard order."""
    samples = sorted(samples, key=lambda e: e["shard"])  # stable: keeps the order within a shard
    atomic_write_json(
        Path(data) / INDEX_FILE,
        {"format": FORMAT_VERSION, "labels": list(labels), "samples": samples},
        indent=1,
    )
    os.chmod(Path(data) / INDEX_FILE, 0o644)


IDX_VERSION = "v1.2"
"""The DALI webdataset index format written by ``write_idx`` (DALI's ``wds2idx``, 2.4)."""


def write_idx(tar_path: str | os.PathLike) -> Path:
    """Write the DALI index ``<shard>.idx`` next to ``tar_path``.

    The format is ``wds2idx``'s (a line ``v1.2 <samples>``, then per sample its members as
    ``ext offset size name``, offset = first payload byte), byte for byte on the shards
    ``ShardWriter`` writes (flat names, regular files; tests compare the two), from the same
    header walk as the readers. It is written here from the tar headers rather than by
    ``wds2idx``, which lists the tar with GNU ``tar`` subprocesses: a Ctrl-C reaches those too
    and could end an index early.
    """
    tar_path = Path(tar_path)
    text = idx_text(tar_path)
    idx_path = tar_path.with_suffix(".idx")
    with atomic_path(idx_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return idx_path


def idx_text(tar_path: str | os.PathLike) -> str:
    """The ``.idx`` contents ``write_idx`` writes for the tar at ``tar_path``."""
    with tarfile.open(tar_path, mode="r:") as tar:
        samples = [[f"{m.name.partition('.')[2]} {m.offset_data} {m.size} {m.name}" for m in members]
                   for _, members in member_groups(tar, tar_path)]
    if not samples:
        raise ValueError(f"{tar_path}: no samples to index")
    return f"{IDX_VERSION} {len(samples)}\n" + "".join(" ".join(b) + "\n" for b in samples)


def next_shard_number(data: str | os.PathLike, split: str) -> int:
    """1 + the highest shard number of ``split`` already finished (0 when none)."""
    nums = [int(_SHARD_RE.match(p.name)["num"]) for p in list_shards(data, split)]
    return max(nums, default=-1) + 1


@contextlib.contextmanager
def _ctrl_c_held():
    """Hold a Ctrl-C (SIGINT) until the block has run, then raise KeyboardInterrupt.

    A KeyboardInterrupt in the middle of a tar member would leave a cut member that the
    interrupt handler's ``close()`` then seals into a finished shard. Only the main thread can
    set signal handlers; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class ShardWriter:
    """Appends samples to ``<split>-NNNNNN.tar`` shards, cutting by size and count.

    A shard is open under a ``.tmp-`` name until it reaches ``max_bytes`` or ``max_count``
    (or ``close()``), then renamed and indexed; ``on_finish(path, metas)`` is called with
    the finished shard and the json of its samples in order.
    """

    def __init__(self, data, split: str, max_bytes: int, max_count: int | None, on_finish):
        if not re.fullmatch(r"[A-Za-z0-9_]+", split):
            raise ValueError(f"split name {split!r} must be letters, digits or '_'")
        self.folder = shards_dir(data)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.split = split
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.on_finish = on_finish
        self._number = next_shard_number(data, split)
        self._tar: tarfile.TarFile | None = None
        self._file = None
        self._tmp: Path | None = None
        self._metas: list[dict] = []

    def add(self, key: str, mp4: bytes, meta: dict) -> None:
        """Append one sample (``<key>.json`` then ``<key>.mp4``); Ctrl-C waits until it is whole."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        with _ctrl_c_held():
            if self._tar is None:
                self._open()
            payload = json.dumps(meta, sort_keys=False).encode("utf-8")
            self._add_member(f"{key}.json", payload)
            self._add_member(f"{key}.mp4", mp4)
            self._metas.append(meta)
            full = self._file.tell() >= self.max_bytes
            if full or (self.max_count is not None and len(self._metas) >= self.max_count):
                self._close()

    def close(self) -> Path | None:
        """Finish the open shard (if any): close, fsync, rename, write the ``.idx`` and the manifest."""
        with _ctrl_c_held():
            return self._close()

    def _close(self) -> Path | None:
        if self._tar is None:
            return None
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self.folder / f"{self.split}-{self._number:06d}.tar"
        os.replace(self._tmp, final)
        write_idx(final)
        write_manifest(final)
        metas, self._metas = self._metas, []
        self._tar = self._file = self._tmp = None
        self._number += 1
        self.on_finish(final, metas)
        return final

    def abort(self) -> None:
        """Drop the open shard (its samples will be redone by the next run)."""
        if self._tar is not None:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = self._file = self._tmp = None
            self._metas = []

    def _open(self) -> None:
        name = f"{self.split}-{self._number:06d}.tar"
        self._tmp = self.folder / f"{TMP_PREFIX}{name}.{os.getpid()}"
        self._file = open(self._tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w:", format=tarfile.USTAR_FORMAT)

    def _add_member(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mode = 0o644
        info.mtime = int(time.time())
        self._tar.addfile(info, io.BytesIO(payload))
