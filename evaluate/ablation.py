"""Ablation runner: train + evaluate one run per box set / rho / timespan, identical budgets.

ConST-CL's box-prior ablation (Yuan et al., Sec. 4.3 / Table 4: random vs SLIC vs FH vs
detector boxes) and the rho-methods' rho and timespan sweeps (Feichtenhofer et al. CVPR
2021, Sec. 4.1-4.2, Figs. 2-3) are the same experiment: several runs that differ in one
knob and nothing else. Every run here gets the same seed, steps, batch, clip geometry and
evaluation; stored box sets are reused (DESIGN.md decision 4: computed once, never
recomputed); finished runs are skipped, unfinished ones resumed. Outputs in OUT/:
``<run>/`` per variant, ``ablation.json``, ``ablation.md`` (table) and ``ablation.png``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rhovid import storage
from rhovid.atomic import atomic_path, atomic_write_json, atomic_write_text
from rhovid.errors import UsageError
from rhovid.evaluate.report import markdown_table
from rhovid.ranged import RangeFetcher
from rhovid.train.sampler import RANDOM_BOXES

# metric columns of the ablation table: (evaluation, result key, column title)
METRICS = {
    "linear": ("top1", "linear top-1"),
    "knn": ("top1", "kNN top-1"),
    "retrieval": ("R@1", "retrieval R@1"),
}


@dataclass(frozen=True)
class Variant:
    """One run of an ablation: the knobs that differ between runs."""

    method: str
    """Method name (rhovid.train.methods.METHODS)."""
    boxes: str | None = None
    """Box set as requested: None (no boxes), "random", a set name, alias or method name."""
    rho: int | None = None
    """Clips per video; None = the preset's."""
    timespan_s: float | None = None
    """Maximum distance between clips, seconds; None = the preset's."""

    @property
    def name(self) -> str:
        """Run folder name: every knob spelled out, so reruns find the same folder."""
        parts = [self.method]
        if self.boxes is not None:
            parts.append(self.boxes)
        if self.rho is not None:
            parts.append(f"rho{self.rho}")
        if self.timespan_s is not None:
            parts.append(f"ts{self.timespan_s:g}")
        return "-".join(parts)


@dataclass(frozen=True)
class Budget:
    """What every run of one ablation shares."""

    steps: int = 200
    """Optimizer steps per run."""
    arch: str = "tiny"
    """Backbone."""
    device: str = "cpu"
    """Training and feature device."""
    seed: int = 0
    """Seed of init, sampling and the random-init baseline."""
    batch_size: int | None = None
    """Global batch; None = the preset's."""
    frames: int | None = None
    """Frames per clip; None = the preset's."""
    stride: int | None = None
    """Frame stride; None = the preset's."""
    crop: int | None = None
    """Crop side; None = the preset's."""
    workers: int = 2
    """Loader / decode processes."""
    views: str = "2x1"
    """Multi-view test TEMPORALxSPATIAL for the feature evaluations."""
    evaluations: tuple[str, ...] = ("linear", "knn")
    """Feature evaluations per run (linear, knn, retrieval)."""
    method_kwargs: dict = field(default_factory=dict)
    """Extra method arguments for every run (e.g. smaller heads for CPU)."""
    overrides: tuple[str, ...] = ()
    """``key=value`` TrainConfig overrides for every run (as ``rhovid train --set``)."""
    progress: bool = True
    """Progress bars."""
    features: str | None = None
    """Feature store of the evaluations (``rhovid eval --features``); None = ``DATA/features.zarr``."""


def train_config(variant: Variant, data: str | Path, budget: Budget, box_set: str | None):
    """The resolved TrainConfig of a variant: preset ``<arch>-<method>`` if any, then the budget."""
    from rhovid.config import apply_overrides
    from rhovid.train.config import PRESETS, TrainConfig, replace_data

    preset = f"{budget.arch}-{variant.method}"
    cfg = PRESETS[preset] if preset in PRESETS else TrainConfig(method=variant.method, arch=budget.arch)
    top = {"steps": budget.steps, "device": budget.device, "seed": budget.seed, "progress": budget.progress,
           "checkpoint_every": budget.steps, "method_kwargs": {**cfg.method_kwargs, **budget.method_kwargs}}
    if budget.batch_size:
        top["batch_size"] = budget.batch_size
    cfg = dataclasses.replace(cfg, **top)
    data_changes = {"data": str(data), "workers": budget.workers}
    if variant.method == "constcl" or variant.boxes is not None:
        data_changes["boxes"] = box_set
    for name in ("frames", "stride", "crop"):
        if getattr(budget, name):
            data_changes[name] = getattr(budget, name)
    if variant.rho is not None:
        data_changes["rho"] = variant.rho
    if variant.timespan_s is not None:  # the timespan is "window" sampling's bound (max start distance)
        data_changes.update(clip_sampling="window", timespan_s=variant.timespan_s)
    return apply_overrides(replace_data(cfg, **data_changes), list(budget.overrides))


# ------------------------------------------------------------------ box sets


def _train_shards(data: str | Path) -> set[str]:
    from rhovid.ingest.reader import data_shards, shard_name

    return {shard_name(storage.name(p)) for p in data_shards(data, "train")}


def resolve_box_sets(data: str | Path, names: list[str | None], workers: int = 2, log=print) -> dict:
    """Map each requested box name to a stored set name (or "random" / None).

    A set whose train shards are all stored is reused and never recomputed; a missing one
    is computed with ``rhovid boxes`` (its command is printed); a partially stored one is
    finished by the same command (the store resumes per shard).
    """
    from rhovid.store.boxsets import param_text
    from rhovid.store.priors import METHODS as BOX_METHODS
    from rhovid.store.zarr_store import BoxStore

    out: dict = {}
    need = _train_shards(data)
    for name in names:
        if name is None or name in RANDOM_BOXES:
            if name is not None:
                log(f"box set {name}: drawn on the fly (seeded), nothing stored")
            out[name] = name
            continue
        store = BoxStore(data)
        try:
            resolved = store.resolve(name)
        except KeyError:
            # Only a method with no stored set is computed; an ambiguous method name (several
            # stored sets) is an error naming them, never a silent recomputation.
            if name not in BOX_METHODS or any(s.get("method") == name for s in store.list_sets()):
                raise
            resolved = None
        entry = next((s for s in store.list_sets() if s["name"] == resolved), None) if resolved else None
        if entry is not None and need <= set(entry["shards_done"]):
            log(f"box set {name}: reused (stored) as {resolved}")
            out[name] = resolved
            continue
        if entry is None:
            cmd = ["boxes", str(data), "--method", name]
        else:
            cmd = ["boxes", str(data), "--method", entry["method"],
                   *[f"--param={k}={param_text(v)}" for k, v in entry.get("params_hashed", {}).items()],
                   "--box-fps", f"{entry['box_fps']:g}", "--max-boxes", str(entry["max_boxes"])]
        cmd += ["--split", "train", "--workers", str(workers)]
        what = "not stored" if entry is None else f"{len(need - set(entry['shards_done']))} train shards missing"
        log(f"box set {name}: {what}; computing: rhovid {' '.join(cmd)}")
        subprocess.run([sys.executable, "-m", "rhovid.cli", *cmd], check=True)
        out[name] = BoxStore(data).resolve(resolved or name)
    return out


# ------------------------------------------------------------------ runs


def run_status(run_dir: Path, cfg) -> str:
    """"new", "resume" or "finished"; ValueError if RUN holds a run with a different config."""
    from rhovid.train.checkpoint import checkpoint_step, latest_checkpoint
    from rhovid.train.config import changes_from_saved

    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        return "new"
    diff = changes_from_saved(json.loads(saved_path.read_text()), cfg)
    if diff:
        raise UsageError(f"{run_dir} holds a run with a different config ({', '.join(diff)}); "
                         "use another --out or remove that run")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and checkpoint_step(ckpt) >= cfg.steps:
        return "finished"
    return "resume"


def train_variant(run_dir: Path, cfg, log=print, fetcher: RangeFetcher | None = None) -> tuple[str, int]:
    """Train (or resume, or skip) one run; returns what happened and the samples its loader skipped.
    The loader's reads are added to ``fetcher``'s counters (when given)."""
    from rhovid.train.loop import train

    status = run_status(run_dir, cfg)
    if status == "finished":
        log(f"run {run_dir.name}: finished ({cfg.steps} steps), skipped")
        return "skipped", 0
    log(f"run {run_dir.name}: {'resuming' if status == 'resume' else 'training'} {cfg.method}/{cfg.arch} "
        f"for {cfg.steps} steps (boxes={cfg.data.boxes}, rho={cfg.data.rho}, timespan={cfg.data.timespan_s:g}s)")
    result = train(cfg, run_dir, resume=status == "resume")
    if fetcher is not None and "io" in result:
        fetcher.count(**result["io"].as_dict())
    return "trained", result.get("skipped", 0)


def evaluate_run(data: str | Path, run_dir: Path | None, budget: Budget, random_init: bool = False,
                 log=print, fetcher: RangeFetcher | None = None) -> tuple[str, dict]:
    """Feature evaluations of a run (or of the random-init baseline of its arch).

    Each evaluation also writes its report where ``rhovid eval`` would
    (``RUN/eval/<evaluation>.json``, ``-random-init`` for the baseline). Shards are read through
    ``fetcher`` (counted; None = a new one).
    """

    from rhovid.evaluate.features import parse_views
    from rhovid.evaluate.protocol import default_report_path, ensure_features, evaluate_stored, feature_source
    from rhovid.evaluate.report import write_report

    temporal, spatial = parse_views(budget.views)
    src = feature_source(run_dir, None, random_init, budget.arch, budget.seed, temporal, spatial)
    ensure_features(data, src, ("train", "test"), budget.device, budget.workers, progress=budget.progress, log=log,
                    store=budget.features, fetcher=fetcher)
    results = {}
    for e in budget.evaluations:
        results[e] = evaluate_stored(data, src.name, e, store=budget.features)
        write_report(default_report_path(data, src, e), e, src.name, results[e],
                     {**src.attrs, "data": storage.absolute(data), "views": src.views.views})
    return src.name, results


def run_ablation(data: str | Path, out: str | Path, variants: list[Variant], budget: Budget,
                 title: str = "ablation", command: str = "", log=print, fetcher: RangeFetcher | None = None) -> dict:
    """Train and evaluate every variant, then write OUT/ablation.{json,md,png}.

    ``fetcher``'s counters get every shard read of this call (the training loaders' and the
    evaluations'); each row's ``skipped`` holds the samples its training (this call) and feature
    extraction left out (``skipped_samples`` sums them).

    Returns:
        the ablation summary (also written to ``OUT/ablation.json``).
    """
    out = Path(out)  # created by the first run that starts: a failed start leaves no empty --out behind
    box_sets = resolve_box_sets(data, list(dict.fromkeys(v.boxes for v in variants)), budget.workers, log)
    rows = []
    for v in variants:
        cfg = train_config(v, data, budget, box_sets[v.boxes])
        status, train_skipped = train_variant(out / v.name, cfg, log, fetcher)
        _, results = evaluate_run(data, out / v.name, budget, log=log, fetcher=fetcher)
        rows.append({"run": v.name, "label": v.name, "box_set": box_sets[v.boxes], "rho": cfg.data.rho,
                     "timespan_s": cfg.data.timespan_s, "status": status, "results": results,
                     "path": str(out / v.name), "skipped": _skipped(train_skipped, results)})
    # the baseline: same arch, random weights, same views and probes (features are shared by name)
    name, results = evaluate_run(data, out / variants[0].name, budget, random_init=True, log=log, fetcher=fetcher)
    rows.append({"run": name, "label": "random init", "box_set": None, "rho": None, "timespan_s": None,
                 "status": "baseline", "results": results, "path": None, "skipped": _skipped(0, results)})
    summary = {"title": title, "data": storage.absolute(data), "command": command,
               "budget": dataclasses.asdict(budget), "rows": rows}
    atomic_write_json(out / "ablation.json", summary)
    atomic_write_text(out / "ablation.md", ablation_markdown(summary))
    bar_chart(summary, out / "ablation.png")
    return summary


def _skipped(train_skipped: int, results: dict) -> dict:
    """A row's skipped samples: its training loader's (this call) and its stored features' (every
    evaluation of a run reads the same features: the first one's count)."""
    features = next(iter(results.values()), {}).get("skipped", {})
    return {"train_loader": train_skipped, **{f"features_{k}": v for k, v in features.items()}}


def skipped_samples(summary: dict) -> int:
    """Samples skipped over every row of an ablation (the ``data:`` summary's count)."""
    return sum(sum(r.get("skipped", {}).values()) for r in summary["rows"])


def table_rows(summary: dict) -> tuple[list[str], list[list]]:
    """Header and rows of the ablation table (metric columns in %)."""
    evals = summary["budget"]["evaluations"]
    header = ["run", "box set", "rho", "timespan (s)"] + [METRICS[e][1] for e in evals]
    base = summary["rows"][-1]["results"] if summary["rows"][-1]["status"] == "baseline" else None
    rows = []
    for r in summary["rows"]:
        cells = [r["label"], r["box_set"], r["rho"], r["timespan_s"]]
        for e in evals:
            v = r["results"][e][METRICS[e][0]]
            delta = "" if (base is None or r["status"] == "baseline") else f" ({v - base[e][METRICS[e][0]]:+.1f})"
            cells.append(f"{v:.1f}{delta}")
        rows.append(cells)
    return header, rows


def ablation_markdown(summary: dict) -> str:
    """ablation.md: what was run, the table (deltas vs random init in brackets), the command."""
    b = summary["budget"]
    header, rows = table_rows(summary)
    lines = [
        f"# {summary['title']}",
        "",
        f"Data: `{summary['data']}`. Every run: arch `{b['arch']}`, {b['steps']} steps, seed {b['seed']}, "
        f"device {b['device']}; features from {b['views']} views (temporal x spatial) per video; "
        "linear = logistic regression on standardised features (L-BFGS, weight decay chosen on 20% of train), "
        "kNN = cosine, k=200 (capped to the bank), T=0.07. Numbers in %; brackets: difference to random init.",
        "",
        markdown_table(header, rows),
        "",
    ]
    if summary.get("command"):
        lines += ["Reproduce:", "", "```", summary["command"], "```", ""]
    lines += ["Runs: " + ", ".join(f"`{r['path']}`" for r in summary["rows"] if r["path"]), ""]
    return "\n".join(lines)


def bar_chart(summary: dict, path: Path) -> None:
    """ablation.png: one group per metric, one bar per run (random init hatched)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = summary["budget"]["evaluations"]
    rows = summary["rows"]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(evals) * len(rows) * 0.5, 3.6))
    for i, r in enumerate(rows):
        vals = [r["results"][e][METRICS[e][0]] for e in evals]
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(evals))]
        bars = ax.bar(xs, vals, width, label=r["label"], hatch="//" if r["status"] == "baseline" else None,
                      edgecolor="black", linewidth=0.5)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(evals)), [METRICS[e][1] for e in evals])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(summary["title"], fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
