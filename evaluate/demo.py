"""``rhovid ablation demo`` (= ``make demo``): the whole mission on a laptop CPU.

synthesise a labelled train tree and a test tree (same classes, different nuisances) ->
ingest both into one DATA (splits train / test) -> SLIC and FH box sets -> pretrain rho-BYOL
and ConST-CL (SLIC boxes) briefly with the tiny backbone -> linear probe and kNN on frozen
features of both runs and of the same backbone with random weights -> one table, plus
where every output is. Every stage is resumable: a rerun reuses the videos, shards, box
sets, checkpoints and features it finds and only recomputes the (cheap) metrics.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rhovid.evaluate.ablation import Budget, Variant, run_ablation, table_rows
from rhovid.evaluate.report import markdown_table


@dataclass(frozen=True)
class DemoConfig:
    """Size and budget of the demo (defaults: ~3.5 min on 2 CPU cores)."""

    classes: int = 6
    """Synthetic classes."""
    train_per_class: int = 16
    """Training videos per class (pretraining and the probes' training split)."""
    test_per_class: int = 15
    """Test videos per class (scored by the probes; 90 videos: one video = 1.1 points)."""
    seconds: float = 4.0
    """Video length."""
    segment_s: float = 1.0
    """Synthetic scene cuts every this many seconds (``SynthConfig.segment_s``). Without them each
    video's own background is the easiest thing its rho clips share, and the methods learn it instead
    of the class (measured with these defaults: no cuts, kNN 10 (BYOL) / 4 (ConST-CL) points below random
    init; with cuts, 30 / 16 above)."""
    short_side: int = 96
    """Ingest resize (short side, pixels)."""
    steps: int = 600
    """Pretraining steps per method."""
    batch_size: int = 16
    """Videos per step (each gives rho clips)."""
    byol_optim: str = "lars"
    """rho-BYOL optimizer (sgd | lars): with SGD (lr 0.1-0.5) the tiny net's features collapsed (measured)."""
    byol_lr: float = 1.0
    """rho-BYOL peak LR per 8 videos (x batch/8)."""
    constcl_optim: str = "lars"
    """ConST-CL optimizer: with SGD its global InfoNCE stayed near chance (measured lr 0.05-0.5)."""
    constcl_lr: float = 1.0
    """ConST-CL peak LR per 8 videos (x batch/8)."""
    frames: int = 4
    """Frames per clip."""
    stride: int = 4
    """Frame stride."""
    crop: int = 64
    """Crop side."""
    views: str = "2x1"
    """Multi-view test (temporal x spatial)."""
    workers: int = 2
    """Decode / box / synth processes."""
    seed: int = 0
    """Seed of everything (synth train tree uses seed, test tree seed + 1)."""


# ConST-CL's small-scale settings (the preset `constcl-r3d50` has the authors'): the paper-size
# heads (2048-wide MLP, 3 x 3 x 128 decoder) dwarf the 64-d tiny backbone and would take most of the
# CPU budget, so the demo keeps the architecture and shrinks the widths; a 4-frame map holds 3
# context frames, not 5. The authors weight the region loss 0.001 against a global loss of 1 (their
# 200k-step TPU recipe); in this 600-step run the region term gets weight 1 and the global loss 2
# (= 4 x the mean over both directions, the weighting this demo was measured with), so that both
# terms shape the tiny trunk.
CONSTCL_TINY = {"hidden_dim": 512, "proj_dim": 128, "tx_channels": 32, "tx_units": 2, "tx_layers": 1,
                "context_level": 3, "global_weight": 2.0, "local_weight": 1.0}
# BYOL's own target momentum 0.996 (Sec. 3.2): with LARS it beat random init for both demo seeds
# (0 and 1); 0.99 won by more on seed 0 but fell below random init on kNN for seed 1 (measured).
BYOL_TINY = {"hidden_dim": 512, "proj_dim": 128, "momentum": 0.996}


def _torch_threads(workers: int) -> None:
    # With decode workers busy, more compute threads than the cores left over makes OpenMP
    # spin: measured 100x slower BatchNorm on a loaded 2-core machine with 2 threads.
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))


def prepare_data(out: Path, cfg: DemoConfig, progress: bool = True, log=print) -> Path:
    """Synthesise and ingest the demo dataset into OUT/data (reusing what exists)."""
    from rhovid.ingest.datasets import safe_key
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.reader import read_index_file
    from rhovid.ingest.sources import Source
    from rhovid.ingest.synth import SynthConfig, synthesize

    data = out / "data"
    have = {s["split"] for s in read_index_file(data)["samples"]}
    for split, per_class, seed in (("train", cfg.train_per_class, cfg.seed), ("test", cfg.test_per_class, cfg.seed + 1)):
        src = out / f"src-{split}"
        t0 = time.perf_counter()
        videos = sorted(synthesize(src, SynthConfig(classes=cfg.classes, per_class=per_class, seconds=cfg.seconds,
                                                    segment_s=cfg.segment_s, seed=seed, workers=cfg.workers), progress=progress))
        if split in have:
            log(f"{split}: {src} and its shards already in {data}; reused")
            continue
        # Keys without the path hash and one ingest process (shard order = source order): the
        # shards, hence the seeded training runs and every number, are the same for any --out.
        classes = sorted({v.parent.name for v in videos})
        sources = [Source(str(v), split=split, label_name=v.parent.name, label=classes.index(v.parent.name),
                          key=safe_key(f"{split}-{v.stem}")) for v in videos]
        ingest(sources, data, IngestConfig(short_side=cfg.short_side, workers=0, split=split, progress=progress))
        log(f"{split}: synthesised {cfg.classes} x {per_class} videos into {src} and ingested them "
            f"({time.perf_counter() - t0:.0f} s)")
    return data


def run_demo(out: str | Path, cfg: DemoConfig = DemoConfig(), progress: bool = True, log=print) -> int:
    """Run the demo into ``out``; prints the comparison table and every output path."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _torch_threads(cfg.workers)
    log(f"rhovid demo -> {out.resolve()} ({asdict(cfg)})")
    data = prepare_data(out, cfg, progress, log)
    from rhovid.evaluate.ablation import resolve_box_sets

    resolve_box_sets(data, ["slic", "fh"], cfg.workers, log)  # FH is stored for `rhovid ablation` reruns
    budget = Budget(steps=cfg.steps, arch="tiny", device="cpu", seed=cfg.seed, batch_size=cfg.batch_size,
                    frames=cfg.frames, stride=cfg.stride, crop=cfg.crop, workers=cfg.workers, views=cfg.views,
                    evaluations=("linear", "knn"), progress=progress)
    runs = out / "runs"
    per_method = {
        "byol": (Variant("byol", rho=2), BYOL_TINY, (f"optim.name={cfg.byol_optim}", f"optim.lr={cfg.byol_lr}")),
        "constcl": (Variant("constcl", boxes="slic"), CONSTCL_TINY,
                    (f"optim.name={cfg.constcl_optim}", f"optim.lr={cfg.constcl_lr}")),
    }
    for variant, kwargs, overrides in per_method.values():
        run_ablation(data, runs / variant.method, [variant],
                     Budget(**{**asdict(budget), "method_kwargs": kwargs, "overrides": overrides}),
                     title=f"demo: {variant.name} vs random init", log=log)
    rows = _merge(out / "runs")
    combined = {"title": "rhovid demo: pretrained vs random-init features", "data": str(data.resolve()),
                "command": "rhovid ablation demo --out " + str(out), "budget": asdict(budget), "rows": rows,
                "method_kwargs": {m: kw for m, (_, kw, _) in per_method.items()},
                "overrides": {m: list(ov) for m, (_, _, ov) in per_method.items()}}
    from rhovid.atomic import atomic_write_json, atomic_write_text
    from rhovid.evaluate.ablation import ablation_markdown, bar_chart

    atomic_write_json(out / "demo.json", {**combined, "config": asdict(cfg), "seconds": time.perf_counter() - t0})
    atomic_write_text(out / "demo.md", ablation_markdown(combined))
    bar_chart(combined, out / "demo.png")
    log("")
    log(markdown_table(*table_rows(combined)))
    log("")
    log(f"done in {time.perf_counter() - t0:.0f} s. Outputs:")
    for what, path in (
        ("synthetic videos", f"{out}/src-train, {out}/src-test"),
        ("shards + index", f"{data}/shards, {data}/index.json"),
        ("box sets (SLIC, FH)", f"{data}/boxes.zarr   (list: rhovid boxes {data} --list)"),
        ("pretraining runs", f"{runs}/byol/byol-rho2, {runs}/constcl/constcl-slic (config.json, metrics.jsonl, "
                             "TensorBoard events, checkpoints/)"),
        ("features", f"{data}/features.zarr"),
        ("reports", f"{runs}/*/*/eval/*.json"),
        ("table + chart", f"{out}/demo.md, {out}/demo.png"),
    ):
        log(f"  {what:20s} {path}")
    return 0


def _merge(runs: Path) -> list[dict]:
    """Rows of every per-method ablation.json, the random-init baseline once, at the end."""
    import json

    rows, base = [], None
    for path in sorted(runs.glob("*/ablation.json")):
        for r in json.loads(path.read_text())["rows"]:
            if r["status"] == "baseline":
                base = r
            else:
                rows.append(r)
    return rows + ([base] if base else [])
