"""``ingest()``: source specs -> per-video tasks on a pool/cluster -> shards written by this process.

Resume rules (ingest/FORMAT.md): a run holds ``DATA/.ingest.lock`` (a second run into the same
DATA waits for it), sweeps ``.tmp-`` leftovers (partial shards of a killed run), reconciles
the index with the finished shards' contents, skips every source whose key is already in a
finished shard, and retries the rest (including earlier failures). Killing the process at
any moment therefore loses at most the open shards' samples, which the next run redoes; no
sample is ever in two finished shards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rhovid import storage
from rhovid.atomic import append_jsonl, atomic_write_text, read_jsonl, sweep_temporaries
from rhovid.config import save_config, to_dict
from rhovid.errors import UsageError
from rhovid.executor import map_unordered
from rhovid.ingest import quality
from rhovid.ingest.manifest import manifest_name, write_manifest
from rhovid.ingest.reader import (
    DamagedIndexError,
    iter_shard,
    list_shards,
    read_index_file,
    shard_keys,
    shards_dir,
)
from rhovid.ingest.shards import ShardWriter, index_entry, write_idx, write_index
from rhovid.ingest.sources import Source, assign_labels, expand_specs, sample_key
from rhovid.ingest.transcode import X264_MAX_BFRAMES, X264_PRESETS, X264_TUNES, TranscodeSettings
from rhovid.ingest.worker import Task, run_task
from rhovid.locks import hold

FAILED_FILE = "failed.jsonl"
RUNS_FILE = "ingest-runs.jsonl"
log = logging.getLogger(__name__)
_SPLIT_RE = re.compile(r"[A-Za-z0-9_]+")
CONFIG_FILE = "ingest.json"
LOCK_FILE = ".ingest.lock"
# Fields that change the bytes of a sample: a rerun into the same DATA must not change them.
OUTPUT_FIELDS = ("fps", "short_side", "gop", "crf", "preset", "tune", "bframes", "keep_audio")
# The default GOP, chosen by measurement (README "Choosing the GOP"): 16 frames.
DEFAULT_GOP = 16


@dataclass(frozen=True)
class IngestConfig:
    """Settings of one ingest run."""

    fps: float = 30.0
    """Constant output frame rate."""
    short_side: int = 256
    """Shorter output side in pixels (even)."""
    gop: int = DEFAULT_GOP
    """Frames per GOP = per fragment (keyframe interval)."""
    shard_size: int = 1 << 30
    """Close a shard once it holds this many bytes."""
    shard_count: int | None = None
    """Close a shard once it holds this many samples (None = size only)."""
    workers: int = 0
    """0 = transcode inline; N = local process pool of N."""
    scheduler: str | None = None
    """Dask distributed scheduler address; overrides ``workers``."""
    keep_audio: bool = False
    """Keep the first audio track (AAC) instead of dropping audio."""
    progress: bool = True
    """Show a progress bar."""
    split: str = "train"
    """Split of sources that name none (folders, list files, CSV rows without split)."""
    videos_root: str | None = None
    """Where Kinetics CSV rows' videos live (default: the CSV's folder)."""
    min_frames: int = 16
    """Reject sources that yield fewer output frames (shorter than one clip)."""
    max_pixels: int = 8192 * 4320
    """Reject sources with more pixels per frame (8K)."""
    min_coverage: float = 0.9
    """Reject outputs shorter than this fraction of the probed duration (truncated input)."""
    crf: int = 23
    """x264 constant rate factor."""
    preset: str = "veryfast"
    """x264 preset."""
    tune: str | None = None
    """x264 tune, e.g. ``fastdecode`` (see ``TranscodeSettings.tune``); None = none."""
    bframes: int | None = None
    """Fixed x264 B-frames between references (see ``TranscodeSettings.bframes``); None = adaptive."""
    threads: int | None = None
    """ffmpeg threads per video; None = 1 in a pool/cluster (it supplies parallelism), else auto."""
    timeout_s: float | None = None
    """Kill one video's ffmpeg after this many seconds; None = 60 s + 5 s per second of video."""
    quality_frames: int = 4
    """Frames per video compared with the source (PSNR/SSIM in the sample json); 0 = none."""
    max_gap_s: float = 60.0
    """Reject sources whose timestamps leave one frame on screen longer than this (seconds)."""
    max_memory: int | None = 4 << 30
    """Memory (data segment) one video's ffmpeg may use, in bytes; None = no limit."""


@dataclass
class IngestReport:
    """What one ``ingest()`` call did."""

    ingested: int = 0
    skipped: int = 0
    failed: int = 0
    shards: list[str] = field(default_factory=list)
    seconds: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0
    failures: list[dict] = field(default_factory=list)
    quality: dict | None = None
    """``quality.summarise`` of this run's new samples (None when none were measured)."""

    def summary(self) -> str:
        rate = self.ingested / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"ingested {self.ingested}, skipped {self.skipped} (already in shards), failed {self.failed}; "
            f"{len(self.shards)} new shards; {self.input_bytes / 1e6:.1f} MB in -> "
            f"{self.output_bytes / 1e6:.1f} MB out in {self.seconds:.1f} s ({rate:.2f} videos/s)"
        )
        q = self.quality
        if q:
            cost = q["seconds"] / q["transcode_seconds"] if q["transcode_seconds"] > 0 else 0.0
            text += (f"\ntranscode quality vs source ({q['samples']} videos, luma): PSNR mean {q['psnr_db_mean']:.2f} dB, "
                     f"min {q['psnr_db_min']:.2f} dB; SSIM mean {q['ssim_mean']:.4f}, min {q['ssim_min']:.4f} "
                     f"(measuring cost {100 * cost:.1f} % of the transcode time)")
        return text


def ingest(sources: list[str | Source], out: str | Path, cfg: IngestConfig, on_shard=None,
           stage: str | Path | None = None) -> IngestReport:
    """Ingest ``sources`` into ``out`` (resumable; see the module docstring).

    Holds ``out/.ingest.lock`` while it runs: a second ingest into the same ``out`` waits for
    this one, then skips what it finished (``rhovid.locks``).

    Args:
        sources: folder trees, Kinetics CSV files, list files, video files and/or ``Source``s.
        out: the DATA folder, or an ``s3://`` / ``gs://`` URL (``rhovid.ingest.publish``: shards
            are built in ``stage`` and uploaded whole).
        cfg: run settings.
        on_shard: called as ``on_shard(path, metas)`` after each shard is finished and indexed.
        stage: local build folder of a remote ``out`` (default ``publish.default_stage``).

    Raises:
        FileNotFoundError: a source spec does not exist.
        ValueError: ``out`` was ingested with different output settings.
    """
    t0 = time.perf_counter()
    check_config(cfg)
    if storage.is_remote(out):
        from rhovid.ingest.publish import ingest_remote

        return ingest_remote(sources, str(out), cfg, stage)
    out = storage.local_path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    _check_config(out, cfg)
    specs = expand_specs(sources, cfg.split, cfg.videos_root)
    # `rhovid ingest . --out data` must not ingest its own shards (realpath: never raises on a symlink loop)
    inside = os.path.realpath(out)
    specs = [s for s in specs if not Path(os.path.realpath(s.path)).is_relative_to(inside)]
    bad_splits = sorted({s.split for s in specs if not _SPLIT_RE.fullmatch(s.split)})
    if bad_splits:
        raise UsageError(f"split names {bad_splits} must be letters, digits or '_'")
    # Pinned only once the sources were found: a mistyped source path must not leave an
    # ingest.json that refuses the corrected command's settings.
    out.mkdir(parents=True, exist_ok=True)

    def waiting(who: str) -> None:
        log.warning("%s is being written by another rhovid ingest (%s); waiting for it to finish", out, who)

    with hold(out / LOCK_FILE, on_wait=waiting):
        _check_config(out, cfg)  # again: the run we waited for may have pinned other settings
        save_config(cfg, out / CONFIG_FILE)
        return _ingest_locked(specs, out, cfg, t0, on_shard)


def _ingest_locked(specs: list[Source], out: Path, cfg: IngestConfig, t0: float, on_shard=None) -> IngestReport:
    """The run itself, with ``out`` locked: recover, skip, transcode, write shards and index
    (``t0``: when the run started, for its report; ``on_shard``: as ``ingest``'s)."""
    sweep_temporaries(shards_dir(out))
    sweep_temporaries(out)
    doc = recover_index(out)
    unlisted = [s for s in specs if s.error is not None]  # folders discovery could not list
    specs, labels = assign_labels([s for s in specs if s.error is None], doc["labels"])
    samples = doc["samples"]
    done = {e["key"]: e for e in samples}
    todo = [s for s in specs if sample_key(s) not in done]
    # A key is unique across splits: a source already stored under another split (the same
    # file listed as train and as test, or two folders with equal names) is an error, not a skip.
    clash = [s for s in specs if sample_key(s) in done and done[sample_key(s)]["split"] != s.split]
    report = IngestReport(skipped=len(specs) - len(todo) - len(clash))
    _reset_failures(out, {sample_key(s) for s in specs + unlisted})
    write_index(out, samples, labels)
    records = [{"source": s.path, "key": sample_key(s), "stage": "discover", "reason": s.error} for s in unlisted]
    for s in clash:
        e = done[sample_key(s)]
        records.append(
            {"source": s.path, "key": e["key"], "stage": "split",
             "reason": f"key {e['key']!r} is already ingested as split {e['split']!r} (shard {e['shard']}, "
                       f"from {e['source']}), not {s.split!r}; keys are unique across splits: give the "
                       "source another name or ingest into a new --out"})
    for record in records:
        append_jsonl(out / FAILED_FILE, record)
        report.failures.append(record)
        report.failed += 1

    threads = cfg.threads if cfg.threads is not None else (1 if cfg.workers > 0 or cfg.scheduler else 0)
    settings = TranscodeSettings(
        fps=cfg.fps, short_side=cfg.short_side, gop=cfg.gop, crf=cfg.crf, preset=cfg.preset,
        tune=cfg.tune, bframes=cfg.bframes, keep_audio=cfg.keep_audio, threads=threads,
    )
    tasks = [
        Task(s, sample_key(s), settings, cfg.min_frames, cfg.max_pixels, cfg.min_coverage, cfg.timeout_s,
             cfg.quality_frames, cfg.max_gap_s, cfg.max_memory)
        for s in todo
    ]
    last_index_write = [time.monotonic()]

    def on_finish(path: Path, metas: list[dict]) -> None:
        samples.extend(index_entry(m, path.name) for m in metas)
        report.shards.append(path.name)
        if time.monotonic() - last_index_write[0] > 30:  # recover_index covers the gap after a kill
            write_index(out, samples, labels)
            last_index_write[0] = time.monotonic()
        if on_shard is not None:
            on_shard(path, metas)

    writers: dict[str, ShardWriter] = {}
    measured: list[dict] = []
    seconds = {"transcode_s": 0.0, "quality_s": 0.0}
    results = map_unordered(
        run_task, tasks, workers=cfg.workers, scheduler=cfg.scheduler, desc="ingest", unit="video",
        nbytes=lambda v: v["source_bytes"], progress=cfg.progress,
    )
    try:
        for res in results:
            report.input_bytes += res.value["source_bytes"] if res.ok else 0
            if res.ok and res.value["ok"]:
                value = res.value
                split = value["meta"]["split"]
                if split not in writers:
                    writers[split] = ShardWriter(out, split, cfg.shard_size, cfg.shard_count, on_finish)
                writers[split].add(value["key"], value["mp4"], value["meta"])
                report.ingested += 1
                report.output_bytes += len(value["mp4"])
                if "psnr_db_mean" in value["meta"].get("quality", {}):
                    measured.append(value["meta"]["quality"])
                    seconds = {k: seconds[k] + value[k] for k in seconds}
            else:
                record = _failure_record(res)
                append_jsonl(out / FAILED_FILE, record)
                report.failures.append(record)
                report.failed += 1
    except KeyboardInterrupt:
        # Samples already added are complete: keep them (finish the open shards), then stop.
        for w in writers.values():
            w.close()
        write_index(out, samples, labels)
        raise
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    write_index(out, samples, labels)
    report.seconds = time.perf_counter() - t0
    report.quality = quality.summarise(measured, seconds["quality_s"], seconds["transcode_s"])
    append_jsonl(out / RUNS_FILE, {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ingested": report.ingested,
                                   "skipped": report.skipped, "failed": report.failed, "shards": report.shards,
                                   "seconds": round(report.seconds, 3), "quality": report.quality})
    return report


def check_config(cfg: IngestConfig) -> None:
    """Reject settings no video can be ingested with, naming the field, before anything is
    written (otherwise every source would fail on its own and ingest.json would pin them)."""
    lows = {"fps": 0, "short_side": 1, "gop": 0, "shard_size": 0, "min_frames": 0, "max_pixels": 0}
    for name, low in lows.items():  # each must be > low
        if not getattr(cfg, name) > low:
            raise UsageError(f"{name} must be > {low}, got {getattr(cfg, name)}")
    if cfg.shard_count is not None and cfg.shard_count < 1:
        raise UsageError(f"shard_count must be >= 1 (or unset), got {cfg.shard_count}")
    if cfg.quality_frames < 0:
        raise UsageError(f"quality_frames must be >= 0 (0 = off), got {cfg.quality_frames}")
    if cfg.workers < 0:
        raise UsageError(f"workers must be >= 0 (0 = inline), got {cfg.workers}")
    if not 0 <= cfg.crf <= 51:
        raise UsageError(f"crf must be in 0..51 (x264, 8-bit), got {cfg.crf}")
    if not 0 < cfg.min_coverage <= 1:
        raise UsageError(f"min_coverage must be in (0, 1], got {cfg.min_coverage}")
    if cfg.timeout_s is not None and cfg.timeout_s <= 0:
        raise UsageError(f"timeout_s must be > 0 (or unset), got {cfg.timeout_s}")
    if not cfg.max_gap_s > 0:
        raise UsageError(f"max_gap_s must be > 0, got {cfg.max_gap_s}")
    if cfg.max_memory is not None and cfg.max_memory < 1 << 20:
        raise UsageError(f"max_memory must be at least 1M (or unset), got {cfg.max_memory}")
    if cfg.preset not in X264_PRESETS:
        raise UsageError(f"preset {cfg.preset!r} is not an x264 preset; choose one of {', '.join(X264_PRESETS)}")
    if cfg.tune is not None and cfg.tune not in X264_TUNES:
        raise UsageError(f"tune {cfg.tune!r} is not an x264 tune; choose one of {', '.join(X264_TUNES)}")
    if cfg.bframes is not None and not 0 <= cfg.bframes <= X264_MAX_BFRAMES:
        raise UsageError(f"bframes must be in 0..{X264_MAX_BFRAMES} (x264), got {cfg.bframes}")


def recover_index(out: Path) -> dict:
    """index.json reconciled with the contents of the finished shards on disk.

    Each shard's sample keys (its tar headers) are compared with the index's rows for it; a
    shard the index lists wrongly or not at all (a kill between rename and index write, or a
    shard replaced behind the index's back) is read back. Rows of shards that no longer exist
    are dropped; missing ``.idx`` files and manifests are rewritten.

    Raises:
        ValueError: a finished shard cannot be read (named, with what to do).
    """
    try:
        doc = read_index_file(out)
    except DamagedIndexError as e:
        # The shards are the source of truth: read every one back, labels from their samples.
        log.warning("%s; rebuilding it from the shards", e.args[0].split(";")[0])
        doc = {"labels": [], "samples": []}
    rows: dict[str, list[dict]] = {}
    for e in doc["samples"]:
        rows.setdefault(e["shard"], []).append(e)
    samples = []
    for path in list_shards(out):
        try:
            keys = shard_keys(path)
            if [e["key"] for e in rows.get(path.name, [])] != keys:
                rows[path.name] = [index_entry(s["json"], path.name) for s in iter_shard(path)]
        except (tarfile.TarError, ValueError, OSError, KeyError) as e:
            raise ValueError(
                f"finished shard {path} is damaged ({type(e).__name__}: {e}); restore it from a copy, or delete it "
                "with its .idx and manifest to ingest its sources again (`rhovid ingest --verify` lists every problem)"
            ) from e
        samples += rows.get(path.name, [])
        if not path.with_suffix(".idx").exists():
            write_idx(path)
        if not path.with_name(manifest_name(path.name)).exists():
            write_manifest(path)
    samples.sort(key=lambda e: e["shard"])  # stable: keeps shard order within a shard
    labels = list(doc.get("labels", []))
    for e in samples:  # label names the index lost (a rebuilt index) come back from the samples
        k = e.get("label")
        if k is None:
            continue
        if k >= len(labels):
            labels += [None] * (k + 1 - len(labels))
        if labels[k] is None:
            labels[k] = e.get("label_name")
    return {"labels": labels, "samples": samples}


def _check_config(out: Path, cfg: IngestConfig) -> None:
    """Refuse output settings other than those ``out`` was ingested with (its ``ingest.json``)."""
    path = out / CONFIG_FILE
    new = to_dict(cfg)
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in OUTPUT_FIELDS if k in old and old[k] != new[k]]
        if diff:
            raise UsageError(
                f"{out} was ingested with different output settings ({'; '.join(diff)}); "
                "rerun with the same settings or use a new --out"
            )


def _reset_failures(out: Path, keys: set[str]) -> None:
    """Drop failure records of sources this run handles (they are retried or already done)."""
    path = out / FAILED_FILE
    if not path.exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("key") not in keys]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _failure_record(res) -> dict:
    task: Task = res.task
    if res.ok:  # the worker rejected the source
        v = res.value
        return {"source": v["source"], "key": v["key"], "stage": v["stage"], "reason": v["reason"]}
    # the worker itself died or raised: a bug or a crash, not a verdict on the source
    return {"source": task.source.path, "key": task.key, "stage": "worker",
            "reason": f"{type(res.error).__name__}: {res.error}"}
