"""``rhovid ablation``: one run per box set / rho / timespan, then ``ablation.md`` + ``ablation.png``.

  rhovid ablation --data DATA --method constcl --boxes random slic fh hog --steps 200 --out runs/abl
  rhovid ablation --data DATA --method byol --rho 2 3 4 --steps 200 --out runs/rho
  rhovid ablation --data DATA --method byol --timespan 0.5 2 60 --out runs/timespan
  rhovid ablation demo --out data/demo-run       # the whole mission on a laptop (make demo)
"""

from __future__ import annotations

import argparse
import itertools
import shlex

from rhovid.errors import UsageError
from rhovid.evaluate.ablation import METRICS, Budget, Variant

DEFAULT_STEPS = 200
DEFAULT_EVALUATIONS = ["linear", "knn"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mode", nargs="?", choices=["demo"],
                   help="'demo': synthesise, ingest, box, pretrain and evaluate a small dataset end to end")
    p.add_argument("--data", metavar="DATA", help="dataset folder with train and test splits")
    p.add_argument("--method", choices=["simclr", "moco", "byol", "swav", "constcl"])
    p.add_argument("--boxes", nargs="+", metavar="SET",
                   help="box sets to compare: random, a stored set name/alias, or a method (slic, fh, hog, ...)")
    p.add_argument("--rho", type=int, nargs="+", metavar="R", help="rho values to sweep")
    p.add_argument("--timespan", type=float, nargs="+", metavar="S", help="maximum clip distances (s) to sweep")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimizer steps per run (default {DEFAULT_STEPS}; demo: its own 600)")
    p.add_argument("--arch", default="tiny", choices=["tiny", "r3d18", "r3d50", "slow_r50"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help="global batch (default: the preset's)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the preset's)")
    p.add_argument("--stride", type=int, help="frame stride (default: the preset's)")
    p.add_argument("--crop", type=int, help="crop size (default: the preset's)")
    p.add_argument("--workers", type=int, default=2, help="loader / decode / box processes (default 2)")
    p.add_argument("--views", default="2x1", help="multi-view test TEMPORALxSPATIAL (default 2x1)")
    p.add_argument("--evaluations", nargs="+", default=DEFAULT_EVALUATIONS, choices=list(METRICS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainConfig override for every run (method_kwargs.X=V for method arguments)")
    p.add_argument("--out", required=True, metavar="DIR", help="ablation folder (one run folder per variant)")
    p.add_argument("--features", metavar="ZARR", default=None,
                   help="feature store of the evaluations (default DATA/features.zarr), as rhovid eval --features")
    p.add_argument("--no-progress", action="store_true")


def variants(method: str, boxes, rhos, timespans) -> list[Variant]:
    """The product of the swept knobs (one value per knob not swept)."""
    if boxes is None and method == "constcl":
        boxes = ["random"]
    return [Variant(method, b, r, t) for b, r, t in itertools.product(boxes or [None], rhos or [None],
                                                                        timespans or [None])]


def _split_overrides(items: list[str]) -> tuple[dict, tuple[str, ...]]:
    import json

    kwargs, rest = {}, []
    for item in items:
        key, _, raw = item.partition("=")
        if key.startswith("method_kwargs."):
            try:
                kwargs[key.split(".", 1)[1]] = json.loads(raw)
            except json.JSONDecodeError:
                kwargs[key.split(".", 1)[1]] = raw
        else:
            rest.append(item)
    return kwargs, tuple(rest)


def demo_config(args: argparse.Namespace):
    """The ``DemoConfig`` of ``rhovid ablation demo`` with the options given on the command line;
    options the demo has no use for are an error rather than silently ignored."""
    from rhovid.evaluate.demo import DemoConfig

    unused = [flag for flag, value in (("--data", args.data), ("--method", args.method), ("--boxes", args.boxes),
                                       ("--rho", args.rho), ("--timespan", args.timespan), ("--set", args.overrides),
                                       ("--features", args.features))
              if value]
    unused += [flag for flag, value, default in (("--arch", args.arch, "tiny"), ("--device", args.device, "cpu"),
                                                 ("--evaluations", args.evaluations, DEFAULT_EVALUATIONS))
               if value != default]
    if unused:
        raise UsageError(f"the demo mode does not take {', '.join(unused)}; it takes --seed, --steps, --batch-size, "
                         "--frames, --stride, --crop, --workers, --views")
    given = {"seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "frames": args.frames,
             "stride": args.stride, "crop": args.crop, "workers": args.workers, "views": args.views}
    return DemoConfig(**{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    if args.mode == "demo":
        from rhovid.evaluate.demo import run_demo

        return run_demo(args.out, demo_config(args), progress=not args.no_progress)
    if args.steps is None:
        args.steps = DEFAULT_STEPS
    if not args.data or not args.method:
        raise UsageError("rhovid ablation needs --data DATA and --method M (or the 'demo' mode)")
    from rhovid.evaluate.ablation import run_ablation, skipped_samples, table_rows
    from rhovid.evaluate.report import markdown_table
    from rhovid.ranged import RangeFetcher, data_summary

    kwargs, overrides = _split_overrides(args.overrides)
    budget = Budget(steps=args.steps, arch=args.arch, device=args.device, seed=args.seed,
                    batch_size=args.batch_size, frames=args.frames, stride=args.stride, crop=args.crop,
                    workers=args.workers, views=args.views, evaluations=tuple(args.evaluations),
                    method_kwargs=kwargs, overrides=overrides, progress=not args.no_progress,
                    features=args.features)
    vs = variants(args.method, args.boxes, args.rho, args.timespan)
    cmd = ["rhovid", "ablation", "--data", args.data, "--method", args.method]
    for flag, vals in (("--boxes", args.boxes), ("--rho", args.rho), ("--timespan", args.timespan)):
        if vals:
            cmd += [flag, *map(str, vals)]
    cmd += ["--steps", str(args.steps), "--arch", args.arch, "--device", args.device, "--seed", str(args.seed),
            "--views", args.views, "--evaluations", *args.evaluations]
    for flag, val in (("--batch-size", args.batch_size), ("--frames", args.frames), ("--stride", args.stride),
                      ("--crop", args.crop), ("--features", args.features)):
        if val:
            cmd += [flag, str(val)]
    for item in args.overrides:
        cmd += ["--set", item]
    cmd += ["--out", args.out]
    knobs = [k for k, v in (("box sets", args.boxes), ("rho", args.rho), ("timespan", args.timespan)) if v]
    title = f"{args.method} ablation" + (f": {', '.join(knobs)}" if knobs else "")
    fetcher = RangeFetcher()  # every shard read of the ablation: one `data:` summary
    summary = run_ablation(args.data, args.out, vs, budget, title=title, command=shlex.join(cmd), fetcher=fetcher)
    print(markdown_table(*table_rows(summary)))
    print(data_summary(fetcher.stats, skipped_samples(summary)))
    print(f"wrote {args.out}/ablation.md, {args.out}/ablation.png, {args.out}/ablation.json")
    return 0
