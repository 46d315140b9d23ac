"""``rhovid ingest SRC... --out DATA``: raw videos -> fragmented-MP4 WebDataset shards.

SRC may be a folder tree ``SRC/<class>/<video>``, a Kinetics-style CSV
(``label,youtube_id,time_start,time_end,split``; videos under ``--videos-root``), a list
file (``.txt``/``.lst``/``.list``, one path per line, unlabelled) or a single video.
With ``--dataset ucf101|hmdb51|kinetics`` SRC is the dataset's videos folder and
``--splits`` its official split files (``ucfTrainTestlist/``, ``testTrainMulti_7030_splits/``
or Kinetics' ``validate.csv``); every video's ``split`` and label come from them
(``rhovid.ingest.datasets``). Rerunning the same command resumes: sources already in finished shards are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys

from rhovid import storage
from rhovid.errors import UsageError
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.transcode import X264_PRESETS, X264_TUNES

_D = IngestConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0]
    p.epilog = __doc__.split("\n\n", 1)[1].strip()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("sources", nargs="*", metavar="SRC", help="folder tree, Kinetics CSV, list file or video")
    p.add_argument("--out", required=True, metavar="DATA",
                   help="output folder (shards/, index.json, failed.jsonl), or an s3:// / gs:// URL (shards are "
                        "built in --stage and uploaded whole)")
    p.add_argument("--stage", default=None, metavar="DIR",
                   help="local build folder when --out is a URL (default ~/.cache/rhovid/stage/<hash>; "
                        "$RHOVID_STAGE sets the parent)")
    p.add_argument("--fps", type=float, default=_D.fps, help="constant output frame rate (default %(default)s)")
    p.add_argument("--short-side", type=int, default=_D.short_side,
                   help="shorter output side in pixels (default %(default)s)")
    p.add_argument("--gop", type=int, default=_D.gop,
                   help="frames per GOP = per fragment (default %(default)s; see README for the measurement)")
    p.add_argument("--shard-size", type=_size, default=_D.shard_size,
                   help="close a shard at this many bytes; suffixes K/M/G (default 1G)")
    p.add_argument("--shard-count", type=int, default=_D.shard_count,
                   help="close a shard at this many samples (default: size only)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="local worker processes; 0 = inline (default: CPU count, %(default)s)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask distributed scheduler address, e.g. tcp://host:8786 (overrides --workers)")
    p.add_argument("--keep-audio", action="store_true", help="keep the first audio track (AAC)")
    p.add_argument("--split", default=_D.split,
                   help="split for sources that name none: folders, list files (default %(default)s)")
    p.add_argument("--videos-root", default=None, help="folder of the videos of a Kinetics CSV (default: its folder)")
    p.add_argument("--min-frames", type=int, default=_D.min_frames,
                   help="reject videos shorter than this many output frames (default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=_D.max_pixels,
                   help="reject inputs with more pixels per frame (default 8192x4320)")
    p.add_argument("--crf", type=int, default=_D.crf, help="x264 CRF (default %(default)s)")
    p.add_argument("--preset", default=_D.preset, choices=X264_PRESETS, metavar="PRESET",
                   help="x264 preset, ultrafast ... placebo (default %(default)s)")
    p.add_argument("--tune", default=None, choices=X264_TUNES,
                   help="x264 tune (default none); fastdecode: ~2x faster CPU decoding for ~10%% more bytes")
    p.add_argument("--bframes", type=int, default=None, metavar="N",
                   help="fixed x264 B-frames between references, 0-16 (default: the preset's adaptive choice); "
                        "more = fewer frames decoded per clip")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before one video's ffmpeg is killed (default: 60 + 5 per second of video)")
    p.add_argument("--max-gap", type=float, default=_D.max_gap_s, metavar="S",
                   help="reject videos whose timestamps jump more than S seconds between frames (default %(default)s)")
    p.add_argument("--max-memory", type=_size, default=_D.max_memory, metavar="SIZE",
                   help="memory one video's ffmpeg may use; suffixes K/M/G (default 4G)")
    p.add_argument("--quality-frames", type=int, default=4, metavar="N",
                   help="frames per video compared with the source: PSNR/SSIM in the sample json and the run "
                        "summary (default 4; 0 = off)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verify", action="store_true",
                   help="check DATA (--out) instead of ingesting: every tar, .idx, sample json and fragment table "
                        "and index.json; exit 1 with the list of problems")
    p.add_argument("--verify-decode", action="store_true",
                   help="with --verify: also decode each video's first and last frame")
    p.add_argument("--dataset", choices=["ucf101", "hmdb51", "kinetics"],
                   help="official benchmark splits: SRC = its videos folder, --splits = its split files")
    p.add_argument("--splits", metavar="PATH",
                   help="--dataset: ucfTrainTestlist/, testTrainMulti_7030_splits/ or the Kinetics CSV")
    p.add_argument("--fold", type=int, default=1, help="--dataset ucf101/hmdb51: official split 1-3 (default 1)")


def run(args: argparse.Namespace) -> int:
    if args.verify or args.verify_decode:
        return _verify(args)
    if not args.sources:
        raise UsageError("give at least one SRC to ingest (or --verify to check --out)")
    cfg = IngestConfig(
        fps=args.fps, short_side=args.short_side, gop=args.gop, shard_size=args.shard_size,
        shard_count=args.shard_count, workers=args.workers, scheduler=args.scheduler,
        keep_audio=args.keep_audio, progress=not args.no_progress, split=args.split,
        videos_root=args.videos_root, min_frames=args.min_frames, max_pixels=args.max_pixels,
        crf=args.crf, preset=args.preset, tune=args.tune, bframes=args.bframes, timeout_s=args.timeout,
        max_gap_s=args.max_gap, max_memory=args.max_memory, quality_frames=args.quality_frames,
    )
    sources = args.sources
    if args.dataset:
        from rhovid.ingest.datasets import dataset_sources

        if not args.splits or len(args.sources) != 1:
            raise UsageError(f"--dataset {args.dataset} needs exactly one SRC (the videos folder) and --splits PATH")
        sources = dataset_sources(args.dataset, args.sources[0], args.splits, args.fold)
    report = ingest(sources, args.out, cfg, stage=args.stage)
    print(report.summary())
    if report.failures:
        print(f"{report.failed} sources failed; reasons in {storage.join(args.out, 'failed.jsonl')}:", file=sys.stderr)
        _print_head([f"{rec['source']}: [{rec['stage']}] {rec['reason']}" for rec in report.failures], 10)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from rhovid.ingest.verify import verify
    from rhovid.ranged import data_summary

    if args.sources:
        raise UsageError("--verify checks --out and takes no SRC")
    report = verify(args.out, decode=args.verify_decode, progress=not args.no_progress)
    print(f"{args.out}: {report.shards} shards, {report.samples} samples, {len(report.problems)} problems")
    print(data_summary(report.io, None))
    _print_head(report.problems, 20)
    return 0 if report.ok else 1


def _print_head(lines: list[str], limit: int) -> None:
    """The first ``limit`` lines to stderr, indented, and how many more there are."""
    for line in lines[:limit]:
        print(f"  {line}", file=sys.stderr)
    if len(lines) > limit:
        print(f"  ... and {len(lines) - limit} more", file=sys.stderr)


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 1G, 1048576)") from None
