"""End-to-end fine-tuning: the pretrained backbone plus a linear head, trained on labels.

The fine-tuning protocol of the video SSL literature (Feichtenhofer et al. CVPR 2021,
Sec. 5 "fine-tuning on UCF101/HMDB51/AVA..."): every layer is trained with SGD and a
cosine schedule on the labelled train split, clips come from the trainer's loader with
spatial augmentation only (random resized crop + flip; no colour jitter, as in supervised
training), and the test split is scored with the same multi-view test as feature
evaluation, averaging the softmax of the views. Budgets here are short (``steps``).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rhovid.errors import UsageError
from rhovid.evaluate.features import ViewConfig, iter_views, row_label, sample_views, split_rows
from rhovid.evaluate.knn import topk_accuracy
from rhovid.ranged import RangeFetcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run."""

    steps: int = 200
    """Optimizer updates."""
    batch_size: int = 16
    """Clips per update."""
    lr: float = 0.05
    """Peak LR of the head; the backbone gets ``lr * backbone_lr_scale``."""
    backbone_lr_scale: float = 0.1
    """Backbone LR relative to the head (a fresh head needs larger steps than pretrained layers)."""
    weight_decay: float = 1e-4
    """SGD weight decay."""
    warmup_steps: int = 10
    """Linear warm-up steps before the half-cosine."""
    dropout: float = 0.5
    """Dropout before the head (PySlowFast MODEL.DROPOUT_RATE)."""
    workers: int = 2
    """Loader decode processes."""
    seed: int = 0
    """Head init, loader order and augmentation seed."""


def _lr(step: int, cfg: FinetuneConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * t))


class Classifier(nn.Module):
    """Backbone -> dropout -> linear head."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(backbone.feature_dim), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> logits (N, classes)."""
        return self.head(self.dropout(self.backbone(x)))


def finetune(
    data: str | Path,
    backbone: nn.Module,
    views: ViewConfig,
    cfg: FinetuneConfig,
    train_split: str = "train",
    test_split: str = "test",
    device: str = "cpu",
    progress: bool = True,
    fetcher: RangeFetcher | None = None,
) -> dict:
    """Fine-tune a copy of ``backbone`` on ``train_split``; top-1/top-5 (%) on ``test_split``.

    ``fetcher`` reads the index and the test views; the training loader's reads (its own fetchers,
    in its workers) are added to its counters at the end, so they hold every read of the run.
    """
    from rhovid.train.augment import AugmentConfig
    from rhovid.train.data import ClipLoader, LoaderConfig

    fetcher = fetcher or RangeFetcher()
    train_rows = [r for r in split_rows(data, train_split, fetcher) if row_label(r) >= 0]
    test_rows = [r for r in split_rows(data, test_split, fetcher) if r.get("label") is not None]  # bad labels: skipped
    if not train_rows or not test_rows:
        raise UsageError(f"{data}: fine-tuning needs labelled videos in {train_split!r} and {test_split!r}")
    num_classes = max(row_label(r) for r in train_rows + test_rows) + 1
    torch.manual_seed(cfg.seed)
    model = Classifier(copy.deepcopy(backbone), num_classes, cfg.dropout).to(device)
    groups = [
        {"params": list(model.backbone.parameters()), "scale": cfg.backbone_lr_scale},
        {"params": list(model.head.parameters()), "scale": 1.0},
    ]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    aug = AugmentConfig(area=(0.25, 1.0), colour_p=0.0, grayscale_p=0.0, blur_p=0.0)
    loader = ClipLoader(LoaderConfig(
        # one clip at a uniform start, frames start + i tau: the test views' frames (features.sample_views)
        data=str(data), split=train_split, rho=1, frames=views.frames, stride=views.stride, clip_sampling="window",
        crop=views.crop,
        batch_size=cfg.batch_size, workers=cfg.workers, device=device, seed=cfg.seed, augment=(aug,),
        mean=views.mean, std=views.std, drop_last=False,
    ))
    bar = tqdm(total=cfg.steps, desc="finetune", unit="step", disable=not progress, dynamic_ncols=True)
    model.train()
    step, losses = 0, []
    while step < cfg.steps:
        for batch in loader:
            keep = batch["label"] >= 0
            if not keep.any():
                continue
            x = batch["video"][keep][:, 0].to(device)  # rho = 1: (B, C, T, H, W)
            y = batch["label"][keep].to(device)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * g["scale"] * _lr(step, cfg)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if step >= cfg.steps:
                break
    bar.close()
    fetcher.count(**loader.io_stats.as_dict())
    scores, labels, skipped = multiview_scores(data, model, views, test_rows, device, progress, fetcher)
    acc = topk_accuracy(scores, labels)
    return {
        "top1": 100 * acc["top1"], "top5": 100 * acc["top5"], "steps": cfg.steps,
        "final_train_loss": float(np.mean(losses[-10:])) if losses else None,
        "num_classes": num_classes, "num_train": len(train_rows), "num_test": len(labels),
        "skipped": {"train": loader.skipped, "test": skipped},
        "views": views.views, "train_split": train_split, "test_split": test_split,
    }


@torch.no_grad()
def multiview_scores(data, model: nn.Module, views: ViewConfig, rows: list[dict], device: str,
                     progress: bool = True, fetcher: RangeFetcher | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Softmax averaged over the views of every readable test video: (N, C) scores, (N,) labels, and
    how many videos were skipped (unreadable, undecodable or without a valid label)."""
    model.eval()
    out, labels, skipped = [], [], 0
    for r, got in tqdm(iter_views(data, rows, set(), views, fetcher=fetcher), total=len(rows), desc="finetune test",
                       unit="video", disable=not progress, dynamic_ncols=True):
        try:
            if isinstance(got, str):
                raise ValueError(got)
            if row_label(rows[r]) < 0:
                raise ValueError(f"label {rows[r].get('label')!r} is not a class index")
            clips = torch.from_numpy(sample_views(got[0], views, got[1])).to(device)
        except Exception as e:  # skip-and-count: one bad video never aborts the evaluation
            log.warning("finetune test: skipped video %s: %s", rows[r]["key"], e)
            skipped += 1
            continue
        out.append(F.softmax(model(clips), dim=1).mean(0).cpu())
        labels.append(row_label(rows[r]))
    if not out:
        raise UsageError(f"{data}: none of the {len(rows)} test videos could be read ({skipped} skipped)")
    return torch.stack(out), torch.tensor(labels), skipped
