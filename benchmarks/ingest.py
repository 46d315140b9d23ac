"""Ingest benchmark: videos/s, overhead over the plain ffmpeg CLI, 1 -> 2 worker speed-up, GOP and encoding sweeps.

Measured side by side in one run on the same generated sources (testsrc2 / mandelbrot):
- the plain ffmpeg CLI running, one file after another, exactly the argv ingest runs
  (``transcode.ffmpeg_args``, one ffmpeg thread) -> the reference time;
- ``ingest()`` inline (probe + transcode + fragment table + checks + tar/idx/index writes),
  with a 1-process pool and with a 2-process pool (one ffmpeg thread per process);
  overhead = ingest inline / ffmpeg CLI (goal <= 1.10), speed-up = 1 worker / 2 workers
  (goal >= 1.8 on 2 free cores); and one worker confined to one core (CPU affinity), so the
  speed-up a second core buys is measured apart from ffmpeg's own pipeline threads;
- the GOP sweep behind the default ``--gop``: bytes per video second, and the frames decoded
  per random 8x8 clip (8 frames, stride 8 = a 57-frame span) when the loader slices the
  covering fragments; waste = decoded - span;
- the encoding sweep (``--tune`` and fixed ``--bframes`` against the default encoding): bytes
  per video second, PSNR against the source, and the loader's decode time per 8x8 clip;
- the quality sweep (``--crf`` x ``--preset``) on grainy 320x240 sources at 2 Mbps (film-grain
  noise on a ``rhovid synth`` scene and on mandelbrot): the same columns plus SSIM over every
  frame and the PSNR/SSIM that ingest records from 4 sampled frames (ingest/quality.py), and
  what recording them costs: transcode with the reference tap + the comparison, against the
  plain transcode (median of paired runs).

Each timing is the fastest of ``--repeats`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", type=int, default=16, help="generated source videos (default 16)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each source (default 10)")
    p.add_argument("--size", default="480x360", help="source resolution (default 480x360)")
    p.add_argument("--short-side", type=int, default=256, help="ingest --short-side (default 256)")
    p.add_argument("--repeats", type=int, default=5,
                   help="timing repeats (paired ratios: median; rates: fastest) (default 5)")
    p.add_argument("--gops", default="8,16,32,64", help="GOP sizes of the sweep ('' to skip)")
    p.add_argument("--gop-seconds", type=float, default=20.0, help="length of the GOP- and tune-sweep videos")
    p.add_argument("--tunes", default=",fastdecode",
                   help="x264 tunes compared at the default GOP, '' = none (default ',fastdecode': none vs fastdecode)")
    p.add_argument("--bframes", default="7,15",
                   help="fixed B-frame counts (ingest --bframes) compared in the same table as the tunes, "
                        "'' = none (default 7,15)")
    p.add_argument("--crfs", default="18,23,28", help="x264 CRFs of the quality sweep ('' to skip; default 18,23,28)")
    p.add_argument("--presets", default="veryfast,medium",
                   help="x264 presets of the quality sweep, each with every --crfs (default veryfast,medium)")
    p.add_argument("--grain-seconds", type=float, default=10.0, help="length of the grainy quality-sweep sources")
    p.add_argument("--clips", type=int, default=2000, help="random 8x8 clips per GOP for the waste (default 2000)")
    p.add_argument("--timed-clips", type=int, default=60, help="of which decoded and timed (default 60)")
    p.add_argument("--out", type=Path, default=None, help="markdown result file "
                   "(default benchmarks/results/ingest-<date>-cpu.md; a .json is written beside it)")


def run(args: argparse.Namespace) -> int:
    out = args.out or RESULTS / f"ingest-{date.today().isoformat()}-cpu.md"
    with tempfile.TemporaryDirectory(prefix="rhovid-bench-ingest-") as tmp:
        tmp = Path(tmp)
        sources = make_sources(tmp / "src", args.videos, args.seconds, args.size)
        speed = time_ingest(sources, tmp, args.short_side, args.repeats)
        gops = [int(g) for g in args.gops.split(",") if g.strip()]
        tunes = [t.strip() or None for t in args.tunes.split(",")] if args.tunes else []
        encodings = [(t, None) for t in tunes] + [(None, int(b)) for b in args.bframes.split(",") if b.strip()]
        if encodings and (None, None) not in encodings:
            encodings.insert(0, (None, None))  # the reference of the "vs default" columns
        sources = sweep_sources(tmp, args.gop_seconds) if gops or encodings else []
        sweep = gop_sweep(tmp, sources, gops, args.short_side, args.clips, args.timed_clips) if gops else []
        tune_rows = tune_sweep(tmp, sources, encodings, args.short_side, args.timed_clips) if encodings else []
        crfs = [int(c) for c in args.crfs.split(",") if c.strip()]
        grainy = grainy_sources(tmp, args.grain_seconds) if crfs else []
        quality_rows = tune_sweep(tmp, grainy, [(None, None, c, p) for p in args.presets.split(",") for c in crfs],
                                  args.short_side, args.timed_clips) if crfs else []
        cost = quality_cost(tmp, grainy, args.short_side, args.repeats) if crfs else None
    text = render(speed, sweep, args, tune_rows, quality_rows, cost)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# rhovid bench ingest ({date.today().isoformat()}, CPU)\n\n{text}\n")
    out.with_suffix(".json").write_text(json.dumps({"speed": speed, "gop_sweep": sweep, "tune_sweep": tune_rows,
                                                    "quality_sweep": quality_rows, "quality_cost": cost,
                                                    "args": {k: str(v) for k, v in vars(args).items()}},
                                                   indent=2))
    print(f"\nwrote {out} and {out.with_suffix('.json')}")
    return 0


def make_sources(folder: Path, n: int, seconds: float, size: str) -> list[Path]:
    """``n`` H.264 sources alternating testsrc2 / mandelbrot (mandelbrot is harder to encode)."""
    from rhovid.ffmpeg import ffmpeg_exe

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        pattern = ("testsrc2", "mandelbrot")[i % 2]
        path = folder / f"v{i:03d}.mp4"
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", f"{pattern}=size={size}:rate=30", "-t", f"{seconds}", "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
        paths.append(path)
    return paths


def time_ingest(sources: list[Path], tmp: Path, short_side: int, repeats: int) -> dict:
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.probe import probe
    from rhovid.ingest.transcode import TranscodeSettings, ffmpeg_args

    cfg = IngestConfig(short_side=short_side, threads=1, progress=False)
    settings = TranscodeSettings(fps=cfg.fps, short_side=cfg.short_side, gop=cfg.gop, crf=cfg.crf,
                                 preset=cfg.preset, threads=1)
    argvs = []
    for i, s in enumerate(sources):  # the CLI writes files, as a user running ffmpeg by hand would
        argvs.append(ffmpeg_args(str(s), probe(s), settings, output=str(tmp / f"cli-{i}.mp4")))

    def cli():
        for a in argvs:
            subprocess.run(a, check=True)

    def run_ingest(workers):
        def go():
            data = tmp / f"data-{workers}"
            shutil.rmtree(data, ignore_errors=True)
            r = ingest([str(s) for s in sources], data, IngestConfig(**{**_fields(cfg), "workers": workers}))
            assert r.ingested == len(sources), r.failures
        return go

    def on_one_core(fn):
        # The pool, its workers and their ffmpeg inherit the affinity: one worker on a 1-core
        # machine. With it, 2 workers on 2 cores / this = the speed-up a second core buys, which
        # ffmpeg's pipeline threads cannot blur (they share the one core here).
        def go():
            cores = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {min(cores)})
            try:
                fn()
            finally:
                os.sched_setaffinity(0, cores)
        return go

    cases = {"ffmpeg CLI": cli, "ingest inline": run_ingest(0), "ingest 1 worker": run_ingest(1),
             "ingest 2 workers": run_ingest(2)}
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        cases["ingest 1 worker, 1 core"] = on_one_core(run_ingest(1))
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):  # interleaved, so a burst of load hits every case alike
        for name, fn in cases.items():
            c0, t0 = _cpu_seconds(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(_cpu_seconds() - c0)
    best = {k: min(v) for k, v in walls.items()}
    cpu = {k: min(v) for k, v in cpus.items()}

    def paired(a: str, b: str, d: dict) -> float:
        # median of per-repeat ratios: each pair ran back to back, so slow drifts of this
        # shared VM (identical ffmpeg runs varied +-10 % between repeats) cancel out
        return float(np.median([x / y for x, y in zip(d[a], d[b])]))

    n = len(sources)
    return {
        "videos": n,
        "seconds": best,
        "cpu_seconds": cpu,
        "all_seconds": walls,
        "all_cpu_seconds": cpus,
        "cpu_overhead_inline": paired("ingest inline", "ffmpeg CLI", cpus),
        "videos_per_s": {k: n / v for k, v in best.items()},
        "overhead_inline": paired("ingest inline", "ffmpeg CLI", walls),
        "overhead_1_worker": best["ingest 1 worker"] / best["ffmpeg CLI"],
        "speedup_2_workers": best["ingest 1 worker"] / best["ingest 2 workers"],
        "speedup_2_cores": (best["ingest 1 worker, 1 core"] / best["ingest 2 workers"]
                            if "ingest 1 worker, 1 core" in best else None),
        "loadavg": os.getloadavg(),
        "cores": os.cpu_count(),
    }


def sweep_sources(tmp: Path, seconds: float) -> list[tuple[str, Path]]:
    """The sweeps' contents: a ``rhovid synth`` video (textured objects on a panning textured
    background) and ffmpeg's mandelbrot zoom (every pixel changes every frame: the hard case
    for size), both 480x360."""
    from rhovid.ingest.synth import SynthConfig, synthesize

    (synth,) = synthesize(tmp / "sweep-synth", SynthConfig(classes=1, per_class=1, seconds=seconds,
                                                            width=480, height=360))
    (mandel,) = make_sources(tmp / "sweep-mandelbrot", 2, seconds, "480x360")[1:]
    return [("synth", synth), ("mandelbrot", mandel)]


def grainy_sources(tmp: Path, seconds: float) -> list[tuple[str, Path]]:
    """Grainy 320x240 30 fps sources at 2 Mbps (camera-like: temporal film-grain noise, the
    hard case for x264): a ``rhovid synth`` scene and mandelbrot, each + ffmpeg ``noise``."""
    from rhovid.ffmpeg import ffmpeg_exe
    from rhovid.ingest.synth import SynthConfig, synthesize

    (synth,) = synthesize(tmp / "grain-synth", SynthConfig(classes=1, per_class=1, seconds=seconds, width=320,
                                                           height=240))
    inputs = {"grainy synth": ["-i", str(synth)],
              "grainy mandelbrot": ["-f", "lavfi", "-i", "mandelbrot=size=320x240:rate=30"]}
    out = []
    for name, args in inputs.items():
        path = tmp / f"{name.replace(' ', '-')}.mp4"
        subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args, "-t", f"{seconds}",
                        "-vf", "noise=alls=20:allf=t+u", "-c:v", "libx264", "-preset", "medium", "-b:v", "2M",
                        "-maxrate", "2M", "-bufsize", "4M", "-pix_fmt", "yuv420p", str(path)], check=True)
        out.append((name, path))
    return out


def quality_cost(tmp: Path, sources, short_side: int, repeats: int) -> dict:
    """Wall time of recording the quality (transcode with the reference tap + ``quality.compare``)
    against the plain transcode, same settings, back to back; median of the paired ratios."""
    from rhovid.ingest import quality
    from rhovid.ingest.fmp4 import parse_fragments
    from rhovid.ingest.probe import probe
    from rhovid.ingest.transcode import TranscodeSettings, transcode

    settings = TranscodeSettings(short_side=short_side, threads=1)
    ratios, compare_s, plain_s = [], [], []
    for _ in range(repeats):
        for _, src in sources:
            info = probe(src)
            t0 = time.perf_counter()
            transcode(str(src), info, settings)
            t1 = time.perf_counter()
            frames = quality.sample_frames(round(info.duration_s * settings.fps), 4)
            mp4, kept, ref = quality.transcode_with_reference(str(src), info, settings, None, frames)
            t2 = time.perf_counter()
            table = parse_fragments(mp4)
            meta = {"num_frames": table.num_frames, "init_size": table.init_size,
                    "fragments": [[f.byte_offset, f.first_frame, f.num_frames] for f in table.fragments]}
            quality.compare(ref, kept, mp4[: table.data_end], meta)
            t3 = time.perf_counter()
            ratios.append((t3 - t1) / (t1 - t0))
            compare_s.append(t3 - t2)
            plain_s.append(t1 - t0)
    return {"ratio": float(np.median(ratios)), "compare_s": float(np.median(compare_s)),
            "transcode_s": float(np.median(plain_s)), "pairs": len(ratios)}


def gop_sweep(tmp: Path, sources, gops: list[int], short_side: int, clips: int, timed_clips: int) -> list[dict]:
    """Per content and GOP: bytes per second of video and decode waste of random 8x8 clips."""
    return [_sweep_one(tmp, content, src, gop, short_side, clips, timed_clips)
            for content, src in sources for gop in gops]


def tune_sweep(tmp: Path, sources, encodings: list[tuple], short_side: int, clips: int) -> list[dict]:
    """Per content and encoding ``(tune, bframes[, crf, preset])`` (default GOP; None = ingest's
    default): bytes per video second, PSNR and SSIM over every frame against the source scaled the
    same way (ffmpeg's filters), the PSNR/SSIM ingest recorded from its sampled frames, and the
    loader's CPU decode time per random 8x8 clip (``decode_pyav.decode_frames``: one thread,
    unneeded non-reference frames skipped)."""
    from rhovid.ingest.fragments import slice_clips
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.reader import iter_shard, list_shards
    from rhovid.train.decode_pyav import decode_frames

    rows = []
    for content, src in sources:
        for tune, bframes, *rate in encodings:
            crf, preset = rate or (None, None)
            data = tmp / f"enc-{content.replace(' ', '-')}-{tune or 'none'}-b{bframes}-crf{crf}-{preset}"
            x264 = {k: v for k, v in (("crf", crf), ("preset", preset)) if v is not None}
            ingest([str(src)], data, IngestConfig(short_side=short_side, tune=tune, bframes=bframes, progress=False,
                                                  **x264))
            (sample,) = iter_shard(list_shards(data)[0])
            meta, mp4 = sample["json"], sample["mp4"]
            rng = random.Random(0)
            slices = [slice_clips(mp4, meta, [range(f, f + 57, 8)])[0]
                      for f in (rng.randrange(meta["num_frames"] - 56) for _ in range(clips))]
            best, stats = float("inf"), {}
            for _ in range(3):  # fastest of 3 passes: the first also warms caches
                stats = {}
                c0 = time.process_time()
                for sl in slices:
                    decode_frames(sl.data, sl.indices, stats=stats)
                best = min(best, time.process_time() - c0)
            full = _psnr_ssim(tmp / f"{data.name}.mp4", mp4, src, meta)
            rows.append({
                "content": content, "tune": tune, "bframes": bframes, "crf": meta["encoder"]["crf"],
                "preset": meta["encoder"]["preset"], "gop": meta["gop"],
                "kbytes_per_video_s": len(mp4) / 1000 / meta["duration_s"],
                "psnr_db": full["psnr_db"], "ssim": full["ssim"],
                "recorded_psnr_db": meta["quality"]["psnr_db_mean"], "recorded_ssim": meta["quality"]["ssim_mean"],
                "decode_ms_per_clip": best * 1000 / clips,
                "decoded_frames_per_clip": stats["decoded"] / clips,
            })
    return rows


def _psnr_ssim(path: Path, mp4: bytes, src: Path, meta: dict) -> dict:
    """Average PSNR (dB, Y/U/V weighted as ffmpeg's psnr filter) and SSIM (ffmpeg's ``ssim``
    filter, "All") of every frame of ``mp4`` against ``src`` resampled the way ingest does."""
    from rhovid.ffmpeg import ffmpeg_exe

    path.write_bytes(mp4)
    ref = f"fps={meta['fps']:g},scale={meta['width']}:{meta['height']}:out_range=tv,format=yuv420p"
    graph = f"[1:v]{ref},split[r1][r2];[0:v]split[s1][s2];[s1][r1]psnr;[s2][r2]ssim"
    r = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path), "-i", str(src),
                        "-lavfi", graph, "-f", "null", "-"], capture_output=True, text=True, check=True)
    p = re.search(r"PSNR .* average:([0-9.]+|inf)", r.stderr)
    q = re.search(r"SSIM .* All:([0-9.]+)", r.stderr)
    if p is None or q is None:
        raise RuntimeError(f"no PSNR/SSIM in ffmpeg's output for {src}: {r.stderr[-500:]}")
    return {"psnr_db": float(p.group(1)), "ssim": float(q.group(1))}


def _sweep_one(tmp, content, src, gop, short_side, clips, timed_clips) -> dict:
    from rhovid.ingest.decode import decode_rgb
    from rhovid.ingest.fragments import clip_slice
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.reader import iter_shard, list_shards

    data = tmp / f"gop-{content}-{gop}"
    ingest([str(src)], data, IngestConfig(short_side=short_side, gop=gop, progress=False))
    (sample,) = iter_shard(list_shards(data)[0])
    meta, mp4 = sample["json"], sample["mp4"]
    span = 8 * 7 + 1  # 8 frames at stride 8
    rng = random.Random(0)
    decoded = slice_bytes = 0
    decode_s = 0.0
    for c in range(clips):
        first = rng.randrange(meta["num_frames"] - span + 1)
        last = first + span - 1
        data_bytes, frame0 = clip_slice(mp4, meta, first, last)
        # the decoder runs from the covering fragment's IDR up to the clip's last frame
        decoded += last - frame0 + 1
        slice_bytes += len(data_bytes)
        if c < timed_clips:
            t0 = time.perf_counter()
            decode_rgb(data_bytes, range(first - frame0, last - frame0 + 1, 8))
            decode_s += time.perf_counter() - t0
    return {
        "content": content,
        "gop": gop,
        "kbytes_per_video_s": len(mp4) / 1000 / meta["duration_s"],
        "decoded_frames_per_clip": decoded / clips,
        "waste_frames_per_clip": decoded / clips - span,
        "slice_kbytes_per_clip": slice_bytes / 1000 / clips,
        "decode_ms_per_clip": decode_s * 1000 / max(1, min(clips, timed_clips)),
    }


def render(speed: dict, sweep: list[dict], args, tune_rows: list[dict] = (), quality_rows: list[dict] = (),
           cost: dict | None = None) -> str:
    s = speed["seconds"]
    lines = [
        f"{speed['videos']} sources of {args.seconds:g} s at {args.size} -> short side {args.short_side}, "
        f"fastest of {args.repeats}, one ffmpeg thread per video",
        "",
        "| run | wall s | videos/s | wall vs ffmpeg CLI | CPU s | CPU vs ffmpeg CLI | cores busy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    c = speed["cpu_seconds"]
    for name in s:
        lines.append(f"| {name} | {s[name]:.2f} | {speed['videos_per_s'][name]:.2f} | "
                     f"{s[name] / s['ffmpeg CLI']:.3f} | {c[name]:.2f} | {c[name] / c['ffmpeg CLI']:.3f} | "
                     f"{c[name] / s[name]:.2f} |")
    # ffmpeg >= 7 runs demux, decode, filters and encode in their own threads, so one transcode
    # with -threads 1 still keeps more than one core busy: that bounds the 1 -> 2 worker speed-up.
    one = c["ingest 1 worker"] / s["ingest 1 worker"]
    lines += [
        "",
        f"- overhead of ingest over the ffmpeg CLI (inline, median of the {args.repeats} back-to-back pairs): "
        f"**{speed['overhead_inline']:.3f}x** wall, **{speed['cpu_overhead_inline']:.3f}x** CPU (goal <= 1.10)",
        f"- speed-up 1 -> 2 workers: **{speed['speedup_2_workers']:.2f}x** (goal >= 1.8 on 2 free cores); "
        f"one worker already keeps {one:.2f} cores busy (ffmpeg's threaded pipeline), so "
        f"{speed['cores']} cores allow at most {speed['cores'] / one:.2f}x; 2 workers keep "
        f"{c['ingest 2 workers'] / s['ingest 2 workers']:.2f} of {speed['cores']} cores busy",
    ]
    if speed.get("speedup_2_cores"):
        lines.append(
            f"- speed-up from 1 worker on 1 core (affinity) to 2 workers on 2 cores: "
            f"**{speed['speedup_2_cores']:.2f}x** (what a second core and worker add; ffmpeg's pipeline "
            f"threads share the single core in the first run)")
    lines += [
        f"- load average (1/5/15 min) {' '.join(f'{x:.1f}' for x in speed['loadavg'])} on {speed['cores']} cores",
    ]
    if sweep:
        lines += [
            "",
            f"GOP sweep: {args.gop_seconds:g} s 480x360 sources -> short side {args.short_side}; "
            f"{args.clips} random 8x8 clips (8 frames at stride 8 = 57-frame span) per GOP sliced "
            f"from their covering fragments; decode time over the first {args.timed_clips} (PyAV)",
            "",
            "| content | GOP | KB per video s | size vs largest GOP | decoded frames / clip | "
            "waste frames / clip | slice KB / clip | decode ms / clip |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sweep:
            ref = max((x for x in sweep if x["content"] == r["content"]), key=lambda x: x["gop"])
            ref = ref["kbytes_per_video_s"]
            lines.append(
                f"| {r['content']} | {r['gop']} | {r['kbytes_per_video_s']:.1f} | "
                f"{r['kbytes_per_video_s'] / ref:.2f} | "
                f"{r['decoded_frames_per_clip']:.1f} | {r['waste_frames_per_clip']:.1f} | "
                f"{r['slice_kbytes_per_clip']:.1f} | {r['decode_ms_per_clip']:.1f} |"
            )
    if tune_rows:
        lines += [
            "",
            f"x264 encodings (`rhovid ingest --tune` / `--bframes`): same sources, GOP {tune_rows[0]['gop']}; "
            "PSNR against the source "
            f"resampled like ingest; the loader's CPU decode of {args.timed_clips} random 8x8 clips "
            "(one thread, unneeded B-frames skipped), fastest of 3 passes",
            "",
            "| content | encoding | KB per video s | bytes vs default | PSNR dB | decode ms / clip | decode vs default | "
            "decoded frames / clip |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in tune_rows:
            ref = next((x for x in tune_rows if x["content"] == r["content"] and x["tune"] is None
                        and x["bframes"] is None), r)
            lines.append(
                f"| {r['content']} | {encoding_flags(r['tune'], r['bframes']) or 'default'} | "
                f"{r['kbytes_per_video_s']:.1f} | "
                f"{r['kbytes_per_video_s'] / ref['kbytes_per_video_s']:.2f} | {r['psnr_db']:.2f} | "
                f"{r['decode_ms_per_clip']:.2f} | {r['decode_ms_per_clip'] / ref['decode_ms_per_clip']:.2f} | "
                f"{r['decoded_frames_per_clip']:.1f} |")
    if quality_rows:
        lines += [
            "",
            f"x264 rate settings (`rhovid ingest --crf` / `--preset`) on grainy 320x240 30 fps sources at 2 Mbps "
            f"({args.grain_seconds:g} s) -> short side {args.short_side}, GOP {quality_rows[0]['gop']}: PSNR (Y/U/V) "
            "and SSIM over every frame (ffmpeg's filters), PSNR/SSIM (luma) that ingest recorded from 4 sampled "
            f"frames, the loader's CPU decode of {args.timed_clips} random 8x8 clips",
            "",
            "| content | encoding | KB per video s | bytes vs default | PSNR dB | SSIM | recorded PSNR dB | "
            "recorded SSIM | decode ms / clip |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in quality_rows:
            ref = next((x for x in quality_rows if x["content"] == r["content"] and x["crf"] == 23
                        and x["preset"] == "veryfast"), r)
            lines.append(
                f"| {r['content']} | `--crf {r['crf']} --preset {r['preset']}` | {r['kbytes_per_video_s']:.1f} | "
                f"{r['kbytes_per_video_s'] / ref['kbytes_per_video_s']:.2f} | {r['psnr_db']:.2f} | {r['ssim']:.4f} | "
                f"{r['recorded_psnr_db']:.2f} | {r['recorded_ssim']:.4f} | {r['decode_ms_per_clip']:.2f} |")
    if cost:
        lines += ["", f"- recording the quality (reference tap + comparing 4 frames) costs **{cost['ratio']:.3f}x** the "
                      f"plain transcode (median of {cost['pairs']} back-to-back pairs; transcode "
                      f"{cost['transcode_s']:.2f} s, comparison {cost['compare_s'] * 1000:.0f} ms per video)"]
    return "\n".join(lines)


def encoding_flags(tune: str | None, bframes: int | None) -> str:
    """The ``rhovid ingest`` flags of an encoding ('' = the defaults)."""
    return " ".join(([f"--tune {tune}"] if tune else []) + ([f"--bframes {bframes}"] if bframes is not None else []))


def _cpu_seconds() -> float:
    """User+system CPU of this process and of all its reaped descendants (pool workers, ffmpeg).

    Unlike wall time this barely moves when other jobs share the cores, so the CPU ratio is
    the load-robust overhead figure.
    """
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _fields(cfg) -> dict:
    from dataclasses import asdict

    return asdict(cfg)
