"""The evaluation protocol as a Python API: which backbone, which features, which metric.

``rhovid eval`` (evaluate/cli.py) and the ablation runner (evaluate/ablation.py) both call
these functions, so a number in ``ablation.md`` is exactly what ``rhovid eval`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from rhovid import storage
from rhovid.errors import NotFoundError, UnknownNameError, UsageError
from rhovid.evaluate.feature_store import Features, read_features
from rhovid.evaluate.features import ViewConfig, extract_split
from rhovid.evaluate.knn import knn_eval
from rhovid.evaluate.linear import linear_eval
from rhovid.evaluate.retrieval import retrieval_eval
from rhovid.ranged import RangeFetcher

# evaluation name -> function(train_x, train_y, test_x, test_y, **options) -> results dict
FEATURE_EVALUATIONS = {"linear": linear_eval, "knn": knn_eval, "retrieval": retrieval_eval}


@dataclass(frozen=True)
class FeatureSource:
    """A frozen backbone and the name its features are stored under."""

    name: str
    """Group in ``DATA/features.zarr`` (the run folder's name, or ``random-<arch>-seed<S>``)."""
    model: nn.Module
    """Backbone in eval mode: (N, C, T, H, W) -> (N, D)."""
    attrs: dict
    """Provenance stored with the features: run, step, config."""
    views: ViewConfig
    """Multi-view test settings (clip geometry from the run's config)."""
    run_dir: Path | None
    """The training run, None for a random-init backbone without a run."""


def feature_source(
    run: str | Path | None = None,
    step: int | None = None,
    random_init: bool = False,
    arch: str | None = None,
    seed: int = 0,
    temporal: int = 2,
    spatial: int = 3,
    frames: int | None = None,
    stride: int | None = None,
    crop: int | None = None,
    weights: str | Path | None = None,
    weights_format: str | None = None,
) -> FeatureSource:
    """The backbone to evaluate.

    Args:
        run: a ``rhovid train`` folder; its config gives the arch and clip geometry.
        step: checkpoint step (None = latest).
        random_init: the baseline: the same arch with random weights (seeded), no checkpoint.
        arch: backbone for ``random_init`` without a run.
        seed: init seed of the random backbone.
        temporal, spatial: views per video (multi-view test).
        frames, stride, crop: clip geometry; None = the run's (8, 8, 224 without a run).
        weights: a backbone file instead of a run: ``rhovid export`` output (``weights_format``
            "rhovid") or a PySlowFast Slow-R50 checkpoint such as the authors' released rho-BYOL /
            rho-MoCo ``.pyth`` ("slowfast"; train/slowfast_checkpoint.py).
        weights_format: "rhovid" or "slowfast"; None = "slowfast" for ``.pyth``, else "rhovid".
    """
    import torch

    from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD
    from rhovid.train.checkpoint import checkpoint_step, find_checkpoint, load_backbone, read_run_config
    from rhovid.train.models import build_backbone

    if weights is not None:
        return _weights_source(Path(weights), weights_format, temporal, spatial, frames, stride, crop)
    config: dict = {}
    if run is not None:
        run = Path(run)
        config = read_run_config(run)  # checked: a damaged or mistyped config.json is one clear error
    elif not random_init:
        raise UsageError("give --run RUN (a training run) or --random-init --arch ARCH")
    data_cfg = config.get("data", {})
    views = ViewConfig(
        frames=frames or data_cfg.get("frames", 8),
        stride=stride or data_cfg.get("stride", 8),
        crop=crop or data_cfg.get("crop", 224),
        temporal=temporal,
        spatial=spatial,
        mean=tuple(data_cfg.get("mean", KINETICS_MEAN)),
        std=tuple(data_cfg.get("std", KINETICS_STD)),
    )
    if random_init:
        arch = arch or config.get("arch")
        if arch is None:
            raise UsageError("--random-init without --run needs --arch")
        torch.manual_seed(seed)
        model = build_backbone(arch).eval()
        return FeatureSource(f"random-{arch}-seed{seed}", model,
                             {"run": "random-init", "step": None, "config": {"arch": arch, "seed": seed}}, views, run)
    ckpt = find_checkpoint(run, step)
    model, _ = load_backbone(run, checkpoint_step(ckpt))
    attrs = {"run": str(run.resolve()), "step": checkpoint_step(ckpt),
             "config": {"arch": config.get("arch"), "method": config.get("method")}}
    return FeatureSource(run.name, model, attrs, views, run)


def _weights_source(path: Path, fmt: str | None, temporal: int, spatial: int, frames: int | None,
                    stride: int | None, crop: int | None) -> FeatureSource:
    import hashlib

    from rhovid.train.export import load_exported
    from rhovid.train.slowfast_checkpoint import load_slowfast_backbone

    fmt = fmt or ("slowfast" if path.suffix == ".pyth" else "rhovid")
    if not path.is_file():
        raise NotFoundError(f"--weights {path} does not exist")
    if fmt == "slowfast":
        model, info = load_slowfast_backbone(path)
        geometry, attrs = {}, {"arch": "slow_r50", "format": "slowfast", "epoch": info["epoch"]}
    elif fmt == "rhovid":
        model, meta = load_exported(path)
        geometry, attrs = meta["input"], {"arch": meta["arch"], "format": "rhovid", "method": meta["method"]}
    else:
        raise UsageError(f"--weights-format {fmt!r}: choose rhovid or slowfast")
    views = ViewConfig(frames=frames or geometry.get("frames") or 8, stride=stride or geometry.get("stride") or 8,
                       crop=crop or geometry.get("crop") or 224, temporal=temporal, spatial=spatial)
    st = path.stat()  # the file's identity: another file of the same name never reuses these features
    tag = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:8]
    return FeatureSource(f"weights-{path.stem}-{tag}", model,
                         {"run": str(path.resolve()), "step": None, "config": attrs}, views, None)


def ensure_features(
    data: str | Path,
    src: FeatureSource,
    splits: tuple[str, ...],
    device: str = "cpu",
    workers: int = 0,
    batch_clips: int = 32,
    progress: bool = True,
    log=print,
    store: str | Path | None = None,
    fetcher: RangeFetcher | None = None,
) -> dict:
    """Extract (or reuse) the features of ``splits`` into ``store`` (default ``DATA/features.zarr``);
    logs what was computed vs reused. Shards are read through ``fetcher`` (counted; None = a new one)."""
    out = {}
    for split in splits:
        st = extract_split(data, split, src.model, src.name, src.views, src.attrs, device=device,
                           batch_clips=batch_clips, workers=workers, progress=progress, store=store, fetcher=fetcher)
        what = ("reused (stored)" if st.computed_rows == 0
                else f"computed {st.computed_rows} videos" + (f", reused {st.reused_rows}" if st.reused_rows else ""))
        log(f"features {src.name}/{split} [{src.views.views} views]: {what}")
        out[split] = st
    return out


def labelled(f: Features) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a label (>= 0) and features (not a skipped video's NaN row): (x (N, D), y (N,))."""
    keep = (f.labels >= 0) & np.isfinite(f.features).all(axis=1)
    return f.features[keep], f.labels[keep]


def skipped_rows(f: Features) -> int:
    """Videos of a stored split that could not be read or decoded (NaN rows; evaluations leave them out)."""
    return int((~np.isfinite(f.features).all(axis=1)).sum())


def evaluate_stored(data: str | Path, name: str, evaluation: str, train_split: str = "train",
                    test_split: str = "test", store: str | Path | None = None, **options) -> dict:
    """Run a feature evaluation on stored features; returns its results dict."""
    if evaluation not in FEATURE_EVALUATIONS:
        raise UnknownNameError(f"unknown evaluation {evaluation!r}; known: {sorted(FEATURE_EVALUATIONS)}")
    tr, te = read_features(data, name, train_split, store), read_features(data, name, test_split, store)
    (xtr, ytr), (xte, yte) = labelled(tr), labelled(te)
    if not len(ytr) or not len(yte):
        raise UsageError(f"{data}: {evaluation} needs labelled videos in splits {train_split!r} and {test_split!r}")
    res = FEATURE_EVALUATIONS[evaluation](xtr, ytr, xte, yte, **options)
    return {**res, "train_split": train_split, "test_split": test_split, "views": tr.attrs["views"],
            "step": tr.attrs.get("step"), "skipped": {"train": skipped_rows(tr), "test": skipped_rows(te)}}


def default_report_path(data: str | Path, src: FeatureSource, evaluation: str) -> Path:
    """``RUN/eval/<evaluation>.json`` (``-random-init`` for the baseline), else ``DATA/eval/<name>/``."""
    if src.run_dir is not None:
        suffix = "-random-init" if src.attrs["run"] == "random-init" else ""
        return src.run_dir / "eval" / f"{evaluation}{suffix}.json"
    path = storage.join(data, "eval", src.name, f"{evaluation}.json")
    return path if storage.is_remote(path) else Path(path)


def with_views(src: FeatureSource, **changes) -> FeatureSource:
    """``src`` with view settings replaced."""
    return replace(src, views=replace(src.views, **changes))
