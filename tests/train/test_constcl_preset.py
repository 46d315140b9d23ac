"""The constcl-r3d50 preset against the authors' recipe (const_cl_pretrain_k400_200k.yaml and the
configs it extends), and the LR schedule against TF Model Garden's LinearWarmup(CosineDecay)."""

from __future__ import annotations

import math

import pytest

from rhovid.train.config import get_preset
from rhovid.train.optim import lr_at


def test_preset_is_the_authors_recipe():
    cfg = get_preset("constcl-r3d50")
    assert (cfg.method, cfg.arch, cfg.batch_size, cfg.steps) == ("constcl", "r3d50", 1024, 200_000)
    d = cfg.data
    assert (d.rho, d.frames, d.stride, d.crop, d.boxes, d.max_boxes) == (2, 16, 2, 224, "random", 8)
    o = cfg.optim
    assert (o.name, o.momentum, o.lr, o.lr_batch, o.weight_decay) == ("sgd", 0.9, 40.96, 1024, 1e-6)
    assert (o.warmup_steps, o.warmup_lr, o.final_lr, o.cosine_over_warmup) == (2500, 0.0, 0.0, True)
    assert cfg.sync_bn and cfg.precision == "bf16" and cfg.method_kwargs == {}  # method defaults = authors'


def _tf_lr(step: int, initial: float, decay_steps: int, warmup_steps: int, warmup_lr: float = 0.0) -> float:
    """official/modeling/optimization/lr_schedule.py: LinearWarmup around CosineDecay(alpha=0)."""
    def cosine(s):
        return initial * 0.5 * (1 + math.cos(math.pi * min(s, decay_steps) / decay_steps))

    if step < warmup_steps:
        return warmup_lr + step / warmup_steps * (cosine(warmup_steps) - warmup_lr)
    return cosine(step)


@pytest.mark.parametrize("step", [0, 1, 1250, 2499, 2500, 2501, 50_000, 100_000, 199_999, 200_000])
def test_whole_run_cosine_matches_tf_schedule(step):
    want = _tf_lr(step, 40.96, 200_000, 2500)
    got = lr_at(step, peak_lr=40.96, total_steps=200_000, warmup_steps=2500, warmup_lr=0.0, cosine_over_warmup=True)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_restarted_cosine_is_unchanged_by_default():
    # the rho presets' schedule: peak at the warm-up's end, cosine over the remaining steps
    assert lr_at(100, peak_lr=1.0, total_steps=1100, warmup_steps=100) == 1.0
    assert lr_at(600, peak_lr=1.0, total_steps=1100, warmup_steps=100) == pytest.approx(0.5)
    assert lr_at(100, peak_lr=1.0, total_steps=1100, warmup_steps=100, cosine_over_warmup=True) < 1.0
