"""``rhovid eval {linear,knn,retrieval,finetune}``: evaluate a run (or a random-init baseline).

Features come from ``DATA/features.zarr`` or ``--features ZARR`` (extracted on first use, reused afterwards); every
evaluation writes a JSON report (default ``RUN/eval/<evaluation>.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rhovid import storage
from rhovid.cli import check_counts
from rhovid.errors import UsageError
from rhovid.evaluate.linear import WEIGHT_DECAYS
from rhovid.ranged import RangeFetcher, data_summary

EVALUATIONS = {
    "linear": "linear probe (logistic regression, L-BFGS) on frozen features: top-1/top-5",
    "knn": "weighted kNN (cosine, exp(sim/T) votes) on frozen features: top-1/top-5",
    "retrieval": "test videos query train videos by cosine: R@1/5/10/20",
    "finetune": "end-to-end fine-tuning of backbone + linear head: top-1/top-5",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DATA", help="dataset folder (shards with train/test splits)")
    p.add_argument("--run", metavar="RUN", help="training run folder (config.json + checkpoints/)")
    p.add_argument("--step", type=int, help="checkpoint step (default: latest)")
    p.add_argument("--weights", metavar="FILE", help="a backbone file instead of --run: `rhovid export` output or a "
                   "PySlowFast Slow-R50 checkpoint (.pyth, e.g. the authors' rho-BYOL / rho-MoCo weights)")
    p.add_argument("--weights-format", choices=["rhovid", "slowfast"], default=None,
                   help="format of --weights (default: slowfast for .pyth, else rhovid)")
    p.add_argument("--random-init", action="store_true",
                   help="baseline: the run's (or --arch's) backbone with random weights")
    p.add_argument("--arch", help="backbone for --random-init without --run")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-init backbone (default 0)")
    p.add_argument("--views", default="2x3", metavar="TxS",
                   help="temporal clips x spatial crops per test video, averaged (default 2x3)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the run's)")
    p.add_argument("--stride", type=int, help="frame stride (default: the run's)")
    p.add_argument("--crop", type=int, help="crop size (default: the run's)")
    p.add_argument("--train-split", default="train", help="split the probe / bank / gallery comes from")
    p.add_argument("--test-split", default="test", help="split that is scored (Kinetics: val)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="decode processes")
    p.add_argument("--batch-clips", type=int, default=32, help="clips per forward pass")
    p.add_argument("--report", metavar="JSON", help="report path, or a folder to write <evaluation>.json into "
                   "(default RUN/eval/<evaluation>.json)")
    p.add_argument("--features", metavar="ZARR", default=None,
                   help="feature store to extract into and read from (default DATA/features.zarr; "
                        "give one on a writable disk when DATA is read-only)")
    p.add_argument("--no-progress", action="store_true")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="evaluation", metavar="EVALUATION", required=True)
    for name, help_text in EVALUATIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p)
        if name == "linear":
            p.add_argument("--weight-decays", type=float, nargs="+", default=list(WEIGHT_DECAYS),
                           help="L2 grid, chosen on 20%% of train (default %(default)s)")
            p.add_argument("--max-iter", type=int, default=500, help="L-BFGS iterations")
        elif name == "knn":
            p.add_argument("--k", type=int, default=200, help="neighbours (capped to the bank size)")
            p.add_argument("--temperature", type=float, default=0.07, help="T in exp(sim / T)")
        elif name == "finetune":
            p.add_argument("--steps", type=int, default=200, help="optimizer updates")
            p.add_argument("--batch-size", type=int, default=16)
            p.add_argument("--lr", type=float, default=0.05, help="head LR (backbone x0.1)")


def check_options(args: argparse.Namespace) -> None:
    """Reject option values no evaluation can use, before features are extracted or a report
    is (over)written: ``--k 0`` used to score every test clip at chance and replace the report."""
    check_counts(args, frozenset({"seed", "step", "workers"}))
    if any(w < 0 for w in getattr(args, "weight_decays", ())):
        raise UsageError(f"--weight-decays must be >= 0, got {args.weight_decays}")


def run(args: argparse.Namespace) -> int:
    from rhovid.evaluate.features import parse_views
    from rhovid.evaluate.protocol import default_report_path, ensure_features, evaluate_stored, feature_source
    from rhovid.evaluate.report import report_table, write_report

    if args.run is None and not args.random_init and args.weights is None:
        raise UsageError("give --run RUN, --weights FILE, or --random-init --arch ARCH for the baseline")
    if args.weights is not None and (args.run is not None or args.random_init):
        raise UsageError("--weights replaces --run and --random-init: give one of them")
    check_options(args)
    temporal, spatial = parse_views(args.views)
    src = feature_source(args.run, args.step, args.random_init, args.arch, args.seed, temporal, spatial,
                         args.frames, args.stride, args.crop, args.weights, args.weights_format)
    # Resolved before any work: a folder gets the default file name inside it (`--report out/`).
    default = default_report_path(args.data, src, args.evaluation)
    path = args.report or default
    if args.report and not storage.is_remote(path) and (args.report.endswith(("/", os.sep)) or Path(path).is_dir()):
        path = Path(path) / storage.name(default)
    progress = not args.no_progress
    fetcher = RangeFetcher()  # every shard read of the run: the `data:` summary
    if args.evaluation == "finetune":
        from rhovid.evaluate.finetune import FinetuneConfig, finetune

        cfg = FinetuneConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, workers=args.workers,
                             seed=args.seed)
        results = finetune(args.data, src.model, src.views, cfg, args.train_split, args.test_split,
                           args.device, progress, fetcher)
    else:
        ensure_features(args.data, src, (args.train_split, args.test_split), args.device, args.workers,
                        args.batch_clips, progress, store=args.features, fetcher=fetcher)
        options = {}
        if args.evaluation == "linear":
            options = {"weight_decays": tuple(args.weight_decays), "max_iter": args.max_iter}
        elif args.evaluation == "knn":
            options = {"k": args.k, "temperature": args.temperature}
        results = evaluate_stored(args.data, src.name, args.evaluation, args.train_split, args.test_split,
                                  store=args.features, **options)
    report = write_report(path, args.evaluation, src.name, results,
                          {**src.attrs, "data": storage.absolute(args.data), "views": src.views.views})
    print(report_table([report]))
    skipped = results.get("skipped") or {}
    if any(skipped.values()):
        print(f"skipped videos that could not be read or decoded: {skipped} (left out of every metric; the "
              f"warnings name them, `rhovid ingest --verify --out {args.data}` checks the shards)")
    print(data_summary(fetcher.stats, sum(skipped.values())))
    print(f"report: {path}")
    return 0
