"""The constcl-r3d50 preset against the authors' recipe (const_cl_pretrain_k400_200k.yaml and the
configs it extends), and the LR schedule against TF Model Garden's LinearWarmup(CosineDecay)."""

from __future__ import annotations

import math

import pytest
import torch

from rhovid.train.config import get_preset
from rhovid.train.optim import lr_at


def test_preset_is_the_authors_recipe():
    cfg = get_preset("constcl-r3d50")
    assert (cfg.method, cfg.arch, cfg.batch_size, cfg.steps) == ("constcl", "r3d50", 1024, 200_000)
    d = cfg.data
    assert (d.rho, d.frames, d.stride, d.crop, d.boxes, d.max_boxes) == (2, 16, 2, 224, "random", 8)
    o = cfg.optim
    assert (o.name, o.momentum, o.lr, o.lr_batch, o.weight_decay) == ("keras_sgd", 0.9, 40.96, 1024, 1e-6)
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


def test_keras_sgd_follows_keras_update_rule():
    """v = m v - lr (g + wd w); w += v (tf_keras SGD / ResourceApplyKerasMomentum), with the LR
    changing every step, against a direct loop; torch's SGD differs once the LR moves."""
    from rhovid.train.optim import KerasSGD

    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, dtype=torch.float64, generator=g)
    grads = [torch.randn(5, dtype=torch.float64, generator=g) for _ in range(6)]
    lrs = [0.0, 0.1, 0.2, 0.3, 0.25, 0.2]
    p = torch.nn.Parameter(w0.clone())
    q = torch.nn.Parameter(w0.clone())
    opt = KerasSGD([{"params": [p], "weight_decay": 0.01}], lr=0.0, momentum=0.9)
    ref = torch.optim.SGD([{"params": [q], "weight_decay": 0.01}], lr=0.0, momentum=0.9)
    w, v = w0.clone(), torch.zeros(5, dtype=torch.float64)
    for lr, grad in zip(lrs, grads):
        for o, x in ((opt, p), (ref, q)):
            o.param_groups[0]["lr"] = lr
            x.grad = grad.clone()
            o.step()
        v = 0.9 * v - lr * (grad + 0.01 * w)
        w = w + v
    torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(q.detach(), w)
