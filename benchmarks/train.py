"""Training-loop benchmark: steps/s of the full loop (loader included) vs a bare forward/backward loop.

Measured side by side in one run, on shards this benchmark builds with ``rhovid.ingest`` (or
``--data``), with the same method, backbone and batch shape:

- **bare**: forward, backward, optimizer step and ``after_step`` on one in-memory batch (the
  first batch of the loader), nothing else -> the compute ceiling;
- **loader**: the ``ClipLoader`` alone, batches/s -> whether the loader can keep up;
- **full**: ``rhovid.train.loop.train`` (loader, LR schedule, NaN guard, metrics, TensorBoard,
  progress bar), steps/s from the loop's own timer after the warm-up steps (the final
  checkpoint and process start-up are excluded), and its data-wait fraction.

ratio = full / bare (goal >= 0.95 when the loader keeps up, i.e. loader batches/s > bare steps/s
with cores to spare). On a 2-core CPU the decode workers and the model share the same cores, so
the ratio there measures contention as much as loop overhead; the data-wait fraction says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from rhovid.errors import UsageError

RESULTS = Path(__file__).resolve().parent / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, help="ingested dataset (default: build a synthetic one)")
    p.add_argument("--method", default="simclr", choices=["simclr", "moco", "byol", "swav", "constcl"])
    p.add_argument("--arch", default="tiny", choices=["tiny", "r3d18", "r3d50", "slow_r50"])
    p.add_argument("--rho", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=100, help="timed steps (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed first steps (default 10)")
    p.add_argument("--workers", type=int, default=2, help="loader decode workers (default 2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--paper-model", default="rho2-byol-slow-r50",
                   help="with --device cuda: also time this preset's model in bf16 on synthetic batches "
                        "(Slow-R50 8x8 rho=2 at 224^2 by default) and report TFLOP/s ('' to skip)")
    p.add_argument("--paper-batch", type=int, default=16, help="videos per step of the paper-model timing")
    p.add_argument("--paper-only", action="store_true",
                   help="only the paper-model timing: no dataset, loader or loop timings (needs torch alone, "
                        "not ffmpeg/PyAV: the GPU machine's bare image runs it)")
    p.add_argument("--out", type=Path, default=None, help="markdown result file "
                   "(default benchmarks/results/train-<date>-<device>.md; a .json is written beside it)")


def run(args: argparse.Namespace) -> int:
    if args.warmup % 5 or args.steps % 5:
        raise UsageError("--warmup and --steps must be multiples of 5 (the loop logs every 5 steps)")
    out = args.out or RESULTS / f"train-{date.today().isoformat()}-{args.device}.md"
    if args.paper_only:
        return _run_paper_only(args, out)
    with tempfile.TemporaryDirectory(prefix="rhovid-bench-train-") as tmp:
        tmp = Path(tmp)
        data = args.data or build_data(tmp / "data")
        cfg = make_config(args, data)
        loader = time_loader(cfg, args.warmup, args.steps)
        bare = time_bare(cfg, args.warmup, args.steps)
        full = time_full(cfg, tmp / "run", args.warmup)
        # The same loop fed the bare loop's in-memory batch: its overhead without decode workers
        # competing for the cores (on a 2-core CPU the loader and the model share them).
        loop_only = time_full(cfg, tmp / "run-in-memory", args.warmup, batches=[bare.pop("batch")])
    result = {"bare": bare, "loader": loader, "full": full, "loop_only": loop_only,
              "ratio": full["steps_per_s"] / bare["steps_per_s"],
              "loop_only_ratio": loop_only["steps_per_s"] / bare["steps_per_s"],
              "config": {k: str(v) for k, v in vars(args).items()}, "torch_threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    if args.device == "cuda" and args.paper_model:
        result["gpu"] = torch.cuda.get_device_name()
        result["paper_model"] = time_paper_model(args.paper_model, args.paper_batch, "cuda", args.warmup, args.steps)
    text = render(result, args)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# rhovid bench train ({date.today().isoformat()}, {args.device.upper()})\n\n{text}\n\n"
                   f"```json\n{json.dumps(result, indent=2)}\n```\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out} and {out.with_suffix('.json')}")
    return 0


def build_data(folder: Path) -> Path:
    """16 synthetic 6 s videos ingested into two shards (short side 128, GOP 16)."""
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    src = folder.parent / "src"
    synthesize(src, SynthConfig(classes=4, per_class=4, seconds=6.0, width=160, height=120, fps=30, seed=0))
    ingest([str(src)], folder, IngestConfig(short_side=128, gop=16, shard_count=2, workers=2, progress=False))
    return folder


def make_config(args, data: Path):
    from rhovid.train.config import get_preset, replace_data

    cfg = get_preset(f"tiny-{args.method}")
    cfg = dataclasses.replace(cfg, arch=args.arch, batch_size=args.batch_size, steps=args.warmup + args.steps,
                              checkpoint_every=args.warmup + args.steps, log_every=5, device=args.device,
                              progress=False, optim=dataclasses.replace(cfg.optim, lr_batch=args.batch_size))
    return replace_data(cfg, data=str(data), rho=args.rho, frames=args.frames, stride=args.stride, crop=args.crop,
                        workers=args.workers)


def _loader(cfg, workers: int):
    """The training loop's own loader (``build_loader``) with ``workers`` decode processes."""
    from rhovid.train.config import replace_data
    from rhovid.train.loop import build_loader

    return build_loader(replace_data(cfg, workers=workers), rank=0, world=1)


def _endless(loader):
    while True:
        yield from loader


def time_loader(cfg, warmup: int, steps: int) -> dict:
    """The loader alone: batches/s after ``warmup`` batches (workers started, buffers filled)."""
    batches = _endless(_loader(cfg, cfg.data.workers))
    for _ in range(warmup):
        next(batches)
    t = time.perf_counter()
    for _ in range(steps):
        next(batches)
    seconds = time.perf_counter() - t
    batches.close()  # shut the DataLoader workers down now, not in the interpreter's exit
    return {"batches_per_s": steps / seconds, "seconds": seconds}


def time_bare(cfg, warmup: int, steps: int) -> dict:
    """Forward + backward + optimizer step + after_step on one in-memory batch."""
    device = torch.device("cuda" if cfg.device == "cuda" else "cpu")
    batch = next(iter(_loader(cfg, 0)))
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    seconds, _ = _time_steps(cfg, cfg.arch, batch, device, warmup, steps)
    cpu_batch = {k: v.cpu() if torch.is_tensor(v) else v for k, v in batch.items()}
    return {"steps_per_s": steps / seconds, "seconds": seconds, "batch": cpu_batch}


def _time_steps(cfg, arch: str, batch: dict, device: torch.device, warmup: int, steps: int) -> tuple[float, float]:
    """Build ``cfg``'s method on ``arch`` and time ``steps`` training steps on ``batch`` after ``warmup``.

    A step is what the loop does minus the loader: forward (bf16 autocast, channels-last model on
    CUDA), backward, optimizer step, ``after_step`` (EMA, queue). Returns (seconds, last loss).
    """
    from rhovid.train.methods import build_method
    from rhovid.train.optim import build_optimizer

    torch.manual_seed(cfg.seed)
    model = build_method(cfg.method, arch=arch, **cfg.method_kwargs).to(device).train()
    on_gpu = device.type == "cuda"
    if on_gpu:
        model.to(memory_format=torch.channels_last_3d)
    o = cfg.optim
    opt = build_optimizer(model, o.name, o.lr, o.momentum, o.weight_decay, o.lars_eta, o.nesterov, o.no_decay)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)
    t = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if on_gpu:
                torch.cuda.synchronize()
            t = time.perf_counter()
        with autocast:
            loss = model(batch)["loss"]
        value = loss.item()  # the loop's NaN guard reads the loss every step, so time that sync too
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.after_step(i, warmup + steps)
    if on_gpu:
        torch.cuda.synchronize()
    return time.perf_counter() - t, value


def time_full(cfg, run_dir: Path, warmup: int, batches: list[dict] | None = None) -> dict:
    """``train()`` end to end (on ``batches`` instead of the loader when given); rates from its
    metrics after the warm-up windows."""
    from rhovid.atomic import read_jsonl
    from rhovid.train.loop import train

    t = time.perf_counter()
    train(cfg, run_dir, batches=batches)
    wall = time.perf_counter() - t
    recs = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["step"] > warmup]
    steps = sum(5 for _ in recs)
    data_s = sum(5 * r["data_s"] for r in recs)
    compute_s = sum(5 * r["compute_s"] for r in recs)
    return {"steps_per_s": steps / (data_s + compute_s), "data_frac": data_s / (data_s + compute_s),
            "compute_steps_per_s": steps / compute_s, "wall_s_incl_startup": wall,
            "final_loss": recs[-1]["loss"]}


def time_paper_model(preset: str, batch_size: int, device: str, warmup: int, steps: int,
                     arch: str | None = None, crop: int | None = None) -> dict:
    """A paper configuration's training step (forward, backward, LARS/SGD step, EMA) on synthetic
    in-memory clips, bf16 autocast + channels-last on CUDA as in the loop: steps/s, clips/s and
    achieved TFLOP/s.

    TFLOP/s counts 2 FLOPs per multiply-add and a backward pass as twice the forward, over the
    backbone's conv/linear layers only (``count_flops``; heads and EMA are left out, so the figure
    is a lower bound of what the GPU does): ``6 x MACs(clip) x clips / step time``.
    ``arch``/``crop`` override the preset (CPU tests use the tiny net).
    """
    from rhovid.train.config import get_preset
    from rhovid.train.models import build_backbone
    from rhovid.train.models.flops import count_flops

    cfg = get_preset(preset)
    arch = arch or cfg.arch
    d = cfg.data
    crop = crop or d.crop
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    video = torch.randn(batch_size, d.rho, 3, d.frames, crop, crop, generator=g).to(dev)
    batch = {"video": video, "label": torch.zeros(batch_size, dtype=torch.long, device=dev)}
    seconds, loss = _time_steps(cfg, arch, batch, dev, warmup, steps)
    macs = count_flops(build_backbone(arch), (1, 3, d.frames, crop, crop))
    clips = batch_size * d.rho
    return {"preset": preset, "arch": arch, "batch": batch_size, "rho": d.rho, "frames": d.frames, "crop": crop,
            "steps_per_s": steps / seconds, "clips_per_s": clips * steps / seconds, "gmacs_per_clip": macs / 1e9,
            "tflops": 6 * macs * clips * steps / seconds / 1e12, "final_loss": loss}


def _run_paper_only(args: argparse.Namespace, out: Path) -> int:
    if not args.paper_model:
        raise SystemExit("--paper-only needs --paper-model PRESET")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "CPU"
    result = {"paper_model": time_paper_model(args.paper_model, args.paper_batch, args.device, args.warmup, args.steps),
              "gpu": device_name, "device": args.device, "torch": torch.__version__, "config": {k: str(v) for k, v in vars(args).items()}}
    text = _render_paper(result)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# rhovid bench train --paper-only ({date.today().isoformat()}, {args.device.upper()})\n\n{text}\n")
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def _render_paper(r: dict) -> str:
    m = r["paper_model"]
    precision = "bf16 autocast, channels-last" if r.get("device", "cuda") == "cuda" else "fp32"
    return (f"{m['preset']} on {r['gpu']} ({precision}, synthetic in-memory batch "
            f"{m['batch']} x rho {m['rho']} x {m['frames']}x{m['crop']}^2): {m['steps_per_s']:.2f} steps/s, "
            f"{m['clips_per_s']:.0f} clips/s, {m['tflops']:.1f} TFLOP/s achieved "
            f"(6 x {m['gmacs_per_clip']:.2f} GMACs per clip, backbone only)")


def render(r: dict, args) -> str:
    shape = (f"{args.method}/{args.arch}, batch {args.batch_size} x rho {args.rho} x {args.frames}x{args.crop}^2, "
             f"{args.workers} decode workers, {r['torch_threads']} torch threads, {args.steps} timed steps")
    rows = [
        ("bare forward/backward (in-memory batch)", f"{r['bare']['steps_per_s']:.2f}", "1.00", "-"),
        ("loader alone (batches/s)", f"{r['loader']['batches_per_s']:.2f}",
         f"{r['loader']['batches_per_s'] / r['bare']['steps_per_s']:.2f}", "-"),
        ("full loop (loader + schedule + guard + metrics)", f"{r['full']['steps_per_s']:.2f}", f"{r['ratio']:.2f}",
         f"{r['full']['data_frac']:.1%}"),
        ("full loop, compute part only", f"{r['full']['compute_steps_per_s']:.2f}",
         f"{r['full']['compute_steps_per_s'] / r['bare']['steps_per_s']:.2f}", "-"),
        ("full loop on the in-memory batch (loop overhead alone)", f"{r['loop_only']['steps_per_s']:.2f}",
         f"{r['loop_only_ratio']:.2f}", f"{r['loop_only']['data_frac']:.1%}"),
    ]
    lines = [shape, "", "| measurement | steps/s | x bare | data wait |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    verdict = "met" if r["ratio"] >= 0.95 else "not met"
    keeps_up = r["loader"]["batches_per_s"] >= r["bare"]["steps_per_s"]
    lines += ["", f"full / bare = {r['ratio']:.2f} (goal >= 0.95 when the loader keeps up: {verdict}; "
                  f"loader alone is {'faster' if keeps_up else 'slower'} than the bare loop); "
                  f"loop overhead alone: {r['loop_only_ratio']:.2f}x bare"]
    if "paper_model" in r:
        lines += ["", _render_paper(r)]
    return "\n".join(lines)
