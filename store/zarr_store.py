"""The Zarr box store: DATA/boxes.zarr/<shard>/<box set>/ (store/FORMAT.md).

One group per (shard, box set), written by exactly one worker in one go and marked
``complete`` last (DESIGN.md decision 5: zarr does no locking, so writers never share a
group). Every array is a single chunk, so ``BoxStore.load`` reads a shard's set in one read
per array and ``ShardBoxes.lookup`` answers from memory in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhovid import storage
from rhovid.errors import UnknownNameError, UsageError
from rhovid.store.boxsets import param_text, read_registry, resolve_set

ZARR_DIR = "boxes.zarr"
ARRAYS = ("boxes", "count", "frame", "video_offsets")


def store_root(data: str | Path) -> Path | str:
    """DATA/boxes.zarr: a Path for a local DATA, a URL string for a remote one (s3://, gs://)."""
    if storage.is_remote(data):
        return storage.join(data, ZARR_DIR)
    return storage.local_path(data) / ZARR_DIR


def open_group(root: Path | str, path: str = "", mode: str = "r"):
    """A zarr 3 group under ``root`` (a folder, or a URL through zarr's fsspec store)."""
    return storage.open_zarr_group(root, path, mode)


def ensure_root(data: str | Path) -> Path | str:
    """Create the root group DATA/boxes.zarr if needed (driver only, before workers start)."""
    root = store_root(data)
    if not storage.exists(storage.join(root, "zarr.json")):
        open_group(root, mode="a")
    return root


@dataclass
class ShardRows:
    """All rows of one shard's box set, in shard order (one row per stored frame)."""

    boxes: np.ndarray
    """(N, K, 4) float32 x0, y0, x1, y1 in stored-video pixels; rows past count are 0."""
    count: np.ndarray
    """(N,) int32 valid boxes per row."""
    frame: np.ndarray
    """(N,) int32 frame index within its video."""
    video_offsets: np.ndarray
    """(V+1,) int64: rows of video v are video_offsets[v]:video_offsets[v+1]."""
    score: np.ndarray | None = None
    """(N, K) float32 detector scores (rows past count are 0), None for segmenters."""


def group_status(root: Path | str, shard: str, set_name: str) -> str | None:
    """None (no group), "partial" (interrupted or unreadable) or "complete"."""
    if storage.is_remote(root):
        # an object store has no folders: a group exists once its zarr.json does (written first)
        if not storage.exists(storage.join(root, shard, set_name, "zarr.json")):
            return None
    elif not (Path(root) / shard / set_name).exists():
        return None
    try:
        g = open_group(root, f"{shard}/{set_name}", mode="r")
        return "complete" if g.attrs.get("complete") is True else "partial"
    except Exception:  # torn metadata from a killed writer counts as partial: recompute
        return "partial"


class SimulatedCrash(RuntimeError):
    """Test hook: raised by ``write_shard_set`` after the arrays, before ``complete``."""


def write_shard_set(
    root: Path, shard: str, set_name: str, rows: ShardRows, attrs: dict, crash_before_complete: bool = False
) -> None:
    """Write one shard's box set group, replacing any partial one, then mark it complete.

    Refuses to touch a complete group (box sets are never overwritten).
    ``crash_before_complete`` (tests) raises ``SimulatedCrash`` where a killed writer stops.
    """
    if group_status(root, shard, set_name) == "complete":
        raise FileExistsError(f"{root}/{shard}/{set_name} is complete; box sets are never overwritten")
    storage.remove_tree(storage.join(root, shard, set_name))  # leftover of an interrupted writer
    g = open_group(root, f"{shard}/{set_name}", mode="w")
    arrays = {name: getattr(rows, name) for name in ARRAYS}
    if rows.score is not None:
        arrays["score"] = rows.score
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        g.create_array(name, data=arr, chunks=tuple(max(1, s) for s in arr.shape))
    if crash_before_complete:
        raise SimulatedCrash(f"simulated crash writing {shard}/{set_name} (test hook)")
    # complete goes last: a crash before this line leaves a partial group that resume rewrites.
    g.attrs.update({**attrs, "complete": True})


@dataclass
class ShardBoxes:
    """One shard's box set in memory, with per-video views for fast lookup."""

    shard: str
    set_name: str
    rows: ShardRows
    attrs: dict

    def __post_init__(self) -> None:
        off = self.rows.video_offsets
        self.keys: list[str] = list(self.attrs["keys"])
        self._start = {k: int(off[i]) for i, k in enumerate(self.keys)}
        self._frames = {k: self.rows.frame[off[i] : off[i + 1]] for i, k in enumerate(self.keys)}

    def stored_frames(self, key: str) -> np.ndarray:
        """(R,) frame indices of video ``key`` that have stored boxes, increasing (R >= 1)."""
        if key not in self._frames:
            why = next((s["reason"] for s in self.attrs.get("skipped", []) if s["key"] == key), None)
            if why is not None:
                raise KeyError(f"video {key!r} of shard {self.shard} was skipped by box set {self.set_name}: {why}")
            raise KeyError(f"video {key!r} is not in shard {self.shard} (box set {self.set_name})")
        return self._frames[key]

    def lookup(self, key: str, frames) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Boxes of video ``key`` at the stored frames nearest to ``frames``.

        Args:
            key: sample key (must be in this shard).
            frames: (F,) frame indices within the video.

        Returns:
            boxes (F, K, 4) float32 x0 y0 x1 y1 in stored-video pixels, count (F,) int32, and
            score (F, K) float32 or None. Ties between two stored frames take the earlier one.
        """
        stored = self.stored_frames(key)  # every video has frame 0 stored, so never empty
        q = np.asarray(frames, dtype=np.int64).reshape(-1)
        idx = np.searchsorted(stored, q)  # first stored frame >= q
        hi = np.minimum(idx, len(stored) - 1)
        lo = np.maximum(idx - 1, 0)
        pick = np.where(stored[hi] - q < q - stored[lo], hi, lo) + self._start[key]
        score = None if self.rows.score is None else self.rows.score[pick]
        return self.rows.boxes[pick], self.rows.count[pick], score


class BoxStore:
    """Reader of DATA/boxes.zarr."""

    def __init__(self, data: str | Path):
        self.data = data if storage.is_remote(data) else Path(data)
        self.root = store_root(data)

    def registry(self) -> dict:
        return read_registry(self.root)

    def resolve(self, name: str) -> str:
        """Set name from a set name, alias or method name (KeyError listing available sets)."""
        return resolve_set(self.registry(), name)

    def list_sets(self) -> list[dict]:
        """Every registered set: its registry entry plus name, aliases and complete shard names."""
        reg = self.registry()
        out = []
        for name, entry in sorted(reg["sets"].items()):
            done = [s for s in self._shard_groups() if group_status(self.root, s, name) == "complete"]
            aliases = sorted(a for a, n in reg["aliases"].items() if n == name)
            out.append({**entry, "name": name, "aliases": aliases, "shards_done": done})
        return out

    def _shard_groups(self) -> list[str]:
        return [name for name in storage.list_dirs(self.root)
                if storage.exists(storage.join(self.root, name, "zarr.json"))]

    def attrs(self, shard: str, set_name: str) -> dict:
        """Attributes of one complete shard group (see ``load`` for errors)."""
        return self._open(shard, set_name).attrs.asdict()

    def load(self, shard: str, set_name: str) -> ShardBoxes:
        """Read all arrays of one shard's box set.

        Args:
            shard: shard name, e.g. "train-000000" (``rhovid.ingest.reader.shard_name``).
            set_name: set name, alias, or a method name with exactly one set.

        Raises:
            KeyError: unknown set (lists available sets), or shard without (complete) set
                (names the shard and the command that computes it).
        """
        g = self._open(shard, set_name)
        try:
            arrays = {name: g[name][...] for name in (*ARRAYS, "score") if name in g}
        except Exception as e:  # a chunk damaged on disk (truncated copy, bit rot): say which and how to mend
            name = g.attrs["set"]
            raise UsageError(
                f"box set {name} of shard {shard} is damaged ({type(e).__name__}: {e}); delete "
                f"{storage.join(self.root, shard, name)} and recompute it with: {self._compute_command(name)}"
            ) from e
        return ShardBoxes(shard, g.attrs["set"], ShardRows(**arrays), g.attrs.asdict())

    def _compute_command(self, name: str) -> str:
        entry = self.registry()["sets"][name]
        params = " ".join(f"--param {k}={param_text(v)}" for k, v in entry.get("params_hashed", {}).items())
        return (f"rhovid boxes {self.data} --method {entry['method']} {params} "
                f"--box-fps {entry['box_fps']:g} --max-boxes {entry['max_boxes']}").replace("  ", " ")

    def _open(self, shard: str, set_name: str):
        reg = self.registry()
        name = resolve_set(reg, set_name)
        status = group_status(self.root, shard, name)
        if status != "complete":
            what = "has an interrupted (partial) write of" if status == "partial" else "has no"
            raise UnknownNameError(f"shard {shard} {what} box set {name}; compute it with: {self._compute_command(name)}")
        return open_group(self.root, f"{shard}/{name}", mode="r")
