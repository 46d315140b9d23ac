"""``rhovid bench {ingest,boxes,loader,train}``: each benchmark is a module of this package."""

from __future__ import annotations

import argparse
import importlib

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
# length or rate of a benchmark must be positive.
ZERO_ALLOWED = {"workers", "warmup"}


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse a zero or negative count before a benchmark runs: it would otherwise time nothing
    and overwrite the dated result file with it."""
    for name, value in vars(args).items():
        if name.startswith("_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        ok, bound = (value >= 0, ">= 0") if name in ZERO_ALLOWED else (value > 0, "> 0")
        if not ok:
            raise ValueError(f"--{name.replace('_', '-')} must be {bound}, got {value}")


def run(args: argparse.Namespace) -> int:
    check_numbers(args)
    return int(importlib.import_module(args._bench_module).run(args) or 0)
