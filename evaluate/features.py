"""Frozen-backbone features of every video of a split, multi-view, into the feature store.

Multi-view test (Feichtenhofer et al. CVPR 2021, Sec. 4 / PySlowFast ``TEST.NUM_ENSEMBLE_VIEWS``
x ``NUM_SPATIAL_CROPS``): ``temporal`` evenly spaced clips times ``spatial`` fixed square
crops (left/centre/right) per video; the pooled backbone features of the views are averaged
into one row. The views are planned by the trainer's sampler in evaluation mode
(``plan_sample(evaluation=True)``) and executed with its CPU ops (``apply_clip``), so the
frames, resize and normalisation are exactly those the backbone was trained on.

Rows are the split's videos in shard order; extraction streams each shard once and skips
(without decoding) the blocks the store already holds (see ``feature_store``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rhovid.errors import UsageError
from rhovid.evaluate.feature_store import WriteStats, write_features

log = logging.getLogger(__name__)
SPATIAL_CROPS = {1: ("centre",), 2: ("left", "right"), 3: ("left", "centre", "right")}


@dataclass(frozen=True)
class ViewConfig:
    """Which clips of a video are encoded and averaged (multi-view test)."""

    frames: int = 8
    """Frames per clip T (use the pretraining value)."""
    stride: int = 8
    """Temporal stride between frames (use the pretraining value)."""
    crop: int = 224
    """Square crop side in pixels after resizing the short side to it."""
    temporal: int = 2
    """Evenly spaced clips per video."""
    spatial: int = 3
    """Fixed crops per clip: 1 = centre, 2 = left/right, 3 = left/centre/right (top/.../bottom if portrait)."""

    @property
    def views(self) -> str:
        """``"<temporal>x<spatial>"`` as stored in the feature attrs."""
        return f"{self.temporal}x{self.spatial}"


def parse_views(text: str) -> tuple[int, int]:
    """``"2x3"`` -> (2, 3): temporal clips x spatial crops."""
    try:
        t, s = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--views {text!r}: expected TEMPORALxSPATIAL, e.g. 2x3") from None
    if t < 1 or s not in SPATIAL_CROPS:
        raise UsageError(f"--views {text!r}: temporal must be >= 1 and spatial one of {sorted(SPATIAL_CROPS)}")
    return t, s


BAD_LABEL = -2
"""``row_label`` of an index row whose label is not a class index (the row is skipped)."""


def row_label(row: dict) -> int:
    """The class index of an index row: -1 when unlabelled, ``BAD_LABEL`` when it is no valid index."""
    from rhovid.train.sampler import MAX_LABEL

    label = row.get("label")
    if label is None:
        return -1
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= MAX_LABEL:
        return BAD_LABEL
    return label


def split_rows(data: str | Path, split: str) -> list[dict]:
    """Index entries of ``split`` in shard order (the feature store's row order)."""
    from rhovid.ingest.shards import read_index

    index = read_index(data)
    rows = [e for e in index if e["split"] == split]
    if not rows:
        have = sorted({e["split"] for e in index})
        raise UsageError(f"{data} has no videos in split {split!r}; splits present: {have}")
    return sorted(rows, key=lambda e: e["shard"])  # stable: shard order within a shard


def iter_samples(data: str | Path, rows: list[dict], skip: set[int]) -> Iterator[tuple[int, dict | None]]:
    """``(row, sample)`` for every row in order, reading each shard once.

    Rows in ``skip`` come back as ``(row, None)`` without being read. A sample is
    ``{"json": meta, "mp4": bytes}``, or ``{"error": message}`` when it cannot be read: its json is
    unusable, its bytes are cut off, or the shard does not hold it (missing, 0 bytes, truncated
    before it) — skip-and-count, the evaluation goes on. Samples are matched by key, so a shard
    whose order differs from the index still works (it is buffered).
    """
    from rhovid.ingest.shards import iter_shard_lazy

    shard_dir = Path(data) / "shards"
    i = 0
    while i < len(rows):
        shard = rows[i]["shard"]
        j = i
        while j < len(rows) and rows[j]["shard"] == shard:
            j += 1
        wanted = {rows[r]["key"]: r for r in range(i, j) if r not in skip}
        pending: dict[int, dict] = {}
        nxt, why = i, f"not in {shard_dir / shard}"
        if wanted:
            try:
                for sample in iter_shard_lazy(shard_dir / shard):
                    r = wanted.get(sample["__key__"])
                    if r is not None:
                        pending[r] = _read_whole(sample)
                    while nxt < j and (nxt in skip or nxt in pending):
                        yield nxt, pending.pop(nxt, None)
                        nxt += 1
                    if nxt == j:
                        break
            except Exception as e:  # the shard is missing or no tar at all: its rows are skipped
                why = f"{shard_dir / shard} cannot be read ({type(e).__name__}: {e})"
        while nxt < j:
            if nxt in skip:
                yield nxt, None
            else:
                yield nxt, pending.pop(nxt, None) or {"error": f"sample {rows[nxt]['key']!r}: {why}"}
            nxt += 1
        i = j


def _read_whole(sample: dict) -> dict:
    """A lazily read sample with its MP4 bytes read (they go to a decode process), or ``{"error"}``."""
    if "error" in sample:
        return {"error": f"sample {sample['__key__']!r}: {sample['error']}"}
    if "mp4" not in sample or "json" not in sample:
        return {"error": f"sample {sample['__key__']!r} lacks its json or mp4 member"}
    try:
        return {"json": sample["json"], "mp4": sample["mp4"].read()}
    except (EOFError, OSError) as e:  # cut off, or a header claiming more bytes than the shard has
        return {"error": f"sample {sample['__key__']!r}: {e}"}


def sample_views(mp4: bytes, meta: dict, views: ViewConfig) -> np.ndarray:
    """Decode the test views of one sample.

    Returns:
        (V, 3, T, S, S) float32 normalised, V = temporal x spatial (temporal-major).
    """
    from rhovid.train.augment import apply_clip
    from rhovid.train.data_config import DataConfig
    from rhovid.train.decode_pyav import decode_frames
    from rhovid.train.sampler import plan_sample
    from rhovid.train.streaming import slice_clips

    plan = plan_sample(
        meta, 0, DataConfig(rho=1, frames=views.frames, stride=views.stride, crop=views.crop), evaluation=True,
        clips_per_video=views.temporal, spatial_crops=SPATIAL_CROPS[views.spatial],
    )
    # The spatial crops of one temporal clip share its frames: decode each frame set once
    # (the trainer's execute_plan would decode it once per crop). The trainer's decoder, so test
    # frames get the same YUV->RGB conversion as the frames the model was trained on.
    decoded: dict[tuple[int, ...], np.ndarray] = {}
    out = []
    for clip in plan.clips:
        if clip.frames not in decoded:
            (piece,) = slice_clips(mp4, meta, [clip.frames])
            decoded[clip.frames] = decode_frames(piece.data, piece.indices)
        out.append(apply_clip(decoded[clip.frames], clip.aug))
    return np.stack(out)


def _views_task(args: tuple[bytes, dict, ViewConfig]) -> np.ndarray | str:
    """The views of one sample, or the reason it cannot be decoded (a message: skip-and-count)."""
    try:
        return sample_views(*args)
    except Exception as e:  # any field or byte the sample gets wrong: this video, never the evaluation
        return f"{args[1].get('key', '?') if isinstance(args[1], dict) else '?'}: {type(e).__name__}: {e}"


@torch.no_grad()
def encode_views(model: nn.Module, clips: np.ndarray, device: str, batch_clips: int) -> np.ndarray:
    """Mean pooled feature over the views of each video.

    Args:
        model: backbone in eval mode, (N, C, T, H, W) -> (N, D).
        clips: (B, V, C, T, H, W) float32.

    Returns:
        (B, D) float32.
    """
    b, v = clips.shape[:2]
    flat = torch.from_numpy(clips.reshape(b * v, *clips.shape[2:]))
    out = [model(x.to(device)).float().cpu() for x in torch.split(flat, batch_clips)]
    return torch.cat(out).reshape(b, v, -1).mean(1).numpy()


def extract_split(
    data: str | Path,
    split: str,
    model: nn.Module,
    name: str,
    views: ViewConfig,
    attrs: dict,
    device: str = "cpu",
    batch_clips: int = 32,
    workers: int = 0,
    block: int = 256,
    progress: bool = True,
    store: str | Path | None = None,
) -> WriteStats:
    """Encode every video of ``split`` into ``DATA/features.zarr/<name>/<split>`` (or ``store``).

    Args:
        data: dataset folder.
        split: shard split.
        model: frozen backbone (eval mode), ``.feature_dim`` = D.
        name: feature-set name (group under features.zarr).
        views: multi-view test settings.
        attrs: provenance: ``run`` (path or "random-init") and ``step``; ``views`` and the
            view config are added here.
        device: where the backbone runs.
        batch_clips: clips per forward pass.
        workers: decode processes (0 = decode inline).
        block: rows per resumable block.
        progress: tqdm bar.
        store: another feature store than ``DATA/features.zarr`` (read-only datasets).

    Returns:
        What was computed vs reused.
    """
    rows = split_rows(data, split)
    keys = [str(r["key"]) for r in rows]
    labels = [row_label(r) for r in rows]
    model = model.to(device).eval()
    full = {**attrs, "views": views.views, "config": {**attrs.get("config", {}), **asdict(views)}}
    bar = tqdm(total=len(rows), desc=f"features {name}/{split}", unit="video", disable=not progress,
               dynamic_ncols=True)
    pool = (ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers > 0 else None)
    state: dict = {"it": None}
    skipped = {"skipped": 0}

    def compute(lo: int, hi: int) -> np.ndarray:
        """Features of rows lo..hi-1; a video that cannot be read or decoded is a NaN row (skipped)."""
        if state["it"] is None:  # first block that needs work: rows before it are skipped
            state["it"] = iter_samples(data, rows, skip=set(range(lo)))
        out = np.full((hi - lo, int(model.feature_dim)), np.nan, np.float32)
        todo, problems = [], {}
        for r, sample in state["it"]:
            if r >= lo:
                if "error" in sample:
                    problems[r] = sample["error"]
                elif labels[r] == BAD_LABEL:
                    problems[r] = f"sample {keys[r]!r}: label {rows[r].get('label')!r} is not a class index"
                else:
                    todo.append((r, (sample["mp4"], sample["json"], views)))
            if r == hi - 1:
                break
        tasks = pool.map(_views_task, [t for _, t in todo]) if pool else map(_views_task, [t for _, t in todo])
        done, chunk = [], []
        for (r, _), clips in zip(todo, tasks):
            if isinstance(clips, str):
                problems[r] = clips
                continue
            chunk.append((r, clips))
            if len(chunk) * len(clips) >= batch_clips:
                done.append(chunk)
                chunk = []
        for part in [*done, chunk] if chunk else done:
            out[[r - lo for r, _ in part]] = encode_views(model, np.stack([c for _, c in part]), device, batch_clips)
        for _, why in sorted(problems.items()):
            log.warning("features %s/%s: skipped video %s", name, split, why)
        skipped["skipped"] += len(problems)
        return out

    try:
        stats = write_features(data, name, split, keys, [max(v, -1) for v in labels], int(model.feature_dim),
                               compute, full, block, progress=bar.update, store=store)
    finally:
        bar.close()
        if pool:
            pool.shutdown()
    if skipped["skipped"]:
        log.warning("features %s/%s: %d of %d videos skipped (unreadable or undecodable; their rows are NaN "
                    "and every evaluation leaves them out)", name, split, skipped["skipped"], len(rows))
    return stats
