"""``rhovid train``: pretrain a rho-method or ConST-CL from shards into a run folder.

Config resolution: ``TrainConfig()`` defaults < ``--preset NAME`` < explicit flags < ``--set``.
With ``--resume`` the run's saved ``config.json`` replaces the defaults and the preset, so
``rhovid train --out RUN --resume`` alone continues a run. Under ``torchrun`` every process
runs this same command (DDP; see train/loop.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rhovid.config import apply_overrides, from_dict
from rhovid.train.config import PRESETS, TrainConfig, get_preset

# flag -> (config field, section): explicit flags override the preset.
_TOP = {"method": "method", "arch": "arch", "batch_size": "batch_size", "steps": "steps",
        "checkpoint_every": "checkpoint_every", "device": "device", "seed": "seed"}
_DATA = {"data": "data", "rho": "rho", "frames": "frames", "stride": "stride", "crop": "crop", "boxes": "boxes"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DATA",
                   help="dataset folder or URL (s3://, gs://, http(s)://) written by `rhovid ingest`")
    p.add_argument("--method", choices=["simclr", "moco", "byol", "swav", "constcl"])
    p.add_argument("--arch", choices=["tiny", "r3d18", "r3d50", "slow_r50"])
    p.add_argument("--rho", type=int, metavar="R", help="clips per video (positives)")
    p.add_argument("--frames", type=int, metavar="T", help="frames per clip")
    p.add_argument("--stride", type=int, metavar="S", help="temporal stride between frames")
    p.add_argument("--crop", type=int, metavar="C", help="crop size in pixels")
    p.add_argument("--batch-size", type=int, metavar="B", help="global batch (videos), split over processes")
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps in the run (schedule length)")
    p.add_argument("--checkpoint-every", type=int, metavar="K", help="checkpoint every K steps")
    p.add_argument("--boxes", metavar="SET", help='box set for ConST-CL: "random" (the authors\' generator), "random-independent", a stored set name, or "none"')
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder (must be empty unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue RUN from its latest checkpoint")
    p.add_argument("--preset", metavar="NAME", help=f"start from a preset: {', '.join(sorted(PRESETS))}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. optim.lr=0.3, data.workers=4, method_kwargs.temperature=0.2")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config from the preset / saved config, the flags and the ``--set`` overrides."""
    saved = Path(args.out) / "config.json"
    if args.resume and saved.exists():
        cfg = from_dict(TrainConfig, json.loads(saved.read_text()), strict=False)
    else:
        cfg = get_preset(args.preset) if args.preset else TrainConfig()
    top = {f: getattr(args, a) for a, f in _TOP.items() if getattr(args, a) is not None}
    data = {f: getattr(args, a) for a, f in _DATA.items() if getattr(args, a) is not None}
    if data.get("boxes") == "none":
        data["boxes"] = None
    cfg = dataclasses.replace(cfg, **top, data=dataclasses.replace(cfg.data, **data))
    kwargs = dict(cfg.method_kwargs)
    rest = []
    for item in args.overrides:
        key, _, raw = item.partition("=")
        if key.startswith("method_kwargs."):  # free-form: the method's own signature checks it
            kwargs[key.split(".", 1)[1]] = _parse(raw)
        else:
            rest.append(item)
    return apply_overrides(dataclasses.replace(cfg, method_kwargs=kwargs), rest)


def run(args: argparse.Namespace) -> int:
    from rhovid.train.loop import NonFiniteLossError, train

    cfg = resolve_config(args)
    try:
        result = train(cfg, args.out, resume=args.resume)
    except NonFiniteLossError as e:
        print(f"rhovid train: error: {e}", file=sys.stderr)
        return 3
    except TypeError as e:  # build_method names the argument a method does not take
        if "unknown argument" in str(e):
            raise ValueError(str(e)) from None
        raise
    if result["rank"] == 0:
        print(f"trained {cfg.method}/{cfg.arch} for {result['step']} steps, final loss {result['loss']:.4f}; "
              f"checkpoint {result['checkpoint']}")
        if result.get("data"):
            print(f"data: {result['data']}")  # bytes fetched, requests, retries, skipped samples
    return 0


def _parse(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
