"""Zarr feature store ``DATA/features.zarr/<run name>/<split>/`` (format: evaluate/FORMAT.md).

Features of a frozen backbone are computed once per (run, checkpoint step, views,
extraction config, video list) and reused by every evaluation (linear, kNN, retrieval).
Writes go in chunk-aligned blocks of rows; a block is marked done in ``block_done`` only
after its rows are written, so a killed extraction resumes at the first unfinished block
and never trusts a half-written one (DESIGN.md decision 5: writers never share a chunk).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhovid import storage

FORMAT_VERSION = 1
STORE_NAME = "features.zarr"


@dataclass(frozen=True)
class Features:
    """Features of one split, as read back from the store."""

    features: np.ndarray
    """(N, D) float32, one row per video (views averaged)."""
    labels: np.ndarray
    """(N,) int64 class index, -1 for unlabelled videos."""
    keys: list[str]
    """(N,) sample keys, row order."""
    attrs: dict
    """Group attributes: run, step, views, config, fingerprint, complete, ..."""


@dataclass(frozen=True)
class WriteStats:
    """What one ``write_features`` call did."""

    computed_rows: int
    """Rows encoded by this call (0 when everything was reused)."""
    reused_rows: int
    """Rows found already written and matching."""
    recreated: bool
    """True when a stored group existed but did not match and was replaced."""


def fingerprint(run: str, step: int | None, views: str, config: dict, keys: Sequence[str]) -> str:
    """16 hex of the hash of everything that determines the stored numbers."""
    h = hashlib.sha256()
    h.update(json.dumps({"run": run, "step": step, "views": views, "config": config}, sort_keys=True).encode())
    for k in keys:
        h.update(k.encode() + b"\0")
    return h.hexdigest()[:16]


def _split_path(run_name: str, split: str) -> str:
    if not run_name or "/" in run_name or run_name.startswith("."):
        raise ValueError(f"feature run name {run_name!r} must be a non-empty name without '/'")
    return f"{run_name}/{split}"


def store_path(data: str | Path, store: str | Path | None = None) -> Path | str:
    """The feature store: ``store`` when given (a dataset on a read-only disk), else ``DATA/features.zarr``;
    a URL string when it is remote (written through zarr's fsspec store, like the box store)."""
    where = store if store is not None else storage.join(data, STORE_NAME)
    return where if storage.is_remote(where) else Path(where)


def _exists(path: Path | str) -> bool:
    return storage.exists(storage.join(path, "zarr.json")) if storage.is_remote(path) else Path(path).exists()


def _open_root(path: Path | str, mode: str):
    if mode == "r" and not _exists(path):
        raise FileNotFoundError(f"no feature store at {path}; run `rhovid eval ...` to extract features first")
    return storage.open_zarr_group(path, mode=mode)


def write_features(
    data: str | Path,
    run_name: str,
    split: str,
    keys: Sequence[str],
    labels: Sequence[int],
    dim: int,
    compute: Callable[[int, int], np.ndarray],
    attrs: dict,
    block: int = 256,
    progress: Callable[[int], None] | None = None,
    store: str | Path | None = None,
) -> WriteStats:
    """Create or resume ``<run_name>/<split>``; call ``compute`` only for unfinished blocks.

    Args:
        data: dataset folder (the store is ``DATA/features.zarr``).
        run_name: group name of the feature set (a run folder name, or ``random-<arch>``).
        split: shard split, e.g. ``"train"`` / ``"test"``.
        keys: (N,) video keys in row order.
        labels: (N,) labels (-1 = none).
        dim: feature width D.
        compute: ``compute(lo, hi) -> (hi - lo, D) float32`` features of rows lo..hi-1.
        attrs: must hold ``run``, ``step``, ``views``, ``config``; stored as group attributes.
        block: rows per chunk and per resumable unit.
        progress: called with the number of rows finished after each block.
        store: the feature store (default ``DATA/features.zarr``, see ``store_path``).

    Returns:
        ``WriteStats``; ``computed_rows == 0`` means the stored features were reused.
    """
    keys = [str(k) for k in keys]
    n = len(keys)
    if len(labels) != n:
        raise ValueError(f"{run_name}/{split}: {len(labels)} labels for {n} keys")
    for need in ("run", "step", "views", "config"):
        if need not in attrs:
            raise ValueError(f"feature attrs need {need!r}")
    fp = fingerprint(str(attrs["run"]), attrs["step"], str(attrs["views"]), attrs["config"], keys)
    root = _open_root(store_path(data, store), "a")
    path = _split_path(run_name, split)
    group, recreated = None, False
    if path in root:
        group = root[path]
        if group.attrs.get("fingerprint") != fp or group["features"].shape != (n, dim):
            group, recreated = None, True
    nblocks = (n + block - 1) // block
    if group is None:
        group = root.create_group(path, overwrite=True)
        group.create_array("features", shape=(n, dim), chunks=(block, dim), dtype="float32", fill_value=0.0)
        lab = group.create_array("labels", shape=(n,), chunks=(block,), dtype="int64", fill_value=-1)
        with warnings.catch_warnings():  # variable-length UTF-8 is a draft zarr v3 extension
            warnings.simplefilter("ignore")
            kz = group.create_array("keys", shape=(n,), chunks=(block,), dtype=str)
        group.create_array("block_done", shape=(max(nblocks, 1),), chunks=(1,), dtype="uint8", fill_value=0)
        if n:
            lab[:] = np.asarray(labels, dtype=np.int64)
            kz[:] = np.asarray(keys, dtype=object)
        group.attrs.update(
            {
                **attrs,
                "format_version": FORMAT_VERSION,
                "fingerprint": fp,
                "block": block,
                "num_rows": n,
                "dim": dim,
                "complete": False,
            }
        )
    else:
        block = int(group.attrs["block"])
        nblocks = (n + block - 1) // block
    done = group["block_done"][:] if nblocks else np.zeros(0, np.uint8)
    feats = group["features"]
    computed = 0
    for b in range(nblocks):
        lo, hi = b * block, min(n, (b + 1) * block)
        if done[b]:
            if progress:
                progress(hi - lo)
            continue
        x = np.asarray(compute(lo, hi), dtype=np.float32)
        if x.shape != (hi - lo, dim):
            raise ValueError(f"compute({lo}, {hi}) returned shape {x.shape}, expected {(hi - lo, dim)}")
        feats[lo:hi] = x
        group["block_done"][b] = 1  # only after the block's rows are on disk
        computed += hi - lo
        if progress:
            progress(hi - lo)
    if not group.attrs.get("complete"):
        group.attrs["complete"] = True
    return WriteStats(computed_rows=computed, reused_rows=n - computed, recreated=recreated)


def is_complete(data: str | Path, run_name: str, split: str, fp: str | None = None,
                store: str | Path | None = None) -> bool:
    """True when ``<run_name>/<split>`` is fully written (and matches ``fp`` if given)."""
    path = store_path(data, store)
    if not _exists(path):
        return False
    root = _open_root(path, "r")
    key = _split_path(run_name, split)
    if key not in root:
        return False
    attrs = dict(root[key].attrs)
    return bool(attrs.get("complete")) and (fp is None or attrs.get("fingerprint") == fp)


def read_features(data: str | Path, run_name: str, split: str, store: str | Path | None = None) -> Features:
    """Read a complete split; raises naming the group and the command when absent or partial."""
    path = store_path(data, store)
    root = _open_root(path, "r")
    key = _split_path(run_name, split)
    if key not in root:
        have = sorted(f"{r}/{s}" for r, g in root.groups() for s, _ in g.groups())
        raise KeyError(f"{path}: no features {key!r}; stored: {have or 'none'}")
    g = root[key]
    attrs = dict(g.attrs)
    if not attrs.get("complete"):
        raise ValueError(f"features {key!r} in {path} are partial; rerun the eval to resume")
    try:
        return Features(
            features=np.asarray(g["features"][:], dtype=np.float32),
            labels=np.asarray(g["labels"][:], dtype=np.int64),
            keys=[str(k) for k in g["keys"][:]],
            attrs=attrs,
        )
    except Exception as e:  # a chunk damaged on disk; the features are a cache, so recomputing mends it
        raise ValueError(
            f"features {key!r} in {path} are damaged ({type(e).__name__}: {e}); delete "
            f"{storage.join(path, key)} and rerun the eval to recompute them"
        ) from e


def list_features(data: str | Path, store: str | Path | None = None) -> list[dict]:
    """One dict per stored split: ``{"run": name, "split": s, **attrs}``."""
    path = store_path(data, store)
    if not _exists(path):
        return []
    root = _open_root(path, "r")
    out = []
    for run_name, g in sorted(root.groups()):
        for split, sg in sorted(g.groups()):
            out.append({"name": run_name, "split": split, **dict(sg.attrs)})
    return out
