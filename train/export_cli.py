"""``rhovid export RUN --out FILE``: a run's pretrained backbone as a plain state dict (train/export.py)."""

from __future__ import annotations

import argparse

from rhovid.train.export import BRANCHES, KEYS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run folder written by `rhovid train`")
    p.add_argument("--out", required=True, metavar="FILE", help="the .pt file to write (FILE.json goes beside it)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--keys", choices=KEYS, default="rhovid",
                   help="tensor names: rhovid (default), torchvision (arch r3d18: "
                        "torchvision.models.video.r3d_18, load with strict=False, fc untrained) or slowfast "
                        "(arch slow_r50: a PySlowFast checkpoint for TRAIN.CHECKPOINT_FILE_PATH)")
    p.add_argument("--branch", choices=BRANCHES, default="global",
                   help="res5 branch: global (default) or local (ConST-CL's region branch)")


def run(args: argparse.Namespace) -> int:
    from rhovid.train.export import export

    meta = export(args.run, args.out, step=args.step, keys=args.keys, branch=args.branch)
    print(f"wrote {args.out} ({meta['tensors']} tensors, {meta['arch']} {meta['branch']} branch, {meta['keys']} keys, "
          f"{meta['checkpoint']}) and {args.out}.json")
    return 0
