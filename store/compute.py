"""Compute a box set over a dataset's shards: one task per shard on the shared executor.

The driver names the set, registers it, skips shards whose group is complete and hands the
rest to ``rhovid.executor.map_unordered`` (local process pool or Dask, DESIGN.md decision
6). A worker reads its shard's samples, decodes the frames at ``--box-fps``, runs the prior,
post-processes, and writes the shard's group in one go, ``complete`` last; so an interrupted
run leaves partial groups that the rerun recomputes, and complete groups are never rewritten.

Concurrent runs of one set (issue 13, item 3): a worker holds the group's lock file
(``boxes.zarr/.locks/<shard>.<set>.lock``, ``rhovid.locks``) while it checks, computes and
writes the group. A first pass skips groups another run holds; a second pass waits for them
and finds them complete (or computes them, if that run died: the kernel dropped its lock).

Bad samples (issue 13, items 8 and 9): a sample whose json a reader cannot trust
(``rhovid.ingest.contract``), whose mp4 does not parse or disagrees with its json's frame
count, or that does not decode is skipped and recorded in the group (``skipped``), so one bad
sample costs its own boxes, not the shard's; frame counts come from the fragment table, never
from the json alone. A shard whose tar is cut or damaged fails whole and is not stored.

With fewer unfinished shards than local workers, each shard is split into video ranges
(``split_ranges``) so every worker has work: range workers return their rows, and the driver
writes the shard's group once, from the rows in shard order, through the same ``write_group``
as a whole-shard worker, so the arrays and attributes are byte for byte the per-shard ones.
A shard whose ranges are not all done gets no group (a rerun computes it again). Range workers
take no lock (they write nothing); the driver writes under the group's lock, unless another run
completed the group meanwhile.
"""

from __future__ import annotations

import collections
import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rhovid import storage
from rhovid.errors import NotFoundError, UsageError
from rhovid.executor import map_unordered
from rhovid.locks import hold, try_hold
from rhovid.ranged import FetchStats
from rhovid.store.boxsets import (
    box_set_name,
    code_version,
    make_params,
    method_entry,
    params_dict,
    register_set,
)
from rhovid.store.regions import SelectParams
from rhovid.store.zarr_store import ShardRows, ensure_root, group_status, store_root, write_shard_set


def box_frame_indices(num_frames: int, fps: float, box_fps: float) -> np.ndarray:
    """Frame indices ``round(i * fps / box_fps)`` for i = 0, 1, ... inside the video (round half up)."""
    if num_frames <= 0:
        return np.zeros(0, np.int64)
    step = fps / box_fps
    n = int(np.floor((num_frames - 1) / step + 0.5)) + 1
    idx = np.floor(np.arange(n) * step + 0.5).astype(np.int64)
    return np.unique(idx[idx < num_frames])


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs for one shard (picklable for process pools and Dask)."""

    shard_path: str
    shard: str
    root: str
    set_name: str
    method: str
    params: SelectParams
    box_fps: float
    max_boxes: int
    attrs: dict = field(default_factory=dict)
    crash: bool = False
    wait: bool = False
    """Wait for a group another run holds (second pass) instead of leaving it (first pass)."""
    videos: tuple[int, int] | None = None
    """Below-shard split: videos ``[start, stop)`` in shard order; the worker returns their rows
    and the driver writes the group. None = the whole shard, written by the worker."""


@dataclass(frozen=True)
class ShardPart:
    """Rows of one video range of a shard (a range worker's answer)."""

    start: int
    rows: ShardRows
    keys: list
    sizes: list
    skipped: list


@dataclass(frozen=True)
class ShardResult:
    shard: str
    videos: int
    frames: int
    seconds: float
    prior_seconds: float = 0.0
    """CPU seconds spent in the prior itself (its library call and post-processing)."""
    part: ShardPart | None = None
    status: str = "computed"
    """``computed``; ``complete`` (another run completed it); ``busy`` (another run holds it)."""
    skipped: tuple = ()
    """``{"key", "reason"}`` of the samples left out of the group."""
    io: FetchStats = field(default_factory=FetchStats)
    """The worker's reads of the shard: bytes, requests, retries, failed reads."""


DECODE_ERRORS = (ValueError, IndexError, EOFError, OSError)
"""What decoding a damaged sample raises, besides PyAV's own ``av.error.FFmpegError``."""


def usable_samples(reader, shard: str, skipped: list[dict], ahead: int = 4,
                   videos: tuple[int, int] | None = None):
    """The samples of ``shard`` whose json and mp4 agree: ``{"__key__", "json", "mp4": bytes}``,
    the next ``ahead`` videos read meanwhile (``reader``: a ``rhovid.ingest.reader.ShardReader``).

    The others are appended to ``skipped`` as ``{"key", "reason"}``. Raises ``tarfile.ReadError``
    for a cut or damaged local tar (a ``strict`` reader), ``ValueError`` for a damaged manifest.
    """
    from rhovid.ingest.contract import sample_problems
    from rhovid.ingest.fmp4 import parse_fragments
    from rhovid.ranged import prefetch

    def untrusted(sample) -> str | None:
        if sample.error is not None:
            return sample.error
        if sample.meta is None or "mp4" not in sample.members:
            return "json or mp4 missing"
        return "; ".join(sample_problems(sample.meta, sample.members["mp4"][1])) or None

    def start(sample):
        if untrusted(sample) is not None:
            return None
        off, size = sample.members["mp4"]
        return reader.fetcher.submit(shard, [(off, off + size)])

    samples = reader.manifest(shard).samples
    if videos is not None:  # a below-shard split's range (``split_tasks`` counts the same manifest)
        samples = samples[videos[0]:videos[1]]
    for sample, fut in prefetch(samples, start, ahead):
        meta, reason = sample.meta, untrusted(sample)
        if reason is None:
            mp4 = next(iter(fut.result().values()))
            try:
                frames = parse_fragments(mp4).num_frames
                if frames != meta["num_frames"]:
                    reason = f"json says {meta['num_frames']} frames, its mp4's fragments hold {frames}"
            except ValueError as e:
                reason = f"mp4 does not parse ({e})"
        if reason is not None:
            skipped.append({"key": sample.key, "reason": reason})
            continue
        yield {"__key__": sample.key, "json": meta, "mp4": mp4}


def compute_rows(samples, method: str, params: SelectParams, box_fps: float, max_boxes: int,
                 skipped: list[dict] | None = None):
    """Boxes for every sample of a shard.

    Args:
        samples: iterable of ``{"__key__", "mp4", "json"}`` (``usable_samples``).
        method, params: the prior.
        box_fps: rate of stored frames per video second.
        max_boxes: K.
        skipped: a sample that does not decode is appended here as ``{"key", "reason"}`` and left
            out; None = its error propagates.

    Returns:
        (ShardRows, keys, frame_sizes [[W, H], ...], frames processed, CPU seconds in the prior).
    """
    import av

    from rhovid.ingest.decode import decode_rgb
    from rhovid.store.priors.motion import decode_motion_vectors, reference_gap

    _, fn = method_entry(method)
    extra_names = params.extra_inputs()
    boxes, scores, counts, frames, offsets, keys, sizes = [], [], [], [], [0], [], []
    prior_s = 0.0
    for sample in samples:
        meta, key = sample["json"], sample["__key__"]
        n_frames = int(meta["num_frames"])
        idx = box_frame_indices(n_frames, float(meta["fps"]), box_fps)
        need, extra = idx, {}
        if "previous" in extra_names:
            # the frame `gap` before; frames with none before them compare with the one after
            gap = reference_gap(meta, params.gap)
            ref = np.where(idx >= gap, idx - gap, np.minimum(idx + gap, n_frames - 1))
            need = np.union1d(idx, ref)
        try:
            if "vectors" in extra_names:
                decoded, extra["vectors"] = decode_motion_vectors(sample["mp4"], idx, params.compensate != "none")
            else:
                decoded = decode_rgb(sample["mp4"], need) if len(need) else np.zeros((0, 1, 1, 3), np.uint8)
        except (*DECODE_ERRORS, av.error.FFmpegError) as e:
            if skipped is None:
                raise
            skipped.append({"key": key, "reason": f"does not decode ({type(e).__name__}: {e})"})
            continue
        rgb = decoded[np.searchsorted(need, idx)]
        if "previous" in extra_names:
            extra["previous"] = decoded[np.searchsorted(need, ref)]
        h, w = (decoded.shape[1], decoded.shape[2]) if len(idx) else (int(meta["height"]), int(meta["width"]))
        t0 = time.process_time()
        found = fn(rgb, params, **extra) if len(idx) else []
        selected = [params.select(cand, w, h, max_boxes, cand_scores) for cand, cand_scores in found]
        prior_s += time.process_time() - t0
        for b, s in selected:
            row = np.zeros((max_boxes, 4), np.float32)
            row[: len(b)] = b
            boxes.append(row)
            srow = np.zeros(max_boxes, np.float32)
            if s is not None:
                srow[: len(s)] = s
            scores.append(srow)
            counts.append(len(b))
        frames.extend(idx.tolist())
        offsets.append(len(frames))
        keys.append(key)
        sizes.append([int(w), int(h)])
    rows = ShardRows(
        boxes=np.asarray(boxes, np.float32).reshape(-1, max_boxes, 4),
        count=np.asarray(counts, np.int32),
        frame=np.asarray(frames, np.int32),
        video_offsets=np.asarray(offsets, np.int64),
        score=np.asarray(scores, np.float32).reshape(-1, max_boxes) if params.scored else None,
    )
    return rows, keys, sizes, len(frames), prior_s


def group_lock(root: str | Path, shard: str, set_name: str) -> Path:
    """The lock file of one (shard, box set) group."""
    return Path(root) / ".locks" / f"{shard}.{set_name}.lock"


def compute_shard(task: ShardTask) -> ShardResult:
    """Worker: compute and write one shard's group under its lock (see the module docstring), or
    compute the rows of one video range (``task.videos``) and return them for the driver to write
    (under the lock, ``write_split_group``)."""
    if storage.is_remote(task.root) or task.videos is not None:  # a bucket has no flock: one writer per DATA
        return _compute_locked(task)
    lock = group_lock(task.root, task.shard, task.set_name)
    with try_hold(lock) as got:
        if got:
            return _compute_locked(task)
    if not task.wait:
        return ShardResult(task.shard, 0, 0, 0.0, status="busy")
    with hold(lock):
        return _compute_locked(task)


def _compute_locked(task: ShardTask) -> ShardResult:
    import cv2

    from rhovid.ingest.reader import ShardReader

    # Parallelism is one task per worker; OpenCV's own thread pool on top would oversubscribe.
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    root = _root(task)
    if group_status(root, task.shard, task.set_name) == "complete":
        return ShardResult(task.shard, 0, 0, 0.0, status="complete")
    skipped: list[dict] = []
    reader = ShardReader(strict=True)  # a few whole videos read ahead: a box prior needs every GOP at box_fps
    try:
        rows, keys, sizes, n, prior_s = compute_rows(
            usable_samples(reader, task.shard_path, skipped, videos=task.videos), task.method, task.params,
            task.box_fps, task.max_boxes, skipped,
        )
    finally:
        reader.close()
    io = reader.fetcher.stats
    if task.videos is not None:
        part = ShardPart(task.videos[0], rows, keys, sizes, skipped)
        return ShardResult(task.shard, len(keys), n, time.perf_counter() - t0, prior_s, part, skipped=tuple(skipped),
                           io=io)
    write_group(task, rows, keys, sizes, skipped)
    return ShardResult(task.shard, len(keys), n, time.perf_counter() - t0, prior_s, skipped=tuple(skipped), io=io)



def _root(task: ShardTask) -> Path | str:
    """The task's boxes.zarr: a folder, or a URL string for a remote DATA."""
    return task.root if storage.is_remote(task.root) else Path(task.root)


def split_ranges(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``[start, stop)`` ranges of ``count`` videos (fewer if count < parts)."""
    edges = np.linspace(0, count, min(parts, count) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def merge_parts(parts: list[ShardPart]) -> tuple[ShardRows, list, list, list]:
    """One shard's rows, keys and frame sizes from its range parts (any order)."""
    parts = sorted(parts, key=lambda p: p.start)
    rows = [p.rows for p in parts]
    lengths = [len(r.count) for r in rows]
    starts = np.cumsum([0, *lengths[:-1]])
    offsets = np.concatenate([[0], *[r.video_offsets[1:] + s for r, s in zip(rows, starts)]]).astype(np.int64)
    merged = ShardRows(
        boxes=np.concatenate([r.boxes for r in rows]),
        count=np.concatenate([r.count for r in rows]),
        frame=np.concatenate([r.frame for r in rows]),
        video_offsets=offsets,
        score=None if rows[0].score is None else np.concatenate([r.score for r in rows]),
    )
    return (merged, [k for p in parts for k in p.keys], [s for p in parts for s in p.sizes],
            [s for p in parts for s in p.skipped])


def write_group(task: ShardTask, rows: ShardRows, keys: list, sizes: list, skipped: list) -> None:
    """Write a shard's group with its attributes and stats (whole-shard worker or the driver)."""
    area = (rows.boxes[..., 2] - rows.boxes[..., 0]) * (rows.boxes[..., 3] - rows.boxes[..., 1])
    frame_area = np.repeat([w * h for w, h in sizes], np.diff(rows.video_offsets)).astype(np.float64)
    stats = {
        "rows": int(len(rows.count)),
        "boxes": int(rows.count.sum()),
        "area_fraction_sum": float((area.sum(1) / np.maximum(frame_area, 1.0)).sum()),
        "skipped": len(skipped),
    }
    attrs = {**task.attrs, "shard": task.shard, "keys": keys, "frame_sizes": sizes, "stats": stats,
             "skipped": list(skipped)}
    write_shard_set(_root(task), task.shard, task.set_name, rows, attrs, crash_before_complete=task.crash)


def write_split_group(task: ShardTask, parts: list[ShardPart]) -> bool:
    """The driver's write of a split shard's group, under the group's lock as a whole-shard
    worker's; False if another run completed the group meanwhile."""
    lock = None if storage.is_remote(task.root) else group_lock(task.root, task.shard, task.set_name)
    with hold(lock) if lock is not None else contextlib.nullcontext():
        if group_status(_root(task), task.shard, task.set_name) == "complete":
            return False
        write_group(task, *merge_parts(parts))
        return True


@dataclass
class ComputeReport:
    """What one ``compute_box_set`` call did."""

    set_name: str
    method: str
    shards_total: int
    skipped: list[str] = field(default_factory=list)
    """Shards whose group was already complete (not recomputed), or completed meanwhile by a concurrent run."""
    computed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(shard, error message) for shards that raised; rerun to retry them."""
    skipped_samples: list[tuple[str, str, str]] = field(default_factory=list)
    """(shard, key, reason) of the samples left out of the groups this call computed."""
    frames: int = 0
    """Frames processed by this call: the work counter (0 for a no-op)."""
    videos: int = 0
    seconds: float = 0.0
    prior_seconds: float = 0.0
    """CPU seconds in the prior itself, summed over workers (``/ frames``: its cost per frame)."""
    tasks: int = 0
    """Tasks handed to the executor: shards, or video ranges of shards when they were split."""
    io: FetchStats = field(default_factory=FetchStats)
    """Reads of this call's workers and driver (shard manifests and videos): bytes, requests, retries."""

    @property
    def noop(self) -> bool:
        return not self.computed and not self.failed


def compute_box_set(
    data: str | Path,
    method: str,
    params: dict | None = None,
    *,
    box_fps: float = 2.0,
    max_boxes: int = 16,
    name: str | None = None,
    split: str | None = None,
    workers: int = 0,
    scheduler: str | None = None,
    progress: bool = True,
    crash_in: tuple[str, ...] = (),
) -> ComputeReport:
    """Compute (or finish) box set ``method(params)`` for every shard of DATA.

    Args:
        data: the dataset folder (DATA/shards/*.tar).
        method: a key of ``rhovid.store.priors.METHODS``.
        params: overrides of the method's params (values may be ``--param`` strings).
        box_fps: stored frames per second of video.
        max_boxes: K, boxes kept per frame.
        name: optional alias for the set.
        split: only this split's shards (default: all).
        workers, scheduler: executor (0 = inline, N = process pool, scheduler = Dask).
        progress: show a progress bar.
        crash_in: test hook: shard names whose worker raises ``SimulatedCrash`` after writing
            its arrays but before marking the group complete.

    Raises:
        ValueError: bad method/params/box_fps/max_boxes; FileNotFoundError: no shards;
        ImportError: the prior cannot run here (e.g. torchvision not importable).
    """
    from rhovid.ingest.reader import data_shards, shard_name

    p = make_params(method, params)
    if not box_fps > 0:
        raise UsageError(f"--box-fps must be > 0, got {box_fps}")
    if max_boxes < 1:
        raise UsageError(f"--max-boxes must be >= 1, got {max_boxes}")
    if workers < 0:
        raise UsageError(f"--workers must be >= 0 (0 = inline), got {workers}")
    shards = data_shards(data, split)
    if not shards:
        raise NotFoundError(
            f"{data}: no shards{f' of split {split!r}' if split else ''} under {storage.join(data, 'shards')}"
        )
    set_name = box_set_name(method, p, box_fps, max_boxes)
    root = store_root(data)
    entry = {
        "method": method,
        "params": params_dict(p),
        "params_hashed": params_dict(p, hashed_only=True),
        "box_fps": float(box_fps),
        "max_boxes": int(max_boxes),
        "code_version": code_version(method),
    }
    report = ComputeReport(set_name, method, len(shards))
    todo = []
    for path in shards:
        shard = shard_name(path)
        if group_status(root, shard, set_name) == "complete":
            report.skipped.append(shard)
        else:
            attrs = {**entry, "set": set_name}
            todo.append(
                ShardTask(  # absolute paths: Dask workers may run elsewhere on a shared filesystem
                    path if storage.is_remote(path) else str(Path(path).resolve()),
                    shard,
                    root if storage.is_remote(root) else str(root.resolve()),
                    set_name,
                    method,
                    p,
                    float(box_fps),
                    int(max_boxes),
                    attrs,
                    crash=shard in crash_in,
                )
            )
    if todo:
        p.check_runtime()  # before anything is written; a no-op request runs anywhere
    ensure_root(data)
    register_set(root, set_name, entry, alias=name)
    if not todo:
        return report
    t0 = time.perf_counter()
    tasks = split_tasks(todo, workers if not scheduler else 0, report.io)
    report.tasks = len(tasks)
    finished: set[str] = set()  # completed by another run meanwhile
    # first pass: groups another run holds are left for the second pass, which waits for them
    # (range tasks never wait: their driver writes under the lock)
    for _pass in range(2):
        expected = collections.Counter(t.shard for t in tasks)
        parts: dict[str, list[ShardPart]] = {s: [] for s in expected}
        failed: set[str] = set()
        busy = []
        for res in map_unordered(
            compute_shard,
            tasks,
            workers=workers,
            scheduler=scheduler,
            desc=f"boxes {set_name}",
            unit="shard" if all(t.videos is None for t in tasks) else "range",
            progress=progress,
        ):
            shard, v = res.task.shard, res.value
            if not res.ok:
                if shard not in failed:
                    failed.add(shard)
                    report.failed.append((shard, f"{type(res.error).__name__}: {res.error}"))
                continue
            if v.status == "busy":
                busy.append(replace(res.task, wait=True))
                continue
            if v.status == "complete":
                if shard not in finished:
                    finished.add(shard)
                    report.skipped.append(shard)
                continue
            report.io.add(v.io)
            report.frames += v.frames
            report.videos += v.videos
            report.prior_seconds += v.prior_seconds
            report.skipped_samples += [(shard, s["key"], s["reason"]) for s in v.skipped]
            if v.part is None:
                report.computed.append(shard)
                continue
            parts[shard].append(v.part)
            if len(parts[shard]) == expected[shard] and shard not in failed | finished:
                try:  # the driver writes a split shard's group once, from every range's rows
                    if write_split_group(res.task, parts.pop(shard)):
                        report.computed.append(shard)
                    else:
                        finished.add(shard)
                        report.skipped.append(shard)
                except Exception as e:  # noqa: BLE001 - reported like a worker's failure
                    failed.add(shard)
                    report.failed.append((shard, f"{type(e).__name__}: {e}"))
        tasks = busy
        if not tasks:
            break
    report.seconds = time.perf_counter() - t0
    return report


def split_tasks(todo: list[ShardTask], workers: int, io: FetchStats | None = None) -> list[ShardTask]:
    """``todo`` as is, or, with fewer shards than local ``workers``, each shard as
    ``ceil(workers / shards)`` video ranges (never more ranges than videos); the manifest reads
    this costs are added to ``io``."""
    from rhovid.ingest.reader import ShardReader

    if workers <= len(todo):
        return todo
    per_shard = -(-workers // len(todo))
    out = []
    reader = ShardReader()
    try:
        for t in todo:
            count = len(reader.manifest(t.shard_path).samples)  # one manifest read per shard
            ranges = split_ranges(count, per_shard)
            out += [t] if len(ranges) <= 1 else [replace(t, videos=r) for r in ranges]
    finally:
        reader.close()
        if io is not None:
            io.add(reader.fetcher.stats)
    return out
