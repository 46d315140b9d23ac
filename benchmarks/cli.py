"""``rhovid bench {ingest,boxes,loader,train}``: each benchmark is a module of this package."""

from __future__ import annotations

import argparse
import importlib

from rhovid.cli import check_counts

BENCHMARKS = {
    "ingest": "rhovid.benchmarks.ingest",
    "boxes": "rhovid.benchmarks.boxes",
    "loader": "rhovid.benchmarks.loader",
    "train": "rhovid.benchmarks.train",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, module in BENCHMARKS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0],
                           description=mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_bench_module=module)
        mod.add_arguments(p)


# Numeric options that may be 0 (decode workers = inline, no warm-up steps); every other count,
# length or rate of a benchmark must be positive: a zero would time nothing and overwrite the
# dated result file with it.
ZERO_ALLOWED = frozenset({"workers", "warmup", "bframes"})  # --bframes 0: no B-frames


def run(args: argparse.Namespace) -> int:
    check_counts(args, ZERO_ALLOWED)
    return int(importlib.import_module(args._bench_module).run(args) or 0)
