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
        p = sub.add_parser(name, help=f"benchmark: {name}", add_help=False)
        p.set_defaults(_bench_module=module)
        # Options are added lazily below only for the chosen benchmark.
        p.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    mod = importlib.import_module(args._bench_module)
    p = argparse.ArgumentParser(prog=f"rhovid bench {args.bench}", description=(mod.__doc__ or "").splitlines()[0])
    mod.add_arguments(p)
    return int(mod.run(p.parse_args(args.bench_args)) or 0)
