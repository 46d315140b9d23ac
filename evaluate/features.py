"""Frozen-backbone features of every video of a split, multi-view, into the feature store.

Multi-view test (Feichtenhofer et al. CVPR 2021, Sec. 4 / PySlowFast ``TEST.NUM_ENSEMBLE_VIEWS``
x ``NUM_SPATIAL_CROPS``): ``temporal`` evenly spaced clips times ``spatial`` fixed square
crops (left/centre/right) per video; the pooled backbone features of the views are averaged
into one row. The views are planned by the trainer's sampler in evaluation mode
(``plan_sample(evaluation=True)``) and executed with its CPU ops (``apply_clip``), so the
frames, resize and normalisation are exactly those the backbone was trained on.

Rows are the split's videos in shard order; extraction reads, through the loader's lazy
range-reading path, only the fragments the view clips cover (one manifest read per shard, from a
folder or a URL) and skips (without reading) the blocks the store already holds (see
``feature_store``).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rhovid.errors import UsageError
from rhovid.evaluate.feature_store import WriteStats, write_features
from rhovid.ranged import RangeFetcher
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD

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
    mean: tuple[float, float, float] = KINETICS_MEAN
    """Input normalisation of pretraining (the run's ``data.mean``)."""
    std: tuple[float, float, float] = KINETICS_STD
    """Input normalisation of pretraining (the run's ``data.std``)."""

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


def split_rows(data: str | Path, split: str, fetcher: RangeFetcher | None = None) -> list[dict]:
    """Index entries of ``split`` in shard order (the feature store's row order); a remote index.json
    is read through ``fetcher`` (counted)."""
    from rhovid.ingest.reader import read_index

    index = read_index(data, fetcher)
    rows = [e for e in index if e["split"] == split]
    if not rows:
        have = sorted({e["split"] for e in index})
        raise UsageError(f"{data} has no videos in split {split!r}; splits present: {have}")
    return sorted(rows, key=lambda e: e["shard"])  # stable: shard order within a shard


def view_plan(meta: dict, views: ViewConfig):
    """The multi-view test plan of one video: ``temporal`` x ``spatial`` clips (temporal-major)."""
    from rhovid.train.data_config import DataConfig
    from rhovid.train.sampler import plan_sample

    return plan_sample(
        meta, 0, DataConfig(rho=1, frames=views.frames, stride=views.stride, crop=views.crop), evaluation=True,
        clips_per_video=views.temporal, spatial_crops=SPATIAL_CROPS[views.spatial],
    )


def view_frames(meta: dict, views: ViewConfig) -> list[tuple[int, ...]]:
    """The distinct frame sets of a video's views (one per temporal clip; its crops share it)."""
    return list(dict.fromkeys(c.frames for c in view_plan(meta, views).clips))


def iter_views(data: str | Path, rows: list[dict], skip: set[int], views: ViewConfig, ahead: int = 8,
               fetcher: RangeFetcher | None = None) -> Iterator[tuple[int, tuple[dict, list] | str | None]]:
    """``(row, (meta, slices))`` for every row in order: the clip slices of its test views.

    Reads go through the loader's lazy path (``rhovid.ingest.reader``): one manifest read per
    shard, then per video only the fragments its view clips cover (overlapping clips share one
    read), ``ahead`` videos in flight; so evaluating 10-minute videos reads the evaluated clips,
    not the videos, from a folder or a URL. ``slices`` holds one ``ClipSlice`` per
    ``view_frames`` entry. Rows in ``skip`` come back as ``(row, None)`` without being read.

    A row that cannot be read comes back as ``(row, message)`` instead: its shard is missing or
    no tar at all (0 bytes, cut before it), the shard does not hold it, its json is unusable, or
    its bytes are cut off or outside its member — skip-and-count, the evaluation goes on.

    ``fetcher``: the command's fetcher, whose counters then hold these reads (a new one when None).
    """
    from rhovid.ingest.reader import ShardReader, shard_url
    from rhovid.ranged import prefetch

    reader = ShardReader(fetcher)

    def start(r: int):
        if r in skip:
            return None
        key, shard = rows[r]["key"], shard_url(data, rows[r]["shard"])
        try:
            manifest = reader.manifest(shard)
        except Exception as e:  # noqa: BLE001 - the shard is missing or no tar at all: its rows are skipped
            raise ValueError(f"{shard} cannot be read ({type(e).__name__}: {e})") from None
        sample = manifest.by_key.get(key)
        if sample is None or sample.meta is None:
            raise LookupError(f"not in {shard}" + (f" ({sample.error})" if sample is not None else ""))
        frames = view_frames(sample.meta, views)
        fut = reader.submit_clips(shard, sample, [list(f) for f in frames])
        return sample.meta, fut

    try:
        for r, job in prefetch(range(len(rows)), start, ahead):
            if r in skip:
                yield r, None
                continue
            try:
                if isinstance(job, Future):
                    job.result()  # start() raised: its exception, in row order
                meta, fut = job
                yield r, (meta, fut.result())
            except Exception as e:  # noqa: BLE001 - skip-and-count: one bad video never aborts the evaluation
                yield r, f"sample {rows[r]['key']!r}: {type(e).__name__}: {e}"
    finally:
        reader.close()


def sample_views(meta: dict, views: ViewConfig, slices: list) -> np.ndarray:
    """Decode the test views of one video from its slices (``iter_views``).

    Returns:
        (V, 3, T, S, S) float32 normalised, V = temporal x spatial (temporal-major).
    """
    from rhovid.train.augment_cpu import apply_clip
    from rhovid.train.decode_pyav import decode_frames

    # The spatial crops of one temporal clip share its frames: decode each frame set once
    # (the trainer's execute_plan would decode it once per crop). The trainer's decoder, so test
    # frames get the same YUV->RGB conversion as the frames the model was trained on.
    piece = dict(zip(view_frames(meta, views), slices))
    decoded: dict[tuple[int, ...], np.ndarray] = {}
    out = []
    for clip in view_plan(meta, views).clips:
        if clip.frames not in decoded:
            decoded[clip.frames] = decode_frames(piece[clip.frames].data, piece[clip.frames].indices)
        out.append(apply_clip(decoded[clip.frames], clip.aug, views.mean, views.std))
    return np.stack(out)


def _views_task(args: tuple[dict, ViewConfig, list]) -> np.ndarray | str:
    """The views of one sample, or the reason it cannot be decoded (a message: skip-and-count)."""
    try:
        return sample_views(*args)
    except Exception as e:  # any field or byte the sample gets wrong: this video, never the evaluation
        return f"{args[0].get('key', '?') if isinstance(args[0], dict) else '?'}: {type(e).__name__}: {e}"


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
    fetcher: RangeFetcher | None = None,
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
        fetcher: reads the shards (its counters: the command's ``data:`` summary); None = a new one.

    Returns:
        What was computed vs reused.
    """
    rows = split_rows(data, split, fetcher)
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
            state["it"] = iter_views(data, rows, set(range(lo)), views, fetcher=fetcher)
        out = np.full((hi - lo, int(model.feature_dim)), np.nan, np.float32)
        todo, problems = [], {}
        for r, got in state["it"]:
            if r >= lo:
                if isinstance(got, str):
                    problems[r] = got
                elif labels[r] == BAD_LABEL:
                    problems[r] = f"sample {keys[r]!r}: label {rows[r].get('label')!r} is not a class index"
                else:
                    todo.append((r, (got[0], views, got[1])))
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
