"""``rhovid train``: pretrain a rho-method or ConST-CL from shards into a run folder.

Config resolution: a base config < explicit flags < ``--set``. The base is ``--preset NAME``.
Without a preset it is ``tiny-<method>`` for the tiny arch (``TrainConfig``'s own defaults are
the papers' 8x8 clips at 224 px, which the 0.2 M-parameter debug net was never meant for) and
``TrainConfig()`` for the paper backbones; the command says which one it started from. With
``--resume`` the run's saved ``config.json`` is the base, so ``rhovid train --out RUN --resume``
alone continues a run (``--steps N`` with it lengthens the schedule, recorded in config.json).
``--help`` shows the base's values as the defaults (``--preset NAME --help``: that preset's);
``--print-config`` prints the resolved config as JSON and exits. Under ``torchrun`` every
process runs this same command (DDP; see train/loop.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from rhovid.config import apply_overrides, from_dict, to_dict
from rhovid.errors import UsageError
from rhovid.train.config import PRESETS, TrainConfig, get_preset

# flag -> config field: explicit flags override the base config.
_TOP = {"method": "method", "arch": "arch", "batch_size": "batch_size", "steps": "steps",
        "checkpoint_every": "checkpoint_every", "device": "device", "seed": "seed"}
_DATA = {"data": "data", "rho": "rho", "frames": "frames", "stride": "stride", "crop": "crop", "boxes": "boxes"}


def base_config(preset: str | None, method: str | None, arch: str | None) -> tuple[TrainConfig, str]:
    """The config flags are applied to, and a phrase naming it."""
    if preset:
        return get_preset(preset), f"preset {preset}"
    default = TrainConfig()
    method, arch = method or default.method, arch or default.arch
    if arch == "tiny" and f"tiny-{method}" in PRESETS:
        return PRESETS[f"tiny-{method}"], f"preset tiny-{method} (the tiny arch's CPU settings)"
    return default, "the TrainConfig defaults"


def _from_argv(argv: list[str], flag: str) -> str | None:
    """The value of ``flag`` in a raw argv (``--flag V`` or ``--flag=V``), for the help defaults."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def add_arguments(p: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    from rhovid.train.methods import METHODS
    from rhovid.train.models import SPECS

    argv = argv or []
    try:
        base, named = base_config(_from_argv(argv, "--preset"), _from_argv(argv, "--method"), _from_argv(argv, "--arch"))
    except KeyError:  # an unknown --preset: the run itself reports it, listing the presets
        base, named = TrainConfig(), "the TrainConfig defaults"
    p.description = (f"{p.description}. Defaults shown: {named}"
                     + ("" if _from_argv(argv, "--preset") else "; --preset NAME --help shows a preset's") + ".")

    def dflt(value) -> str:
        return f" (default: {'none' if value in (None, '') else value})"

    d = base.data
    p.add_argument("--data", metavar="DATA", help="dataset folder or URL (s3://, gs://, http(s)://) written by `rhovid ingest` "
                   "(required, unless --resume)")
    p.add_argument("--method", choices=list(METHODS), help="method" + dflt(base.method))
    p.add_argument("--arch", choices=list(SPECS), help="backbone" + dflt(base.arch))
    p.add_argument("--rho", type=int, metavar="R", help="clips per video (positives)" + dflt(d.rho))
    p.add_argument("--frames", type=int, metavar="T", help="frames per clip" + dflt(d.frames))
    p.add_argument("--stride", type=int, metavar="S", help="temporal stride between frames" + dflt(d.stride))
    p.add_argument("--crop", type=int, metavar="C", help="crop size in pixels" + dflt(d.crop))
    p.add_argument("--batch-size", type=int, metavar="B",
                   help="global batch (videos), split over processes" + dflt(base.batch_size))
    p.add_argument("--steps", type=int, metavar="N", help="optimizer steps in the run (schedule length); with "
                   "--resume: lengthen a run on purpose" + dflt(base.steps))
    p.add_argument("--checkpoint-every", type=int, metavar="K", help="checkpoint every K steps" + dflt(base.checkpoint_every))
    p.add_argument("--boxes", metavar="SET",
                   help='box set for ConST-CL: "random" (the authors\' generator), "random-independent", a stored '
                        'set name, or "none"' + dflt(d.boxes))
    p.add_argument("--device", choices=["cpu", "cuda"], help="where to train" + dflt(base.device))
    p.add_argument("--seed", type=int, metavar="S", help="seed of init, sampling and every RNG" + dflt(base.seed))
    p.add_argument("--out", metavar="RUN", help="run folder (must be empty unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue RUN from its latest checkpoint")
    p.add_argument("--preset", metavar="NAME", help=f"start from a preset: {', '.join(sorted(PRESETS))}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. optim.lr=0.3, data.workers=4, method_kwargs.temperature=0.2 "
                        f"(data.workers default: {d.workers if d.workers is not None else 'one per available core'})")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config from the base (preset / saved config), the flags and the ``--set`` overrides."""
    if args.resume:
        from rhovid.train.run_dir import saved_config

        cfg = from_dict(TrainConfig, saved_config(args.out), strict=False)
    else:
        cfg, named = base_config(args.preset, args.method, args.arch)
        if not args.preset and not args.print_config:
            print(f"rhovid train: note: no --preset given, so starting from {named} (--print-config shows the whole "
                  "config)", file=sys.stderr)
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

    if args.resume and not args.out:
        raise UsageError("--resume needs --out RUN (the run folder to continue)")
    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    if not args.out:
        raise UsageError("--out RUN is required (the run folder to write)")
    try:
        result = train(cfg, args.out, resume=args.resume)
    except NonFiniteLossError as e:
        print(f"rhovid train: error: {e}", file=sys.stderr)
        return 3
    except TypeError as e:  # build_method names the argument a method does not take
        if "unknown argument" in str(e):
            raise UsageError(f"{e} (--set method_kwargs.NAME=VALUE)") from None
        raise
    if result["rank"] != 0:
        return 0
    loss = "not logged" if result["loss"] is None else f"{result['loss']:.4f}"
    if result.get("finished_before"):
        print(f"{args.out} had already finished all {result['step']} steps (loss at step {result['step']}: {loss}; "
              f"checkpoint {result['checkpoint']}): nothing to do. To train it longer: rhovid train --out "
              f"{args.out} --resume --steps N (N > {result['step']})")
    else:
        print(f"trained {cfg.method}/{cfg.arch} for {result['step']} steps, final loss {loss}; "
              f"checkpoint {result['checkpoint']}")
        if result.get("data"):
            print(result["data"])  # data: bytes fetched, requests, retries, skipped samples
    return 0


def _parse(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw

