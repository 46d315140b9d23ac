"""Write the shard set: ``DATA/shards/<split>-NNNNNN.tar`` (+ ``.idx``, manifest) and ``DATA/index.json``.

The writer of the on-disk format described in ingest/FORMAT.md. Everything that reads the
format (the shard list, the tar walks, index.json, manifests and clips by byte ranges) is in
``rhovid.ingest.reader``, which the writer uses to find where it left off.

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
from pathlib import Path

from rhovid.atomic import TMP_PREFIX, atomic_path, atomic_write_json
from rhovid.ingest.manifest import write_manifest
from rhovid.ingest.reader import FORMAT_VERSION, INDEX_FILE, SHARD_RE, list_shards, shards_dir
from rhovid.ingest.tar_members import member_groups

log = logging.getLogger(__name__)


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
    nums = [int(SHARD_RE.match(p.name)["num"]) for p in list_shards(data, split)]
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
