"""The ``rhovid`` console script: one subcommand per stage, each with ``--help``.

Each subcommand lives in its stage's ``cli`` module, imported only when that subcommand
runs, so ``rhovid ingest`` never pays for importing torch or DALI. A stage module exposes
``add_arguments(parser)`` (or ``add_arguments(parser, argv)`` to see the command line, e.g. for
defaults that depend on ``--preset``) and ``run(args) -> int``.

Errors (``main``): a ``rhovid.errors.UserError`` (a flag, file, folder or name the user can fix)
an OS error about a path or a full disk, and missing object-storage credentials print one
``rhovid X: error:`` line; any other
exception is a bug and prints its traceback; ``--debug`` or ``RHOVID_DEBUG=1`` always prints it.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import inspect
import os
import sys
import traceback

from rhovid.errors import UsageError, UserError

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
        UsageError: naming the option, e.g. ``--k must be > 0, got 0``.
    """
    for name, value in vars(args).items():
        if name.startswith("_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        ok, bound = (value >= 0, ">= 0") if name in zero_allowed else (value > 0, "> 0")
        if not ok:
            raise UsageError(f"--{name.replace('_', '-')} must be {bound}, got {value}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rhovid", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of every error, also the expected ones (or set RHOVID_DEBUG=1); "
                             "may be given anywhere on the command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        # "resolve": a stage may replace -h/--help with its own (rhovid boxes --method M --help)
        p = sub.add_parser(name, help=help_text, description=help_text, conflict_handler="resolve")
        if name == wanted:  # import only the stage that will run
            mod = importlib.import_module(module)
            if "argv" in inspect.signature(mod.add_arguments).parameters:
                mod.add_arguments(p, argv=argv)  # e.g. train: --preset NAME --help shows that preset's defaults
            else:
                mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


# OS errors that are the machine's or the user's paths, not a bug: one line naming the path.
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.EMFILE}


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Expected errors (``rhovid.errors.UserError``, a full disk, a path that is
    not writable) print one ``rhovid X: error:`` line and return 1; anything else is a bug and prints
    its traceback; ``--debug`` / ``RHOVID_DEBUG=1`` print the traceback always."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("RHOVID_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    where = f"rhovid {args.command}"
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (UserError, ConnectionError) as e:  # messages that name the input and what to do
        if debug:
            traceback.print_exc()
        print(f"{where}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno not in _ENVIRONMENT:
            return _unexpected(where)
        if debug:
            traceback.print_exc()
        path = f"{e.filename}: " if e.filename else ""
        hint = ("; free space, then rerun the same command (finished work is kept; rhovid train: add --resume)"
                if e.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        print(f"{where}: error: {path}{(e.strerror or str(e)).lower()}{hint}", file=sys.stderr)
        return 1
    except Exception as e:
        if not _missing_credentials(e):
            return _unexpected(where)
        if debug:
            traceback.print_exc()
        urls = ", ".join(a for a in argv if "://" in a) or "object storage"
        print(f"{where}: error: {urls}: no credentials ({type(e).__name__}: {e}); they come from the backend's "
              "usual configuration (AWS_ACCESS_KEY_ID / ~/.aws/, GOOGLE_APPLICATION_CREDENTIALS)", file=sys.stderr)
        return 1


# Credential errors of the object-storage backends (by name: botocore and google-auth are optional
# and must not be imported to classify an error): the user's environment, not a bug.
_CREDENTIAL_ERRORS = {("botocore.exceptions", "NoCredentialsError"), ("botocore.exceptions", "PartialCredentialsError"),
                      ("google.auth.exceptions", "DefaultCredentialsError")}


def _missing_credentials(e: BaseException) -> bool:
    return any((c.__module__, c.__name__) in _CREDENTIAL_ERRORS for c in type(e).__mro__)


def _unexpected(where: str) -> int:
    traceback.print_exc()
    print(f"{where}: unexpected error (a bug in rhovid: please report it with the traceback above)", file=sys.stderr)
    return 1


def _version() -> str:
    from rhovid import __version__

    return f"rhovid {__version__}"


if __name__ == "__main__":
    sys.exit(main())
