"""The ``rhovid`` console script: one subcommand per stage, each with ``--help``.

Each subcommand lives in its stage's ``cli`` module, imported only when that subcommand
runs, so ``rhovid ingest`` never pays for importing torch or DALI. A stage module exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help). A plain dict: who builds what is visible here.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("rhovid.ingest.synth_cli", "write a deterministic synthetic Kinetics-style video tree"),
    "ingest": ("rhovid.ingest.cli", "transcode raw videos into fragmented-MP4 WebDataset shards"),
    "boxes": ("rhovid.store.cli", "compute, list and show region-box priors in DATA/boxes.zarr"),
    "train": ("rhovid.train.cli", "pretrain a rho-method or ConST-CL from shards"),
    "eval": ("rhovid.evaluate.cli", "linear probe, kNN, retrieval and fine-tuning evaluations"),
    "export": ("rhovid.train.export_cli", "write a run's backbone as a plain state dict (rhovid or torchvision keys)"),
    "ablation": ("rhovid.evaluate.ablation_cli", "train + evaluate one run per box set / rho / timespan"),
    "bench": ("rhovid.benchmarks.cli", "benchmarks: ingest, boxes, loader, train"),
}


def check_counts(args: argparse.Namespace, zero_allowed: frozenset[str] = frozenset()) -> None:
    """Refuse a zero or negative numeric option (int or float; flags and lists are left alone)
    before a command does any work; names in ``zero_allowed`` may be 0 (workers = inline, ...).

    Raises:
        ValueError: naming the option, e.g. ``--k must be > 0, got 0``.
    """
    for name, value in vars(args).items():
        if name.startswith("_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        ok, bound = (value >= 0, ">= 0") if name in zero_allowed else (value > 0, "> 0")
        if not ok:
            raise ValueError(f"--{name.replace('_', '-')} must be {bound}, got {value}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rhovid", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        # "resolve": a stage may replace -h/--help with its own (rhovid boxes --method M --help)
        p = sub.add_parser(name, help=help_text, description=help_text, conflict_handler="resolve")
        if name == wanted:  # import only the stage that will run
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError, ConnectionError) as e:
        # User-facing errors are raised with messages that name the input; no traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"rhovid {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError) as e:
        # an output path that is a file (or a folder, or not writable): the OS names the path
        print(f"rhovid {args.command}: error: {e.filename}: {e.strerror.lower()}", file=sys.stderr)
        return 1


def _version() -> str:
    from rhovid import __version__

    return f"rhovid {__version__}"


if __name__ == "__main__":
    sys.exit(main())
