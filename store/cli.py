"""``rhovid boxes``: compute, list and show region-box priors in DATA/boxes.zarr.

rhovid boxes DATA --method slic [--param segments=25 ...] [--box-fps 2] [--max-boxes 16]
rhovid boxes DATA --list
rhovid boxes DATA --show KEY --set NAME -o sheet.png
rhovid boxes --method hog --help      (every parameter of one prior; --help alone: all of them)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rhovid.errors import UsageError
from rhovid.store.priors import METHODS


class _PriorHelp(argparse.Action):
    """``--help``: the usual help, then the parameters of ``--method`` (if given before it) or of every prior."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        print()
        print(prior_help(getattr(namespace, "method", None)))
        parser.exit()


def prior_help(method: str | None = None) -> str:
    """Every parameter of ``method`` (or of every prior), its default and meaning, from the
    params dataclasses and their field docstrings (``rhovid.config.field_docs``)."""
    import dataclasses

    from rhovid.config import field_docs
    from rhovid.store.boxsets import param_text

    lines = ["box priors: --param NAME=VALUE (repeatable) overrides a default; every value is part of the "
             "set name unless marked runtime"]
    for name in [method] if method else list(METHODS):
        cls, _ = METHODS[name]
        docs = field_docs(cls)
        lines += ["", f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}"]
        for f in dataclasses.fields(cls):
            runtime = " [runtime]" if f.metadata.get("hash") is False else ""
            lines.append(f"  {f.name}={param_text(f.default)}{runtime}".ljust(34) + f" {docs[f.name]}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-h", "--help", action=_PriorHelp,
                        help="show this help and every prior's parameters (after --method M: that prior's)")
    parser.add_argument("data", type=_data_arg,
                        help="dataset folder (DATA/shards/*.tar) or URL (s3://, gs://: boxes.zarr is written there)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--method", choices=list(METHODS), help="box prior to compute")
    what.add_argument("--list", action="store_true", help="table of the box sets in DATA/boxes.zarr")
    what.add_argument(
        "--show", metavar="KEY", help="contact sheet of video KEY's frames with boxes (needs --set, -o)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="method parameter (repeatable); --method M --help lists them",
    )
    parser.add_argument(
        "--box-fps", type=float, default=2.0, help="stored frames per second of video (default 2)"
    )
    parser.add_argument("--max-boxes", type=int, default=16, help="boxes kept per frame, K (default 16)")
    parser.add_argument("--name", help="alias for the box set (e.g. the name the ablation uses)")
    parser.add_argument("--split", help="only this split's shards (default: all)")
    parser.add_argument("--workers", type=int, default=0, help="local worker processes (0 = inline)")
    parser.add_argument("--scheduler", help="Dask scheduler address (tcp://host:port); overrides --workers")
    parser.add_argument("--set", dest="set_name", help="--show: box set name or alias")
    parser.add_argument("-o", "--out", type=Path, help="--show: output PNG")
    parser.add_argument(
        "--frames", type=int, default=16, help="--show: at most this many frames (default 16)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(format_table(list_rows(args.data)))
        return 0
    if args.show:
        if not args.set_name or not args.out:
            raise UsageError("--show KEY needs --set NAME and -o OUT.png")
        from rhovid.store.show import contact_sheet

        n = contact_sheet(args.data, args.show, args.set_name, args.out, max_frames=args.frames)
        print(f"wrote {args.out} ({n} frames of {args.show}, box set {args.set_name})")
        return 0
    return _compute(args)


def _compute(args: argparse.Namespace) -> int:
    from rhovid.ranged import data_summary
    from rhovid.store.boxsets import parse_param_args
    from rhovid.store.compute import compute_box_set

    try:
        report = compute_box_set(
            args.data,
            args.method,
            parse_param_args(args.param),
            box_fps=args.box_fps,
            max_boxes=args.max_boxes,
            name=args.name,
            split=args.split,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.no_progress,
        )
    except ImportError as e:  # the prior cannot run on this machine: say where it does
        print(f"rhovid boxes: error: {e}", file=sys.stderr)
        return 1
    alias = f" (alias {args.name})" if args.name else ""
    if report.noop:
        print(
            f"box set {report.set_name}{alias} already complete for {len(report.skipped)}/{report.shards_total} "
            "shards; nothing to compute"
        )
        return 0
    rate = report.frames / report.seconds if report.seconds else 0.0
    print(
        f"box set {report.set_name}{alias}: computed {len(report.computed)} shards ({report.videos} videos, "
        f"{report.frames} frames, {rate:.1f} frames/s), {len(report.skipped)} already complete"
    )
    if report.skipped_samples:
        print(f"{len(report.skipped_samples)} samples skipped (bad json or mp4; recorded in each group's "
              "'skipped' attribute):", file=sys.stderr)
        for shard, key, reason in report.skipped_samples[:10]:
            print(f"  {shard}/{key}: {reason}", file=sys.stderr)
        if len(report.skipped_samples) > 10:
            print(f"  ... and {len(report.skipped_samples) - 10} more", file=sys.stderr)
    print(data_summary(report.io, len(report.skipped_samples)))
    for shard, err in report.failed:
        print(f"  failed {shard}: {err}", file=sys.stderr)
    if report.failed:
        print(f"{len(report.failed)} shards failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


def _data_arg(text: str) -> Path | str:
    """DATA as given: a URL stays a string, a folder becomes a Path."""
    from rhovid import storage

    return text if storage.is_remote(text) else Path(text)


def list_rows(data: Path | str) -> list[dict]:
    """One row per box set: name, method, params, shards done/total, mean boxes, mean box area."""
    from rhovid.ingest.reader import data_shards
    from rhovid.store.boxsets import param_text
    from rhovid.store.zarr_store import BoxStore

    store = BoxStore(data)
    total = len(data_shards(data))
    rows = []
    for s in store.list_sets():
        n_rows = n_boxes = skipped = 0
        area = 0.0
        for shard in s["shards_done"]:
            st = store.attrs(shard, s["name"])["stats"]
            n_rows, n_boxes, area = n_rows + st["rows"], n_boxes + st["boxes"], area + st["area_fraction_sum"]
            skipped += st.get("skipped", 0)
        params = " ".join(f"{k}={param_text(v)}" for k, v in s["params_hashed"].items())
        rows.append(
            {
                "set": s["name"] + (f" ({', '.join(s['aliases'])})" if s["aliases"] else ""),
                "method": s["method"],
                "params": f"{params} box_fps={s['box_fps']:g} K={s['max_boxes']}",
                "shards": f"{len(s['shards_done'])}/{total}",
                "boxes/frame": f"{n_boxes / n_rows:.1f}" if n_rows else "-",
                "box area": f"{area / n_boxes:.3f}" if n_boxes else "-",
                "skipped videos": skipped,
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """Plain fixed-width table (no dependency); 'no box sets' when empty."""
    if not rows:
        return "no box sets (compute one with `rhovid boxes DATA --method slic`)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols), "  ".join("-" * width[c] for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)
