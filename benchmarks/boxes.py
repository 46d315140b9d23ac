"""Box-prior benchmark: ms/frame per method vs the bare library call, workers, reader lookups.

Measured side by side in one run on the same decoded frames:
- per method, ms/frame of the prior as ``rhovid boxes`` runs it (library call + label->box +
  post-processing) and of the bare OpenCV / scikit-image call alone; their ratio is the
  overhead rhovid adds (goal <= 1.10);
- end-to-end frames/s of ``compute_box_set`` (read shard, decode, prior, write Zarr) with 1 and
  2 worker processes;
- the reader: ``BoxStore.load`` per shard and ``ShardBoxes.lookup`` per sample (8 frames).

By default builds its own small dataset (synthetic 320x240 videos through rhovid.ingest).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (method, params, bare call). The bare call is the library's own segmentation /
# detection on one frame, i.e. what any user of OpenCV / scikit-image would pay anyway.
CASES = {
    "slic": ("slic", {}, "slic"),
    "slic-skimage": ("slic", {"impl": "skimage"}, "slic"),
    "fh": ("fh", {}, "fh"),
    "fh-skimage": ("fh", {"impl": "skimage"}, "fh"),
    "hog": ("hog", {}, "hog"),
    "motion": ("motion", {}, "motion"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rhovid.benchmarks import boxes_quality

    parser.add_argument(
        "--quality", action="store_true",
        help="measure box quality instead of speed: recall against ground-truth boxes (synthetic static and "
             "panning camera, OpenCV's vtest.avi pedestrians); see benchmarks/boxes_quality.py",
    )
    boxes_quality.add_arguments(parser)
    parser.add_argument("--data", type=Path, help="existing DATA to use (default: build a synthetic one)")
    parser.add_argument(
        "--cases", nargs="+", default=list(CASES), choices=list(CASES), help="methods to time"
    )
    parser.add_argument("--videos", type=int, default=8, help="synthetic videos (default 8)")
    parser.add_argument("--seconds", type=float, default=6.0, help="synthetic video length (default 6)")
    parser.add_argument("--frames", type=int, default=48, help="frames timed per method (default 48)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timing repeats; the fastest counts (default 3)"
    )
    parser.add_argument(
        "--workers-methods", nargs="+", default=["slic", "fh"], help="methods timed end to end"
    )
    parser.add_argument(
        "--box-fps", type=float, default=6.0, help="box fps of the end-to-end runs (default 6)"
    )
    parser.add_argument(
        "--out", type=Path, default=None,
        help="markdown result file (default benchmarks/results/boxes-<date>-cpu.md; .json beside it)"
    )


def run(args: argparse.Namespace) -> int:
    if args.quality:
        from rhovid.benchmarks.boxes_quality import run_quality

        return run_quality(args)
    with tempfile.TemporaryDirectory(prefix="rhovid-bench-boxes-") as tmp:
        data = args.data or build_data(Path(tmp), args.videos, args.seconds)
        frames, prev = bench_frames(data, args.frames)
        rows = [time_case(name, frames, prev, args.repeats) for name in args.cases]
        scaling = [time_workers(data, m, Path(tmp), args.box_fps) for m in args.workers_methods]
        # one shard holding every video: 2 workers split it into video ranges (below-shard split)
        one = build_data(Path(tmp), args.videos, args.seconds, shards=args.videos, name="one-shard")
        scaling += [{**time_workers(one, m, Path(tmp), args.box_fps), "shards": 1} for m in args.workers_methods]
        reader = time_reader(data, Path(tmp))
    text = render(rows, scaling, reader, frames.shape)
    text += f"\n\nload average during the run (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    text += f" on {os.cpu_count()} cores"
    print(text)
    today = date.today().isoformat()
    args.out = args.out or RESULTS / f"boxes-{today}-cpu.md"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# rhovid bench boxes ({today}, CPU)\n\n{text}\n")
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {"frame_shape": list(frames.shape[1:]), "methods": rows, "workers": scaling, "reader": reader},
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def build_data(tmp: Path, videos: int, seconds: float, shards: int | None = None, name: str = "data") -> Path:
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    classes = max(1, min(4, videos))
    synthesize(  # a rerun with the same config keeps the files: one synthesis for every DATA
        tmp / "src",
        SynthConfig(
            classes=classes,
            per_class=-(-videos // classes),
            seconds=seconds,
            width=320,
            height=240,
            fps=30.0,
            seed=0,
        ),
    )
    ingest(
        [str(tmp / "src")],
        tmp / name,
        IngestConfig(short_side=240, shard_count=shards or max(1, videos // 4), workers=0, progress=False),
    )
    return tmp / name


def bench_frames(data: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n frames at 2 fps from the shards, and the frame before each (for motion)."""
    from rhovid.ingest.decode import decode_rgb
    from rhovid.ingest.reader import iter_shard, list_shards
    from rhovid.store.compute import box_frame_indices

    frames, prev = [], []
    for path in list_shards(data):
        for s in iter_shard(path):
            idx = box_frame_indices(s["json"]["num_frames"], s["json"]["fps"], 2.0)[1:]
            rgb = decode_rgb(s["mp4"], np.concatenate([idx - 1, idx]))
            prev.extend(rgb[: len(idx)])
            frames.extend(rgb[len(idx) :])
            if len(frames) >= n:
                return np.stack(frames[:n]), np.stack(prev[:n])
    return np.stack(frames), np.stack(prev)


def bare_call(kind: str, params):
    """The library call alone, per frame (no label->box, no post-processing)."""
    import cv2

    from rhovid.store.priors.fh import fh_labels
    from rhovid.store.priors.hog import hog_detect, hog_upscale
    from rhovid.store.priors.motion import motion_mask
    from rhovid.store.priors.slic import slic_labels

    if kind == "slic":
        return lambda f, p: slic_labels(f, params)
    if kind == "fh":
        return lambda f, p: [fh_labels(f, params, k) for k in params.scales]
    if kind == "hog":
        return lambda f, p: hog_detect(hog_upscale(f, params.min_side)[0], params)
    return lambda f, p: cv2.connectedComponentsWithStats(
        cv2.dilate(motion_mask(f, p, params), np.ones((params.dilate,) * 2, np.uint8)), connectivity=8
    )


def time_case(name: str, frames: np.ndarray, prev: np.ndarray, repeats: int) -> dict:
    import cv2

    from rhovid.store.boxsets import make_params
    from rhovid.store.priors import METHODS

    cv2.setNumThreads(1)
    method, overrides, kind = CASES[name]
    params = make_params(method, overrides)
    fn = METHODS[method][1]
    bare = bare_call(kind, params)
    extra = {"previous": prev} if "previous" in params.extra_inputs() else {}
    h, w = frames.shape[1:3]

    def full(i):
        sub = {k: v[i : i + 1] for k, v in extra.items()}
        for b, s in fn(frames[i : i + 1], params, **sub):
            params.select(b, w, h, 16, s)

    n = len(frames)
    full(0)  # warm-up: imports, detector construction
    # Per frame, bare and full calls alternate and the fastest of `repeats` counts: the
    # two see the same frame, cache state and background load, so their ratio is stable.
    t_full = np.full(n, np.inf)
    t_bare = np.full(n, np.inf)
    for _ in range(repeats):
        for i in range(n):
            t_bare[i] = min(t_bare[i], _seconds(lambda i=i: bare(frames[i], prev[i])))
            t_full[i] = min(t_full[i], _seconds(lambda i=i: full(i)))
    ms_full, ms_bare = 1e3 * t_full.sum() / n, 1e3 * t_bare.sum() / n
    return {"case": name, "ms_per_frame": ms_full, "bare_ms_per_frame": ms_bare, "ratio": ms_full / ms_bare}


def time_workers(data: Path, method: str, tmp: Path, box_fps: float) -> dict:
    from rhovid.ingest.reader import list_shards
    from rhovid.store.compute import compute_box_set

    out = {"method": method, "box_fps": box_fps, "shards": len(list_shards(data))}
    for workers in (1, 2):
        copy = tmp / f"w{workers}-{method}"
        shutil.copytree(data, copy, ignore=shutil.ignore_patterns("boxes.zarr"))
        cpu0 = _cpu_with_children()
        t0 = time.perf_counter()
        report = compute_box_set(copy, method, box_fps=box_fps, workers=workers, progress=False)
        wall = time.perf_counter() - t0
        out[f"cpu_s_{workers}"] = _cpu_with_children() - cpu0  # pool workers have exited: counted
        if report.failed:
            raise RuntimeError(f"bench: {method} failed on {report.failed}")
        out[f"fps_{workers}"] = report.frames / wall
        out["frames"] = report.frames
        shutil.rmtree(copy)
    out["speedup"] = out["fps_2"] / out["fps_1"]
    return out


def time_reader(data: Path, tmp: Path) -> dict:
    from rhovid.store.compute import compute_box_set
    from rhovid.store.zarr_store import BoxStore

    copy = tmp / "reader"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("boxes.zarr"))
    report = compute_box_set(copy, "motion", progress=False)
    store = BoxStore(copy)
    shards = report.computed
    t0 = time.perf_counter()
    loaded = [store.load(s, report.set_name) for s in shards]
    load_ms = 1e3 * (time.perf_counter() - t0) / len(shards)  # wall: includes file reads
    rng = np.random.default_rng(0)
    queries = []
    for sb in loaded:
        for key in sb.keys:
            top = int(sb.stored_frames(key)[-1]) + 1
            queries.extend((sb, key, rng.integers(0, top, 8)) for _ in range(200))
    lookup_us = 1e6 * _seconds(lambda: [sb.lookup(key, fr) for sb, key, fr in queries]) / len(queries)
    return {"load_ms_per_shard": load_ms, "lookup_us_per_sample": lookup_us, "lookups": len(queries)}


def _cpu_with_children() -> float:
    import resource

    return sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _seconds(fn) -> float:
    """CPU seconds of this process: on a shared 2-core machine wall time mostly measures the
    neighbours; every timed call is single-threaded (cv2.setNumThreads(1)), so CPU time is
    the time an otherwise idle core needs."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def render(rows: list[dict], scaling: list[dict], reader: dict, shape) -> str:
    n, h, w = shape[:3]
    lines = [
        f"{n} frames of {w}x{h} (stored-video pixels), K=16, one thread; CPU ms/frame (process time, per frame best of "
        "repeats); ratio = rhovid / bare library call on the same frames (goal <= 1.10)",
        "",
        "| method | rhovid ms/frame | bare call ms/frame | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['case']} | {r['ms_per_frame']:.2f} | {r['bare_ms_per_frame']:.2f} | {r['ratio']:.3f} |"
        for r in rows
    ]
    lines += [
        "",
        "| end to end (shards -> decode -> prior -> zarr, incl. pool start), wall clock | shards | box fps | frames "
        "| frames/s, 1 worker | frames/s, 2 workers | speed-up | CPU s, 1 / 2 workers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {s['method']} | {s['shards']} | {s['box_fps']:g} | {s['frames']} | {s['fps_1']:.1f} | {s['fps_2']:.1f} | "
        f"{s['speedup']:.2f}x | {s['cpu_s_1']:.1f} / {s['cpu_s_2']:.1f} |"
        for s in scaling
    ]
    lines += [
        "",
        "| reader | value |",
        "|---|---:|",
        f"| BoxStore.load, ms per shard | {reader['load_ms_per_shard']:.2f} |",
        f"| ShardBoxes.lookup, CPU us per sample (8 frames) | {reader['lookup_us_per_sample']:.1f} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m rhovid.benchmarks.boxes [options]
    _p = argparse.ArgumentParser(
        prog="python -m rhovid.benchmarks.boxes", description=__doc__.splitlines()[0]
    )
    add_arguments(_p)
    raise SystemExit(run(_p.parse_args()))
