"""Box-prior quality (``rhovid bench boxes --quality``): do the priors find the objects?

Every prior runs as ``rhovid boxes`` runs it (``compute_box_set``, one process, default
K = 16 at 2 box fps) on three sets, and its stored boxes are scored against ground truth:

- ``synthetic static`` / ``synthetic pan``: ``rhovid synth --camera static|pan --boxes`` at
  342x256 (ingested at the default short side 256, so stored = source pixels), the same
  scenes with a still or a panning background (128 px/s); ground truth is every visible
  object's box (class objects and distractors) from ``synth --boxes``. Objects under 8 px a
  side or 64 visible pixels are not counted for recall (boxes touching them are not "on
  nothing").
- ``vtest (weak)``: OpenCV's pedestrian video ``vtest.avi`` (Debian ``opencv-doc``; static
  camera, 768x576 at 10 fps, 79.5 s). Ground truth is weak: the moving regions, i.e. pixels
  differing by > 30 grey levels (any channel) from the median of the stored frames, opened
  (3x3) and closed (7x7), components of >= 80 px. People walking apart get one box each;
  people walking together get one box for the group, someone standing still gets none, and a
  shadow can widen a box, so it measures ``hog`` and ``motion`` (things that move / people)
  and says little about the segmenters, whose regions are not people.

Per prior and set: recall of ground-truth objects at IoU >= 0.5 and >= 0.3 (an object is
found when any stored box of its frame reaches the IoU), boxes per frame, the fraction of boxes
touching no object (zero intersection with every ground-truth box), and CPU ms per frame in
the prior (library call + post-processing, ``ComputeReport.prior_seconds``; decoding excluded).
``random`` is ConST-CL's random generator as the loader draws it (``train.sampler.random_boxes``,
K boxes per frame): the floor every prior must beat.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_HELP = "apt-get install -y opencv-doc  (Debian/Ubuntu: OpenCV's sample data, with vtest.avi)"
K = 16
BOX_FPS = 2.0
MIN_GT_SIDE, MIN_GT_PIXELS = 8, 64

# row name -> (method, --param overrides). "before" rows are the defaults before issue 14 as
# parameters of today's code (slic's grid of 24-px superpixels is segments = 342*256/24^2).
PRIORS = {
    "random": ("random", {}),
    "slic": ("slic", {}),
    "fh": ("fh", {}),
    "hog": ("hog", {}),
    "motion": ("motion", {}),
    "slic, before": ("slic", {"segments": 152, "ruler": 10, "min_frac": 0, "max_frac": 1, "nms_iou": 1}),
    "fh, before": ("fh", {"scales": "300", "segment_min_size": 50, "min_frac": 0, "max_frac": 1, "nms_iou": 1}),
    "hog, before": ("hog", {"detector": "default", "min_side": 256, "scale": 1.05, "hit_threshold": 0,
                            "group": 2, "trim": False, "nms_iou": 1}),
    "motion, compensate=none": ("motion", {"compensate": "none"}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vtest", type=Path, default=VTEST, help=f"pedestrian video (default {VTEST})")
    parser.add_argument("--quality-videos", type=int, default=2, help="--quality: videos per class (6 classes)")
    parser.add_argument("--quality-seconds", type=float, default=4.0, help="--quality: synthetic video length")
    parser.add_argument("--sheets", type=Path, help="--quality: also write a --show sheet per prior and set here")


def run_quality(args: argparse.Namespace) -> int:
    today = date.today().isoformat()
    out = args.out or Path(__file__).resolve().parent / "results" / f"boxes-quality-{today}-cpu.md"
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="rhovid-bench-quality-") as tmp:
        sets = build_sets(Path(tmp), args, notes)
        for set_name, (data, truth) in sets.items():
            for prior, (method, overrides) in PRIORS.items():
                row = evaluate(data, truth, method, overrides)
                rows.append({"set": set_name, "prior": prior, **row})
                print(f"{set_name:18s} {prior:26s} R50 {row['recall50']:.3f} R30 {row['recall30']:.3f} "
                      f"boxes/frame {row['boxes_per_frame']:.1f} on nothing {row['on_nothing']:.2f} "
                      f"ms {row['ms_per_frame']:.1f}", flush=True)
                if args.sheets and method != "random":
                    slug = f"{set_name.split()[0 if set_name.startswith('vtest') else 1]}-{prior}"
                    _sheet(data, row["set_name"], args.sheets / (slug.replace(", ", "-").replace("=", "-") + ".png"))
    text = render(rows, notes)
    text += f"\n\nload average during the run (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    text += f" on {os.cpu_count()} cores"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# rhovid bench boxes --quality ({today}, CPU)\n\n{text}\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=2) + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.json')}")
    return 0


def build_sets(tmp: Path, args, notes: list) -> dict:
    """{set name: (DATA, truth(key, frames, sample json) -> [(boxes, ignored)] per frame)}."""
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    sets = {}
    for camera in ("static", "pan"):
        src, gt = tmp / f"src-{camera}", tmp / f"gt-{camera}"
        cfg = SynthConfig(classes=6, per_class=args.quality_videos, seconds=args.quality_seconds, width=342,
                          height=256, seed=7, max_distractors=3, camera=camera)
        synthesize(src, cfg, boxes=gt)
        data = tmp / f"data-{camera}"
        ingest([str(src)], data, IngestConfig(short_side=256, workers=0, progress=False))
        sets[f"synthetic {camera}"] = (data, _synth_truth(src, gt))
    if args.vtest.is_file():
        data = tmp / "data-vtest"
        ingest([str(args.vtest)], data, IngestConfig(short_side=256, workers=0, progress=False))
        sets["vtest (weak)"] = (data, _moving_regions_truth(data))
    else:
        notes.append(f"{args.vtest} not found: the pedestrian rows are missing; install it with: {VTEST_HELP}")
        print(f"bench boxes --quality: {notes[-1]}")
    return sets


def _synth_truth(src: Path, gt: Path):
    from rhovid.ingest.synth import read_synth_boxes

    cache: dict = {}

    def truth(meta: dict, frames: np.ndarray) -> list:
        rel = Path(meta["source"]).resolve().relative_to(src.resolve()).with_suffix(".json")
        if rel not in cache:
            cache[rel] = read_synth_boxes(gt / rel)
        d = cache[rel]
        b, sx, sy = d["boxes"], meta["width"] / d["width"], meta["height"] / d["height"]
        out = []
        for f in frames:
            r = b[b[:, 0] == int(round(f * d["fps"] / meta["fps"]))]
            boxes = r[:, 2:6].astype(np.float32) * np.float32([sx, sy, sx, sy])
            ok = ((boxes[:, 2:] - boxes[:, :2]) >= MIN_GT_SIDE).all(1) & (r[:, 6] >= MIN_GT_PIXELS)
            out.append((boxes[ok], boxes[~ok]))
        return out

    return truth


def _moving_regions_truth(data: Path):
    """Weak ground truth of a static-camera video: moving regions against its median frame."""
    import cv2

    from rhovid.ingest.decode import decode_rgb
    from rhovid.ingest.reader import iter_shard, list_shards

    videos = {s["__key__"]: s for p in list_shards(data) for s in iter_shard(p)}

    def truth(meta: dict, frames: np.ndarray) -> list:
        rgb = decode_rgb(videos[meta["key"]]["mp4"], frames).astype(np.int16)
        background = np.median(rgb, axis=0)
        out = []
        for f in rgb:
            m = (np.abs(f - background).max(-1) > 30).astype(np.uint8)
            m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
            _, _, st, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            st = st[1:][st[1:, 4] >= 80]
            out.append((np.concatenate([st[:, :2], st[:, :2] + st[:, 2:4]], 1).astype(np.float32),
                        np.zeros((0, 4), np.float32)))
        return out

    return truth


def evaluate(data: Path, truth, method: str, overrides: dict) -> dict:
    """Compute one prior on DATA (or draw random boxes) and score it against ``truth``."""
    from rhovid.ingest.reader import list_shards, read_index, shard_name
    from rhovid.store.compute import box_frame_indices, compute_box_set
    from rhovid.store.zarr_store import BoxStore
    from rhovid.train.sampler import random_boxes

    set_name, prior_s, frames_done = None, 0.0, 0
    if method != "random":
        report = compute_box_set(data, method, overrides, box_fps=BOX_FPS, max_boxes=K, progress=False)
        if report.failed:
            raise RuntimeError(f"bench: {method} {overrides} failed: {report.failed}")
        set_name, prior_s, frames_done = report.set_name, report.prior_seconds, report.frames
        stores = {shard_name(p): BoxStore(data).load(shard_name(p), set_name) for p in list_shards(data)}
    preds, gts = [], []
    for i, meta in enumerate(read_index(data)):
        frames = box_frame_indices(meta["num_frames"], meta["fps"], BOX_FPS)
        if method == "random":
            rng = np.random.default_rng(i)
            t0 = time.process_time()
            preds += [random_boxes(rng, (0, 0, meta["width"], meta["height"]), K) for _ in frames]
            prior_s, frames_done = prior_s + time.process_time() - t0, frames_done + len(frames)
        else:
            boxes, count, _ = stores[meta["shard"].removesuffix(".tar")].lookup(meta["key"], frames)
            preds += [b[:c] for b, c in zip(boxes, count)]
        gts += truth(meta, frames)
    return {**score(preds, gts), "ms_per_frame": 1e3 * prior_s / max(frames_done, 1), "frames": len(preds),
            "method": method, "params": overrides, "set_name": set_name}


def score(preds: list, gts: list) -> dict:
    """Recall at IoU 0.5 / 0.3, boxes per frame and the fraction of boxes on no object."""
    from rhovid.store.regions import box_iou

    found50 = found30 = objects = boxes = on_nothing = 0
    for p, (g, ignored) in zip(preds, gts):
        objects, boxes = objects + len(g), boxes + len(p)
        if len(p) and len(g):
            best = box_iou(g, p).max(1)
            found50, found30 = found50 + int((best >= 0.5).sum()), found30 + int((best >= 0.3).sum())
        every = np.concatenate([g, ignored]).reshape(-1, 4)
        on_nothing += int((_intersection(p, every).max(1, initial=0) <= 0).sum()) if len(p) else 0
    return {"recall50": found50 / max(objects, 1), "recall30": found30 / max(objects, 1),
            "boxes_per_frame": boxes / max(len(preds), 1), "on_nothing": on_nothing / max(boxes, 1),
            "objects_per_frame": objects / max(len(preds), 1)}


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return w * h


def _sheet(data: Path, set_name: str, out: Path) -> None:
    from rhovid.ingest.reader import read_index
    from rhovid.store.show import contact_sheet

    out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(data, read_index(data)[0]["key"], set_name, out, max_frames=8)


def render(rows: list, notes: list) -> str:
    lines = [
        f"K = {K} boxes per frame at {BOX_FPS:g} box fps, one process; recall of ground-truth objects at IoU >= 0.5 / "
        "0.3; 'on nothing' = fraction of boxes touching no object; ms = CPU ms per frame in the prior "
        "(decoding excluded). vtest ground truth is weak (moving regions; see benchmarks/boxes_quality.py).",
        "",
        "| set | prior | recall IoU 0.5 | recall IoU 0.3 | boxes / frame | on nothing | ms / frame |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['set']} | {r['prior']} | {r['recall50']:.3f} | {r['recall30']:.3f} | {r['boxes_per_frame']:.1f} "
              f"| {r['on_nothing']:.2f} | {r['ms_per_frame']:.1f} |" for r in rows]
    lines += ["", "Goals:"] + goals(rows) + [f"- note: {n}" for n in notes]
    return "\n".join(lines)


def goals(rows: list) -> list[str]:
    """The issue-14 goals, each with its numbers and whether it holds."""
    get = {(r["set"], r["prior"]): r for r in rows}
    out = []
    for cam in ("static", "pan"):
        s = f"synthetic {cam}"
        if (s, "random") not in get:
            continue
        floor = get[s, "random"]["recall50"]
        for prior in ("slic", "fh", "hog", "motion"):
            r = get[s, prior]["recall50"]
            why = " (a person detector: the synthetic shapes are not people)" if prior == "hog" else ""
            out.append(f"- {s}: {prior} recall@0.5 {r:.3f} vs random {floor:.3f}: {'met' if r > floor else 'NOT met'}{why}")
    if ("vtest (weak)", "hog") in get:
        new, old = get["vtest (weak)", "hog"]["recall50"], get["vtest (weak)", "hog, before"]["recall50"]
        ok = new >= 4 * old and new > 0
        out.append(f"- vtest: hog recall@0.5 {new:.3f} vs {old:.3f} before (>= 4x): {'met' if ok else 'NOT met'}")
    if ("synthetic pan", "motion") in get:
        pan, static = get["synthetic pan", "motion"]["recall50"], get["synthetic static", "motion"]["recall50"]
        ratio = pan / max(static, 1e-9)
        out.append(f"- motion panning / static recall@0.5 {pan:.3f} / {static:.3f} = {ratio:.2f} (>= 0.8): "
                   f"{'met' if ratio >= 0.8 else 'NOT met'}")
    return out
