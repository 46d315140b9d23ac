"""``ClipLoader``: rho-clip batches from the shards, on CPU (PyAV) or GPU (DALI).

The public entry point of the loader (DESIGN.md "Loader"):

    loader = ClipLoader(LoaderConfig(data="DATA", rho=2, frames=8, stride=8, boxes="random"))
    for batch in loader:
        batch["video"]      # (B, rho, 3, T, S, S) float32, Kinetics-normalised
        batch["boxes"]      # (B, rho, K, 4) x0 y0 x1 y1 in crop pixels; batch["box_mask"] (B, rho, K)
        batch["box_frame"]  # (B, rho) index into T of the frame the boxes belong to
        batch["label"], batch["key"], batch["clip_start_s"]  # (B,), list[str], (B, rho)

Work split: DataLoader worker processes read their shard spans (``train/streaming.py``),
plan every sample (``train/sampler.py``), cut each clip's fragments out of its MP4, shuffle
the slices in a bounded buffer, then either decode + augment them (``device="cpu"``,
``train/decode_pyav.py``) or hand plans + slices to the DALI pipeline in the main process
(``device="cuda"``, ``train/dali_pipeline.py``). Both executors run the same plans.

Evaluation (``evaluation=True``): no shard shuffling, no buffer, no colour/flip/blur,
``clips_per_video`` evenly spaced clips x ``spatial_crops`` fixed crops per video, returned in
the rho dimension (``video`` is (B, views, 3, T, S, S)); every sample is returned once.
"""

from __future__ import annotations

import collections
import functools
import logging
import multiprocessing as mp
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rhovid.errors import NotFoundError, UnknownNameError, UsageError
from rhovid.ingest.fragments import ClipSlice
from rhovid.ingest.reader import ShardReader, read_index, shard_name, shard_url, split_shards
from rhovid.ranged import FetchStats, RangeFetcher, data_summary, prefetch
from rhovid.train.data_config import DataConfig, check_data_config
from rhovid.train.sampler import RANDOM_BOXES, SamplePlan, plan_sample, sample_seed
from rhovid.train.streaming import (
    assign,
    batches_per_worker,
    check_batches,
    dist_position,
    resolve_workers,
    shuffle_buffer,
    worker_sizes,
    worker_skips,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderConfig(DataConfig):
    """Everything one clip loader needs: the ``DataConfig`` (what is sampled, inherited field by
    field) plus where and how this loader runs."""

    batch_size: int = 16
    """Videos per batch (B)."""
    device: str = "cpu"
    """"cpu" (PyAV in workers) or "cuda" (DALI mixed decode + GPU augmentation)."""
    seed: int = 0
    """Seed of shard order, shuffle buffer and every plan."""
    evaluation: bool = False
    """True = evaluation: deterministic centre/fixed crops, no colour/flip/blur, no shuffling."""
    clips_per_video: int = 1
    """Evaluation: evenly spaced clips per video (multi-view test)."""
    spatial_crops: tuple[str, ...] = ("centre",)
    """Evaluation: fixed square crops per clip ("left", "centre", "right")."""
    shuffle_buffer: int = 32
    """Samples (as clip slices, not whole videos) in each worker's shuffle buffer."""
    drop_last: bool | None = None
    """Drop each worker's last partial batch (None = drop unless evaluation)."""
    rank: int | None = None
    """Distributed rank (None = torch.distributed's, or 0)."""
    world_size: int | None = None
    """Distributed world size (None = torch.distributed's, or 1)."""
    start_method: str = "spawn"
    """Worker start method; spawn is safe with CUDA/DALI in the parent."""
    device_id: int = 0
    """CUDA device for the DALI path."""
    dali_threads: int = 4
    """CPU threads of the DALI pipeline."""
    io_inflight: int = 16
    """Ranged reads in flight per worker (and samples read ahead of the decoder): hides storage latency."""
    io_attempts: int = 6
    """Tries per ranged read before the sample is skipped (retries back off exponentially)."""

    @classmethod
    def from_data(cls, data: DataConfig, **runtime) -> LoaderConfig:
        """A loader for ``data`` (every ``DataConfig`` field copied) with the run-time fields ``runtime``."""
        return cls(**{f.name: getattr(data, f.name) for f in fields(DataConfig)}, **runtime)


class ClipDataset(IterableDataset):
    """One rank's stream of batches for the current epoch (read from shared counters)."""

    def __init__(self, cfg: LoaderConfig, shards: list[tuple[str, int]], rank: int, world: int,
                 box_set: str | None, state, decode: bool = True):
        self.cfg, self.shards, self.rank, self.world = cfg, shards, rank, world
        self.box_set, self.state, self.decode = box_set, state, decode
        self.drop_last = not cfg.evaluation if cfg.drop_last is None else cfg.drop_last

    def quota(self) -> int:
        """Samples this rank reads per epoch (equal for every rank, ``streaming.rank_quota``)."""
        total = sum(n for _, n in self.shards)
        return total if self.world == 1 else total // self.world

    def batch_counts(self) -> list[int]:
        """Batches each worker yields this epoch."""
        return batches_per_worker(worker_sizes(self.quota(), self.cfg.workers), self.cfg.batch_size, self.drop_last)

    def __iter__(self):
        info = get_worker_info()
        w, nw = (0, 1) if info is None else (info.id, info.num_workers)
        epoch, consumed = self.state["epoch"].value, self.state["consumed"].value
        counts = self.batch_counts()
        # The DataLoader always starts its round-robin at worker 0; after a resume the next
        # batch is due from worker `consumed % nw`, so worker ids are rotated by that much
        # (batch counts are non-increasing in the worker id, so the order stays identical).
        w = (w + consumed) % nw
        skip = worker_skips(counts, consumed)[w]
        # Samples this worker had read when the position was saved (bad ones included, so a skipped
        # sample does not shift the resume point); -1: a position saved without it, B per batch.
        done = self.state["items"][w]
        shuffle = not self.cfg.evaluation
        items = self._plans(assign(self.shards, self.cfg.seed, epoch, self.rank, self.world, w, nw, shuffle), epoch)
        if shuffle:
            items = shuffle_buffer(items, self.cfg.shuffle_buffer, (self.cfg.seed, epoch, self.rank, w))
        for batch, n in self._batches(items, skip * self.cfg.batch_size if done < 0 else done, counts[w] - skip):
            yield {**batch, "_worker": w, "_items": n}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_shard_reader", None)  # threads and caches are per process
        return state

    def _reader(self) -> ShardReader:
        """This process's shard reader (made in the worker, after the dataset was sent to it)."""
        if getattr(self, "_shard_reader", None) is None:
            fetcher = RangeFetcher(self.cfg.io_inflight, self.cfg.io_attempts)
            self._shard_reader = ShardReader(fetcher)
            self._published = FetchStats()
        return self._shard_reader

    def _publish_io(self) -> None:
        """Add this process's new fetch counts to the loader's shared counters."""
        now = self._reader().fetcher.stats
        for name, value in now.as_dict().items():
            delta = value - getattr(self._published, name)
            if delta:
                counter = self.state[f"io_{name}"]
                with counter.get_lock():
                    counter.value += delta
                setattr(self._published, name, value)

    def _plans(self, spans, epoch):
        """(plan, slices, error) per sample of the spans, in read order.

        One manifest read per shard, then per sample one ranged read per group of overlapping
        clips (``rhovid.ingest.reader``), ``io_inflight`` samples ahead of the consumer, so a
        10-minute video costs what a 10-second one does and storage latency is hidden.

        Skip-and-count: a sample whose json, fields or bytes cannot be used gives an error instead
        of a plan, and so does every sample the index promised that the shard does not hold (cut
        off, 0 bytes, not a tar), so each worker still knows how many of its samples were lost.
        """
        reader = self._reader()

        def start(item):
            job, err = item
            if err is not None:
                return None
            plan, sample, shard = job
            return reader.submit_clips(shard, sample, [c.frames for c in plan.clips])

        try:
            for (job, err), fut in prefetch(self._planned(spans, epoch, reader), start, self.cfg.io_inflight):
                if err is None:
                    plan, sample, shard = job
                    t = time.perf_counter()
                    try:
                        slices = fut.result()
                    except Exception as e:  # noqa: BLE001 - unreadable bytes: skip the sample, never the epoch
                        err = f"{shard}:{sample.key}: {type(e).__name__}: {e}"
                    reader.fetcher.count(wait_us=int(1e6 * (time.perf_counter() - t)))
                self._publish_io()
                yield (None, None, err) if err is not None else (plan, slices, None)
        finally:
            reader.fetcher.close()
            self._publish_io()

    def _planned(self, spans, epoch, reader: ShardReader):
        """``((plan, manifest sample, shard), None)`` or ``(None, error)`` per sample of the spans."""
        cfg = self.cfg
        for span in spans:
            t = time.perf_counter()
            try:
                samples = reader.manifest(span.shard).samples[span.start:span.stop]  # one read per shard, cached
            except Exception as e:  # noqa: BLE001 - missing, 0 bytes, no tar: its samples are skipped and counted
                for n in range(span.start, span.stop):
                    yield None, f"{span.shard}: sample {n}: {type(e).__name__}: {e}"
                continue
            finally:
                reader.fetcher.count(wait_us=int(1e6 * (time.perf_counter() - t)))
            for n in range(len(samples), span.stop - span.start):
                yield None, f"{span.shard}: sample {span.start + n} is missing (the shard holds {len(samples)})"
            shard_boxes = None
            if cfg.boxes is not None and cfg.boxes not in RANDOM_BOXES:  # one read per shard (DESIGN.md decision 5)
                from rhovid.store.zarr_store import BoxStore

                shard_boxes = BoxStore(cfg.data).load(shard_name(span.shard), self.box_set)
            for sample in samples:
                if sample.error is not None:
                    yield None, f"{span.shard}:{sample.key}: {sample.error}"
                    continue
                try:
                    meta = sample.meta
                    lookup = None if shard_boxes is None else functools.partial(shard_boxes.lookup, sample.key)
                    plan = plan_sample(
                        meta, sample_seed(cfg.seed, epoch, sample.key), cfg, evaluation=cfg.evaluation, lookup=lookup,
                        clips_per_video=cfg.clips_per_video, spatial_crops=cfg.spatial_crops,
                    )
                    yield (plan, sample, span.shard), None
                except Exception as e:  # any field the sample gets wrong (check_meta): skip it, never the epoch
                    yield None, f"{span.shard}:{sample.key}: {type(e).__name__}: {e}"

    def _batches(self, items, skip_samples: int, target: int):
        """Decode (or pass through) samples into ``target`` batches, skipping bad samples.

        Yields ``(batch, n)``: n = items read so far this epoch (skipped ones included). The first
        ``skip_samples`` items were consumed before a resume: planned, not decoded.
        """
        B = self.cfg.batch_size
        good: list = []
        last: collections.deque = collections.deque(maxlen=B)  # the B latest good samples, for padding
        made = n = 0
        for plan, slices, err in items:
            if made >= target:
                break
            n += 1
            if n <= skip_samples:
                if err is None:
                    last.append((plan, slices, False))
                continue
            if err is None:
                try:
                    item = (plan, self._decode(plan, slices))
                except Exception as e:  # any decoder failure: skip the sample, never the epoch
                    err = f"{plan.key}: {type(e).__name__}: {e}"
            if err is not None:
                self._skip(err)
                continue
            good.append(item)
            last.append((*item, True))
            if len(good) == B:
                yield self._collate(good), n
                made += 1
                good = []
        if not self.drop_last:  # evaluation: every good sample once, the last batch partial
            if good and made < target:
                yield self._collate(good), n
            return
        # Short only because samples were skipped: repeat the latest good samples so every worker (and
        # rank) yields exactly `target` batches, as len() and the resume arithmetic (worker_skips)
        # count on, and DDP would hang on a missing one. After a resume they are decoded here, so the
        # padding is the uninterrupted run's (unless one of them fails only when decoded).
        pool = []
        for plan, data, decoded in last:
            try:
                pool.append((plan, data if decoded else self._decode(plan, data)))
            except Exception:  # was skipped (and counted) by the run that read it first
                continue
        while pool and made < target:
            yield self._collate((pool * B)[:B]), n
            made += 1

    def _decode(self, plan: SamplePlan, slices):
        """The clips of a plan (CPU path) or its slices unchanged (DALI decodes in the main process)."""
        if not self.decode:
            return slices
        from rhovid.train.decode_pyav import execute_plan

        return execute_plan(plan, slices, self.cfg.mean, self.cfg.std, self.cfg.antialias)

    def _skip(self, msg: str) -> None:
        with self.state["skipped"].get_lock():
            self.state["skipped"].value += 1
            total = self.state["skipped"].value
        log.warning("skipped unusable sample %s (%d skipped so far)", msg, total)

    def _collate(self, items: list) -> dict:
        plans: list[SamplePlan] = [p for p, _ in items]
        out = {
            "boxes": torch.tensor(np.array([[c.boxes for c in p.clips] for p in plans], np.float32)),
            "box_mask": torch.tensor(np.array([[c.box_mask for c in p.clips] for p in plans], bool)),
            "box_frame": torch.tensor([[c.box_frame for c in p.clips] for p in plans], dtype=torch.long),
            "label": torch.tensor([p.label for p in plans], dtype=torch.long),
            "key": [p.key for p in plans],
            "clip_start_s": torch.tensor([[c.start_s for c in p.clips] for p in plans], dtype=torch.float32),
        }
        if self.decode:
            out["video"] = torch.from_numpy(np.stack([v for _, v in items]))
        else:
            out["plans"] = plans
            out["slices"] = [s for _, s in items]
        return out


def _worker_init(_worker_id: int) -> None:
    """Set up a decode worker process: one OpenCV thread, and leave with ``os._exit``.

    One process per core already: OpenCV's own thread pool would only oversubscribe the cores
    (torch does the same for its threads in DataLoader workers).

    When a loader is dropped mid-epoch (end of training, a benchmark), torch stops its workers
    while their queue feeder thread may still be sharing a prefetched batch's storage; the
    interpreter shutdown then kills that thread inside libtorch and the worker aborts with
    "terminate called without an active exception" (seen at the end of every run). A worker
    has nothing to flush (the main process does all writing), so ``atexit`` skips finalisation.
    """
    import atexit
    import os

    import cv2

    from rhovid.lifetime import die_with_parent

    die_with_parent()  # a parent killed during start-up must not leave this worker behind (lifetime.py)
    cv2.setNumThreads(1)
    atexit.register(os._exit, 0)


def check_loader_config(cfg: LoaderConfig) -> None:
    """Reject settings no sampler can satisfy, naming the field (a negative timespan, say, would
    otherwise surface as an epoch without batches)."""
    check_data_config(cfg, {"batch_size": 1, "clips_per_video": 1, "shuffle_buffer": 0})


def check_box_set(store, box_set: str, shards: list[str]) -> None:
    """Refuse to start when a shard of the split lacks the box set (naming the command that computes
    it) rather than fail in a worker once training is under way."""
    from rhovid.store.zarr_store import group_status

    missing = [s for s in shards if group_status(store.root, s, box_set) != "complete"]
    if missing:
        try:
            store.attrs(missing[0], box_set)
        except KeyError as e:  # names the shard and the `rhovid boxes` command
            raise UsageError(f"{len(missing)} of {len(shards)} shards lack a complete box set {box_set} "
                             f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): {e.args[0]}") from None


class ClipLoader:
    """Iterable of batch dicts (see module docstring); ``len()`` = batches per epoch."""

    def __init__(self, cfg: LoaderConfig):
        if cfg.device not in ("cpu", "cuda"):
            raise UsageError(f"device must be 'cpu' or 'cuda', got {cfg.device!r}")
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("LoaderConfig.device='cuda' (DALI mixed decoding) but torch sees no CUDA device; "
                             "use device='cpu' (PyAV decoding)")
        check_loader_config(cfg)
        if not cfg.data:
            raise UsageError("LoaderConfig.data is empty: pass the folder written by `rhovid ingest`")
        self.cfg = cfg
        index_fetcher = RangeFetcher(attempts=cfg.io_attempts)
        try:
            self.shards = split_shards(cfg.data, cfg.split, index_fetcher)  # (path or URL, samples) from index.json
        except FileNotFoundError as e:
            raise NotFoundError(f"no shards of split {cfg.split!r} in {cfg.data}: {e}") from None
        if not self.shards:
            raise NotFoundError(f"no shards of split {cfg.split!r} in {shard_url(cfg.data, '')}")
        box_set = None
        if cfg.boxes is not None and cfg.boxes not in RANDOM_BOXES:
            from rhovid.store.zarr_store import BoxStore

            box_set = BoxStore(cfg.data).resolve(cfg.boxes)  # KeyError listing the sets
            check_box_set(BoxStore(cfg.data), box_set, [shard_name(p) for p, _ in self.shards])
        self.rank, self.world = dist_position(cfg.rank, cfg.world_size)
        ctx = mp.get_context(cfg.start_method)
        self._state = {name: ctx.Value("q", 0) for name in ("epoch", "consumed", "skipped")}
        self._state.update({f"io_{name}": ctx.Value("q", v) for name, v in index_fetcher.stats.as_dict().items()})
        self.dataset = ClipDataset(cfg, self.shards, self.rank, self.world, box_set, self._state,
                                   decode=cfg.device == "cpu")
        q, drop = self.dataset.quota(), self.dataset.drop_last
        workers = resolve_workers(cfg.workers, q, cfg.batch_size, drop)
        self.cfg = self.dataset.cfg = cfg = replace(cfg, workers=workers)
        self._state["items"] = ctx.Array("q", max(1, workers))  # per worker: samples read this epoch
        check_batches(q, workers, cfg.batch_size, drop, f"split {cfg.split!r} of {cfg.data}", self.world)
        kw = {}
        if cfg.workers > 0:
            kw = dict(multiprocessing_context=ctx, persistent_workers=True, prefetch_factor=2,
                      worker_init_fn=_worker_init)
        # Its own generator: creating an iterator draws a base seed, which from torch's global RNG would
        # shift the trainer's random stream by one draw per epoch start (and differently after a resume).
        self._dl = DataLoader(self.dataset, batch_size=None, num_workers=cfg.workers,
                              generator=torch.Generator().manual_seed(cfg.seed), **kw)
        self._dali = None
        self.epoch = 0
        self._consumed = 0
        self._items: list[int] | None = [0] * max(1, workers)

    @property
    def skipped(self) -> int:
        """Samples skipped because they could not be read or decoded (all workers, all epochs)."""
        return self._state["skipped"].value

    @property
    def io_stats(self) -> FetchStats:
        """Bytes, requests, retries and failed reads of every worker so far (all epochs)."""
        return FetchStats(**{name: self._state[f"io_{name}"].value for name in FetchStats().as_dict()})

    def summary(self) -> str:
        """One line for the end of a run: what was read and what was skipped (``data: ...``)."""
        return data_summary(self.io_stats, self.skipped)

    def __len__(self) -> int:
        return sum(self.dataset.batch_counts())

    @property
    def position(self) -> int:
        """Batches consumed in ``epoch`` (``len(self)`` once it is finished)."""
        return self._consumed

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` at its beginning (new shard order and new plans)."""
        self.epoch, self._consumed, self._items = int(epoch), 0, [0] * max(1, self.cfg.workers)

    def state_dict(self) -> dict:
        """Resume position: epoch and batches consumed in it ((e, len) = epoch e finished), seed, workers,
        and the samples each worker had read (skipped ones included)."""
        return {"epoch": self.epoch, "batches": self._consumed, "seed": self.cfg.seed, "workers": self.cfg.workers,
                "items": list(self._items) if self._items is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a ``state_dict()`` position (the next batch is the one after it)."""
        if state.get("seed", self.cfg.seed) != self.cfg.seed:
            raise UsageError(f"loader state is for seed {state['seed']}, this loader has seed {self.cfg.seed}")
        if state.get("workers", self.cfg.workers) != self.cfg.workers:
            # each worker reads its own share of the epoch: the rest of this epoch is split differently
            log.warning("resuming with %d loader workers instead of %d: the rest of epoch %d reads other "
                        "samples than the uninterrupted run (exact resume needs the same workers)",
                        self.cfg.workers, state["workers"], state["epoch"])
        if not 0 <= int(state["batches"]) <= len(self):
            raise UsageError(f"loader position {state['batches']} is outside this epoch of {len(self)} batches: "
                             "the data, batch size or workers differ from the run that saved it")
        self.epoch, self._consumed = int(state["epoch"]), int(state["batches"])
        items = state.get("items")
        same = isinstance(items, list) and len(items) == max(1, self.cfg.workers)
        self._items = [int(n) for n in items] if same else None

    def __iter__(self):
        # The loader owns its epoch (train/batch_stream.py): a finished epoch (all batches consumed) moves
        # on here, when iterated again, and nowhere else, so a position saved after the last batch of
        # epoch e, (e, len), resumes with epoch e + 1 exactly once.
        if self._consumed >= len(self):
            self.set_epoch(self.epoch + 1)
        self._state["epoch"].value = self.epoch
        self._state["consumed"].value = self._consumed
        for w in range(len(self._state["items"])):
            self._state["items"][w] = -1 if self._items is None else self._items[w]
        for batch in self._dl:
            w, n = batch.pop("_worker"), batch.pop("_items")
            if self._items is not None:
                self._items[w] = n
            if self.cfg.device == "cuda":
                batch = self._run_dali(batch)
            self._consumed += 1
            yield batch

    def _run_dali(self, batch: dict) -> dict:
        from rhovid.train.dali_pipeline import DaliClipExecutor, crop_blur_radius

        if self._dali is None:
            self._dali = DaliClipExecutor(
                clips_per_batch=self.cfg.batch_size * len(batch["plans"][0].clips), frames=self.cfg.frames,
                crop=self.cfg.crop, device_id=self.cfg.device_id, num_threads=self.cfg.dali_threads,
                mean=self.cfg.mean, std=self.cfg.std, antialias=self.cfg.antialias,
                crop_blur_radius=crop_blur_radius(self.cfg.augment),
            )
        plans, slices = batch.pop("plans"), batch.pop("slices")
        video = self._dali.run(plans, slices)  # (B * rho, 3, T, S, S) on the GPU
        batch["video"] = video.reshape(len(plans), -1, *video.shape[1:])
        return batch


def plans_and_slices(data: str | Path, key: str, plan_fn) -> tuple[SamplePlan, list[ClipSlice], dict]:
    """Read one sample by key and plan it with ``plan_fn(meta) -> SamplePlan`` (tests, benchmarks)."""
    entry = next((e for e in read_index(data) if e["key"] == key), None)
    if entry is None:
        raise UnknownNameError(f"sample {key!r} not in {data}/index.json")
    shard = shard_url(data, entry["shard"])
    reader = ShardReader()
    try:
        sample = next((s for s in reader.manifest(shard).samples if s.key == key), None)
        if sample is None:
            raise UnknownNameError(f"sample {key!r} listed in index.json but not found in {shard}")
        plan = plan_fn(sample.meta)
        return plan, reader.read_clips(shard, sample, [c.frames for c in plan.clips]), sample.meta
    finally:
        reader.close()
