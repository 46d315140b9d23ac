"""``rhovid synth OUT``: write a deterministic synthetic Kinetics-style tree OUT/<class>/<name>.mp4."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rhovid.ingest.synth import CODECS, VARIANTS, SynthConfig, synthesize
from rhovid.ingest.synth_scene import CAMERAS, class_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("out", type=Path, metavar="OUT", help="output folder (created; existing matching files are kept)")
    parser.add_argument("--classes", type=int, default=d.classes, help=f"number of classes (default {d.classes})")
    parser.add_argument("--per-class", type=int, default=d.per_class, help=f"videos per class (default {d.per_class})")
    parser.add_argument("--seconds", type=float, default=d.seconds, help=f"length of each video (default {d.seconds})")
    parser.add_argument("--width", type=int, default=d.width, help=f"frame width (default {d.width})")
    parser.add_argument("--height", type=int, default=d.height, help=f"frame height (default {d.height})")
    parser.add_argument("--fps", type=float, default=d.fps, help=f"frame rate (default {d.fps})")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of per-video variation; classes do not depend on it")
    parser.add_argument("--codec", default=d.codec, choices=sorted(CODECS), help=f"base encoder (default {d.codec})")
    parser.add_argument("--variants", default="", metavar="LIST",
                        help=f"comma-separated awkward encodings to add: {','.join(VARIANTS)} (or 'all')")
    parser.add_argument("--variant-videos", type=int, default=d.variant_videos,
                        help=f"videos per class that also get each variant (default {d.variant_videos})")
    parser.add_argument("--segment-s", type=float, default=d.segment_s, metavar="S",
                        help="scene cut every S seconds: new background, pan and distractors, same class objects "
                             "(default 0 = none)")
    parser.add_argument("--camera", default=d.camera, choices=CAMERAS,
                        help="background motion: random slow pan (default), static, or pan at --pan-speed")
    parser.add_argument("--pan-speed", type=float, default=d.pan_speed, metavar="PX_S",
                        help=f"--camera pan: px/s at 120 px frame height, scaled with the frame (default {d.pan_speed:g})")
    parser.add_argument("--boxes", type=Path, metavar="DIR",
                        help="also write each base video's ground-truth object boxes to DIR/<class>/<name>.json "
                             "(format: ingest/FORMAT.md); DIR must be outside OUT")
    parser.add_argument("--workers", type=int, default=d.workers, help="parallel processes (0 = inline)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    variants = tuple(VARIANTS) if names == ["all"] else tuple(names)
    cfg = SynthConfig(classes=args.classes, per_class=args.per_class, seconds=args.seconds, width=args.width,
                      height=args.height, fps=args.fps, seed=args.seed, codec=args.codec, variants=variants,
                      variant_videos=args.variant_videos, segment_s=args.segment_s, camera=args.camera,
                      pan_speed=args.pan_speed, workers=args.workers)
    if args.boxes is not None and args.boxes.resolve().is_relative_to(args.out.resolve()):
        raise ValueError(f"--boxes {args.boxes} is inside OUT {args.out}: ingest would read its files as videos")
    t0 = time.perf_counter()
    paths = synthesize(args.out, cfg, progress=not args.no_progress, boxes=args.boxes)
    dt = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} videos ({size / 1e6:.1f} MB) ready in {args.out} after {dt:.1f} s "
          "(files from an identical earlier run are kept)")
    print(f"  {cfg.classes} classes x {cfg.per_class} videos, {cfg.seconds:g} s, {cfg.width}x{cfg.height} "
          f"@ {cfg.fps:g} fps, seed {cfg.seed}, camera {cfg.camera}"
          + (f", variants: {','.join(variants)}" if variants else ""))
    if args.boxes is not None:
        print(f"  ground-truth object boxes in {args.boxes}/<class>/<name>.json")
    for k in range(min(cfg.classes, 8)):
        s = class_spec(k)
        print(f"  {s.name}: {s.shape}, {s.texture} texture, {s.motion} motion")
    if cfg.classes > 8:
        print(f"  ... and {cfg.classes - 8} more classes")
    return 0
