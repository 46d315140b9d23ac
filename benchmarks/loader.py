"""Loader benchmark: clips/s and decoded frames per returned frame, this loader vs. two baselines.

Measured side by side in one run, on the same synthetic source videos (``rhovid synth``
content at 320x240, 30 fps), for every video length x timespan:

- (a) this loader's CPU path: ``ClipLoader(device="cpu", workers=0)`` on the ingested shards
  (tar read + plan + fragment slicing + PyAV decode + augmentation), one process;
- (b2) PySlowFast's PyAV path on the *original* whole video (x264 defaults as written by
  ``rhovid synth``: keyframe interval up to 250): one seek to the keyframe before the earliest
  clip, decode forward to the end of the latest (``slowfast/datasets/decoder.py``
  ``pyav_decode``, which decodes one range covering all clips), then the same augmentation;
- (b) the same baseline with one seek per clip (kinder to long timespans than PySlowFast);
- (c) whole-video buffers through DALI's in-memory decoder on CPU (``fn.decoders.video``,
  VP9 because DALI's CPU decoder has no H.264), same plans and augmentation graph as the GPU
  path. DALI does not report decoded frames; the column shows the frames from 0 to the last
  requested one, which is what it decodes per DESIGN.md decision 1's measurement.

All three execute the same plans (rho clips, T x tau, random crops/colour) from the same seeds
(sample keys are fixed, so every run times the same clip positions), one process each. A
diagnostic times (a)'s decode + augmentation alone twice: as the loader runs it (clips whose
fragments overlap share one decode, which makes short timespans cheaper) and with every clip
decoded on its own; and decode alone two ways on the same slices: the fMP4 sample table fed
straight to the decoder (the loader) vs. ``av.open`` with per-packet ``skip_frame=NONREF``
(the loader before). Goals (issue 4): (a) at 60 s timespan >= 0.9x its 1 s clips/s; at
10-minute videos >= 0.9x its 10 s figure; decoded frames per clip <= span + one GOP; >= 3x
PySlowFast's (b2) clips/s at 60 s timespan; box lookup <= 5 % of loader time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from rhovid.benchmarks import loader_remote
from rhovid.benchmarks.ingest import encoding_flags
from rhovid.benchmarks.loader_baselines import (
    baseline_dali_whole,
    baseline_slowfast,
    baseline_slowfast_span,
    dali_executor,
)

RESULTS = Path(__file__).resolve().parent / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lengths", default="10,60,600", help="video lengths in seconds (default 10,60,600)")
    p.add_argument("--timespans", default="1,10,60", help="timespans in seconds (default 1,10,60)")
    p.add_argument("--videos", default="2,2,1",
                   help="videos per length: one number, or one per length (default 2,2,1)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the sources (default 30, as Kinetics)")
    p.add_argument("--size", default="320x240",
                   help="source resolution (default 320x240: decode-dominated like 256-short-side Kinetics)")
    p.add_argument("--samples", type=int, default=48, help="samples (x rho clips) timed per cell for (a), (b)")
    p.add_argument("--dali-samples", type=int, default=2, help="samples timed per cell for (c) (slow on long videos)")
    p.add_argument("--rho", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--repeats", type=int, default=2, help="timing repeats; the fastest counts (default 2)")
    p.add_argument("--no-dali", action="store_true", help="skip (c)")
    p.add_argument("--tune", default=None, help="x264 tune of the shards (ingest --tune), e.g. fastdecode")
    p.add_argument("--bframes", type=int, default=None,
                   help="fixed x264 B-frames of the shards (ingest --bframes); default: adaptive")
    p.add_argument("--gpu", action="store_true",
                   help="also time ClipLoader(device='cuda'): DALI mixed decode + GPU augmentation at 224^2 "
                        "(needs CUDA; the result file is then named ...-cuda.md)")
    p.add_argument("--gpu-batches", type=int, default=20, help="timed batches of the --gpu measurement")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown result file (default benchmarks/results/loader-<date>-cpu.md; .json beside it)")
    loader_remote.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.remote:
        return loader_remote.run(args)
    lengths = [float(x) for x in args.lengths.split(",") if x.strip()]
    spans = [float(x) for x in args.timespans.split(",") if x.strip()]
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(x) for x in str(args.videos).split(",") if x.strip()]
    if not lengths or not spans or min(lengths + spans) <= 0 or not counts or min(counts) < 1:
        raise ValueError(f"--lengths {args.lengths} / --timespans {args.timespans} / --videos {args.videos}: "
                         "give positive numbers")
    if len(counts) not in (1, len(lengths)):
        raise SystemExit(f"--videos {args.videos}: give one number or one per length ({len(lengths)})")
    counts = counts * len(lengths) if len(counts) == 1 else counts
    device = "cuda" if args.gpu else "cpu"
    suffix = (f"-{args.tune}" if args.tune else "") + (f"-b{args.bframes}" if args.bframes is not None else "")
    out = args.out or RESULTS / f"loader-{date.today().isoformat()}-{device}{suffix}.md"
    rows, boxes, gpu_rows = [], {}, []
    with tempfile.TemporaryDirectory(prefix="rhovid-bench-loader-") as tmp:
        tmp = Path(tmp)
        for length, videos in zip(lengths, counts):
            t0 = time.perf_counter()
            data, originals, vp9 = prepare(tmp / f"len{length:g}", length, videos, args.fps, width, height,
                                           args.tune, args.bframes)
            print(f"[prepare] {length:g} s videos: {time.perf_counter() - t0:.1f} s", flush=True)
            for span in spans:
                row = measure_cell(data, originals, vp9, length, span, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
            boxes[length] = box_lookup_share(data, rows[-1], args)
            if args.gpu:
                gpu_rows.append(time_gpu_loader(data, length, spans[-1], args))
                print(json.dumps(gpu_rows[-1]), flush=True)
    text = render(rows, boxes, args)
    if gpu_rows:
        text += "\n\nGPU path (`ClipLoader(device='cuda')`: workers slice, DALI `fn.decoders.video(device='mixed')` " \
                f"decodes, GPU crop/flip/colour/blur/normalise; {gpu_rows[0]['gpu']}; 224² crops, rho={args.rho}, " \
                f"{args.frames}x{args.stride}):\n\n| video | timespan | clips/s |\n|---|---|---:|\n" + "\n".join(
                    f"| {r['length_s']:g} s | {r['timespan_s']:g} s | {r['clips_per_s']:.1f} |" for r in gpu_rows)
    print(text)
    from rhovid.atomic import atomic_write_json, atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, f"# rhovid bench loader ({date.today().isoformat()}, {device.upper()})\n\n{text}\n")
    atomic_write_json(out.with_suffix(".json"), {"args": {k: str(v) for k, v in vars(args).items()},
                                                 "rows": rows, "box_lookup": boxes, "gpu": gpu_rows})
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def prepare(root: Path, seconds: float, videos: int, fps: float, width: int, height: int, tune: str | None = None,
            bframes: int | None = None):
    """Synth sources -> shards (ingest) + original files + whole-video VP9 buffers."""
    from rhovid.ffmpeg import ffmpeg_exe
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.reader import read_index
    from rhovid.ingest.sources import Source
    from rhovid.ingest.synth import SynthConfig, synthesize

    paths = synthesize(root / "src", SynthConfig(classes=1, per_class=videos, seconds=seconds, width=width,
                                                 height=height, fps=fps, seed=0))
    # explicit keys: the sampler seeds each sample's plan by its key, and default keys hash the
    # (temporary) source path, so without them every run would time other clip positions
    sources = [Source(str(p), key=f"len{seconds:g}-{i}") for i, p in enumerate(paths)]
    ingest(sources, root / "data",
           IngestConfig(fps=fps, short_side=min(width, height), tune=tune, bframes=bframes, workers=0,
                        progress=False))
    originals, vp9 = {}, {}
    for e in read_index(root / "data"):
        src = Path(e["source"])
        originals[e["key"]] = src
        webm = root / "vp9" / f"{e['key']}.webm"
        webm.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-c:v", "libvpx-vp9",
                        "-deadline", "realtime", "-cpu-used", "8", "-crf", "32", "-b:v", "0", "-an", str(webm)],
                       check=True)
        vp9[e["key"]] = webm.read_bytes()
    assert len(paths) == len(originals)
    return root / "data", originals, vp9


def loader_config(data: Path, span: float, args, **kw):
    from rhovid.train.data import LoaderConfig

    return LoaderConfig(data=str(data), rho=args.rho, frames=args.frames, stride=args.stride, timespan_s=span,
                        crop=args.crop, batch_size=1, workers=0, seed=0, **kw)


def plans_for(data: Path, cfg, epochs: int):
    """The exact plans the loader runs in ``epochs`` epochs: [(plan, meta, mp4 bytes)]."""
    from rhovid.ingest.reader import iter_shard, list_shards
    from rhovid.train.sampler import plan_sample, sample_seed

    samples = [s for p in list_shards(data) for s in iter_shard(p)]
    out = []
    for e in range(epochs):
        for s in samples:
            plan = plan_sample(s["json"], sample_seed(cfg.seed, e, s["__key__"]), cfg)
            out.append((plan, s["json"], s["mp4"]))
    return out


def timed(fn, repeats: int):
    """(fastest wall seconds, fastest CPU seconds of this process incl. its threads, fn's result)."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, result


def measure_cell(data, originals, vp9, length, span, args) -> dict:
    from rhovid.ingest.fragments import slice_clips
    from rhovid.train.data import ClipLoader
    from rhovid.train.decode_pyav import (
        decode_clips,
        decode_demuxed,
        decode_frames,
        decode_passes,
        decoded_frames,
        execute_plan,
    )

    cfg = loader_config(data, span, args)
    epochs = -(-args.samples // len(originals))
    clip_frames = args.rho * args.frames
    loader = ClipLoader(cfg)

    def run_a():
        loader.set_epoch(0)
        return sum(len(batch["key"]) for _ in range(epochs) for batch in loader)

    plans = plans_for(data, cfg, epochs)
    n = len(plans)
    w_a, c_a, n_a = timed(run_a, args.repeats)
    assert n_a == n, (n_a, n)
    stats: dict = {}  # frames actually decoded (non-reference frames that are not needed are skipped)
    for p, meta, mp4 in plans:
        decode_clips(slice_clips(mp4, meta, [c.frames for c in p.clips]), stats)
    # per sample, upper bound of frames decoded per clip (overlapping clips share one decode pass)
    worst_a = max(decoded_frames(slice_clips(mp4, meta, [c.frames for c in p.clips])) / len(p.clips)
                  for p, meta, mp4 in plans)
    # Executor only (decode + augment, slicing done beforehand): as the loader runs it (clips whose
    # fragments overlap share one decode) and with every clip sliced and decoded on its own, which
    # is what a clip costs when no other clip of the sample is near it (always so at long timespans).
    shared = [(p, slice_clips(mp4, meta, [c.frames for c in p.clips])) for p, meta, mp4 in plans]
    alone = [(p, [slice_clips(mp4, meta, [c.frames])[0] for c in p.clips]) for p, meta, mp4 in plans]
    _, c_e, _ = timed(lambda: [execute_plan(p, s) for p, s in shared], args.repeats)
    _, c_e1, _ = timed(lambda: [execute_plan(p, s) for p, s in alone], args.repeats)
    # Decode only, the same slices two ways: the sample table straight to the decoder (what the
    # loader does) vs. the demuxer (av.open) with per-packet skip_frame=NONREF (what it did before).
    passes = [(data, union) for _, slices in shared for data, _, union in decode_passes(slices)]
    _, c_direct, _ = timed(lambda: [decode_frames(d, u) for d, u in passes], args.repeats)
    _, c_demux, _ = timed(lambda: [decode_demuxed(d, set(u)) for d, u in passes], args.repeats)
    w_b, c_b, dec_b = timed(lambda: baseline_slowfast(plans, originals), args.repeats)
    w_b2, c_b2, dec_b2 = timed(lambda: baseline_slowfast_span(plans, originals), args.repeats)
    clips = args.rho * n
    row = {
        "length_s": length, "timespan_s": span, "samples": n,
        "a_clips_s": clips / w_a, "a_clips_cpu_s": clips / c_a, "a_dec_per_frame": stats["decoded"] / (n * clip_frames),
        "a_worst_clip_decoded": worst_a,
        "exec_shared_clips_cpu_s": clips / c_e, "exec_alone_clips_cpu_s": clips / c_e1,
        "decode_direct_clips_cpu_s": clips / c_direct, "decode_demuxer_clips_cpu_s": clips / c_demux,
        "bound_span_plus_gop": (args.frames - 1) * args.stride + 1 + plans[0][1]["gop"],
        "b_clips_s": clips / w_b, "b_clips_cpu_s": clips / c_b, "b_dec_per_frame": dec_b / (n * clip_frames),
        "b2_clips_s": clips / w_b2, "b2_clips_cpu_s": clips / c_b2, "b2_dec_per_frame": dec_b2 / (n * clip_frames),
    }
    if not args.no_dali:
        sub = plans[: args.dali_samples]
        ex = dali_executor(sub, vp9, args)
        w_c, c_c, dec_c = timed(lambda: baseline_dali_whole(sub, vp9, ex), 1)
        row.update(c_clips_s=args.rho * len(sub) / w_c, c_clips_cpu_s=args.rho * len(sub) / c_c,
                   c_dec_per_frame=dec_c / (len(sub) * clip_frames))
    return row


def time_gpu_loader(data: Path, length: float, span: float, args) -> dict:
    """The GPU path's clips/s: ``ClipLoader(device="cuda")`` at 224² crops, all samples per batch,
    after two warm-up batches (DALI pipeline build); the batch is reduced on the GPU so the
    timing covers finished work."""
    import torch

    from rhovid.ingest.reader import read_index
    from rhovid.train.data import ClipLoader, LoaderConfig

    n = len(read_index(data))
    loader = ClipLoader(LoaderConfig(data=str(data), rho=args.rho, frames=args.frames, stride=args.stride,
                                     timespan_s=span, crop=224, batch_size=n, workers=0, device="cuda", seed=0))

    def run(k: int) -> None:
        done, epoch = 0, 0
        while done < k:
            loader.set_epoch(epoch)
            epoch += 1
            for batch in loader:
                batch["video"].float().sum().item()
                done += 1
                if done == k:
                    break

    run(2)
    torch.cuda.synchronize()
    t = time.perf_counter()
    run(args.gpu_batches)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return {"length_s": length, "timespan_s": span, "crop": 224, "batch": n,
            "clips_per_s": args.gpu_batches * n * args.rho / seconds, "gpu": torch.cuda.get_device_name()}


def box_lookup_share(data: Path, row: dict, args) -> dict:
    """Loader time spent on boxes: one box-set load per shard plus one lookup per sample.

    The load is paid once per shard (and worker) per epoch, so its share depends on samples per
    shard: reported as run here (few videos per shard) and for 100 samples per shard (default
    1 GiB shards of real video hold hundreds).
    """
    from rhovid.ingest.reader import list_shards, read_index, shard_name
    from rhovid.store.compute import compute_box_set
    from rhovid.store.zarr_store import BoxStore

    compute_box_set(data, "fh", box_fps=2.0, max_boxes=16, name="bench", workers=0, progress=False)
    store = BoxStore(data)
    index = read_index(data)
    load_s = lookup_s = 0.0
    shards = samples = 0
    for path in list_shards(data):
        t = time.process_time()
        sb = store.load(shard_name(path), "bench")
        load_s += time.process_time() - t
        shards += 1
        for e in (e for e in index if e["shard"] == path.name):
            t = time.process_time()
            for r in range(args.rho):
                sb.lookup(e["key"], [(r * 37) % e["num_frames"]])
            lookup_s += time.process_time() - t
            samples += 1
    loader_ms = 1e3 * args.rho / row["a_clips_cpu_s"]  # CPU ms per sample, like the lookup timings
    load_ms, lookup_ms = 1e3 * load_s / shards, 1e3 * lookup_s / samples
    return {"load_ms_per_shard": load_ms, "lookup_ms_per_sample": lookup_ms, "loader_ms_per_sample": loader_ms,
            "samples_per_shard": samples / shards,
            "share_as_run": (load_ms * shards / samples + lookup_ms) / loader_ms,
            "share_100_per_shard": (load_ms / 100 + lookup_ms) / loader_ms}


def render(rows: list[dict], boxes: dict, args) -> str:
    def get(length, span, k):
        return next((r.get(k) for r in rows if r["length_s"] == length and r["timespan_s"] == span), None)

    def num(v, fmt, suffix=""):
        return "-" if v is None else format(v, fmt) + suffix

    flags = encoding_flags(args.tune, args.bframes)
    lines = [
        f"Sources: `rhovid synth` {args.size} at {args.fps:g} fps, {args.videos} videos per length; "
        f"rho={args.rho}, T={args.frames}, tau={args.stride}, crop {args.crop}"
        + (f"; shards ingested with `{flags}`" if flags else "")
        + "; each contender runs the same plans "
        "and the same augmentation in one process. Throughput is clips per CPU-second of that process "
        "(user+sys of all its threads; the machine was shared, so wall time is noisy and shown for (a) only), "
        f"best of {args.repeats}.",
        "(a) this loader: `ClipLoader(device='cpu', workers=0)` on fMP4 shards, tar reading and planning included; "
        "(b) PyAV seek to the keyframe before each clip + decode forward, on the original x264 file; "
        "(b2) PySlowFast's multi-clip `pyav_decode`: one seek, decode from the first clip to the end of the last; "
        "(c) DALI's CPU decoder on whole-video VP9 buffers, same pipeline graph as the GPU path.",
        "",
        "| video | timespan | a clips/s wall | a | b | b2 | c | a/b | a/b2 | a/c "
        "| decoded/returned frame: a | b | b2 | c* |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["a_clips_cpu_s"]
        ratio = [None if r.get(k) is None else a / r[k] for k in ("b_clips_cpu_s", "b2_clips_cpu_s", "c_clips_cpu_s")]
        lines.append(
            f"| {r['length_s']:g} s | {r['timespan_s']:g} s | {r['a_clips_s']:.1f} | {a:.1f} | "
            f"{num(r.get('b_clips_cpu_s'), '.1f')} | {num(r.get('b2_clips_cpu_s'), '.1f')} | "
            f"{num(r.get('c_clips_cpu_s'), '.2f')} | " + " | ".join(num(x, ".2f", "x") for x in ratio)
            + f" | {r['a_dec_per_frame']:.2f} | {num(r.get('b_dec_per_frame'), '.2f')} | "
            f"{num(r.get('b2_dec_per_frame'), '.2f')} | {num(r.get('c_dec_per_frame'), '.1f')} |"
        )
    lines += ["", "Throughput columns a, b, b2, c: clips per CPU-second. *(c): frames 0..last requested "
              "(DALI decodes from the start of the buffer; it reports no count).", "", "Goals:", ""]
    lengths = sorted({r["length_s"] for r in rows})
    spans = sorted({r["timespan_s"] for r in rows})
    for length in lengths:
        lo, hi = get(length, spans[0], "a_clips_cpu_s"), get(length, spans[-1], "a_clips_cpu_s")
        dlo, dhi = get(length, spans[0], "a_dec_per_frame"), get(length, spans[-1], "a_dec_per_frame")
        lines.append(f"- {length:g} s videos: (a) at {spans[-1]:g} s / at {spans[0]:g} s timespan = "
                     f"{hi / lo:.2f}x (goal >= 0.9); decoded frames per returned frame {dhi:.2f} vs {dlo:.2f} "
                     f"= {dlo / dhi:.2f}x (at short timespans the rho clips overlap and share one decode)")
        e_lo, e_hi = get(length, spans[0], "exec_shared_clips_cpu_s"), get(length, spans[-1], "exec_shared_clips_cpu_s")
        a_lo, a_hi = get(length, spans[0], "exec_alone_clips_cpu_s"), get(length, spans[-1], "exec_alone_clips_cpu_s")
        lines.append(f"  - decode + augment only, clips/CPU-s: as run {e_lo:.1f} -> {e_hi:.1f} ({e_hi / e_lo:.2f}x); "
                     f"every clip decoded on its own {a_lo:.1f} -> {a_hi:.1f} ({a_hi / a_lo:.2f}x)")
        ratios = []
        for span in spans:
            d, m = get(length, span, "decode_direct_clips_cpu_s"), get(length, span, "decode_demuxer_clips_cpu_s")
            ratios.append(f"{span:g} s {d:.1f} vs {m:.1f} ({d / m:.2f}x)")
        lines.append("  - decode only, clips/CPU-s, sample table -> decoder vs av.open + skip_frame=NONREF: "
                     + "; ".join(ratios))
    for span in spans:
        a, b = get(lengths[0], span, "a_clips_cpu_s"), get(lengths[-1], span, "a_clips_cpu_s")
        lines.append(f"- timespan {span:g} s: (a) on {lengths[-1]:g} s / on {lengths[0]:g} s videos = "
                     f"{b / a:.2f}x (goal >= 0.9)")
    worst = max(r["a_worst_clip_decoded"] for r in rows)
    bound = rows[0]["bound_span_plus_gop"]
    lines.append(f"- (a) frames decoded per clip, worst sample (upper bound, before non-reference skipping): "
                 f"{worst:.1f} (goal <= span + GOP = {bound})")
    for length in lengths:
        a = get(length, spans[-1], "a_clips_cpu_s")
        b, b2 = get(length, spans[-1], "b_clips_cpu_s"), get(length, spans[-1], "b2_clips_cpu_s")
        lines.append(f"- {length:g} s videos, {spans[-1]:g} s timespan: (a)/(b2) PySlowFast's path = "
                     f"{num(None if b2 is None else a / b2, '.2f')}x (goal >= 3), (a)/(b) per-clip seeks = "
                     f"{a / b:.2f}x")
    for length, b in boxes.items():
        lines.append(
            f"- {float(length):g} s videos: boxes = {b['load_ms_per_shard']:.1f} ms load per shard + "
            f"{b['lookup_ms_per_sample']:.3f} ms lookup per sample vs {b['loader_ms_per_sample']:.0f} ms loader "
            f"per sample: {100 * b['share_100_per_shard']:.2f} % at 100 samples/shard, "
            f"{100 * b['share_as_run']:.1f} % as run ({b['samples_per_shard']:g} samples/shard) (goal <= 5 %)")
    return "\n".join(lines)
