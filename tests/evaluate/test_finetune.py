"""End-to-end fine-tuning on real shards: it learns the labels and leaves the given backbone alone."""

from __future__ import annotations

import math

import pytest
import torch

from rhovid.evaluate.features import ViewConfig
from rhovid.evaluate.finetune import FinetuneConfig, finetune
from rhovid.train.models import build_backbone

VIEWS = ViewConfig(frames=4, stride=4, crop=48, temporal=1, spatial=1)


@pytest.mark.slow  # 60-80 s on 2 busy cores: make test-all
def test_finetune_fits_the_train_split_and_copies_the_backbone(split_data):
    torch.manual_seed(0)
    backbone = build_backbone("tiny")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    cfg = FinetuneConfig(steps=60, batch_size=6, lr=0.5, backbone_lr_scale=1.0, warmup_steps=5, dropout=0.0,
                         workers=0, seed=0)
    # scored on the split it trains on: 6 videos of 3 classes must be fitted well above chance (33 %)
    report = finetune(split_data, backbone, VIEWS, cfg, train_split="train", test_split="train", progress=False)
    assert (report["num_classes"], report["num_train"], report["num_test"], report["steps"]) == (3, 6, 6, 60)
    assert math.isfinite(report["final_train_loss"]) and report["final_train_loss"] < math.log(3)
    assert report["top1"] >= 66.6 and report["top5"] == 100.0
    # fine-tuning trains a copy: the caller's (pretrained) backbone is untouched
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_finetune_names_a_missing_split(split_data):
    with pytest.raises(ValueError, match=r"no videos in split 'nosuchsplit'; splits present: \['test', 'train'\]"):
        finetune(split_data, build_backbone("tiny"), VIEWS, FinetuneConfig(steps=1, workers=0),
                 test_split="nosuchsplit", progress=False)
