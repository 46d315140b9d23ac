"""Optimiser and schedule against PySlowFast's formulas, re-implemented here from their code.

References (facebookresearch/SlowFast@287ec00):
- ``slowfast/utils/lr_policy.py:9-49`` (``get_lr_at_epoch`` + ``lr_func_cosine``);
- ``slowfast/config/defaults.py:1281-1285`` (``BASE_LR_SCALE_NUM_SHARDS`` scales BASE_LR,
  WARMUP_START_LR and COSINE_END_LR);
- ``slowfast/models/optimizer.py:41-77`` (parameter groups), ``:105-113`` (SGD, Nesterov) and
  ``:262-359`` (LARS, ``trust_coefficient=0.001, clip=False, eps=1e-8``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rhovid.train.optim import LARS, build_optimizer, lr_at, param_groups, set_lr

# ------------------------------------------------------------------ PySlowFast's schedule


def slowfast_lr(cur_epoch, base_lr, max_epoch, warmup_epochs, warmup_start_lr, cosine_end_lr=0.0,
                cosine_after_warmup=False):
    """lr_policy.get_lr_at_epoch with LR_POLICY 'cosine' (lr_policy.py:9-49)."""

    def lr_func_cosine(e):
        offset = warmup_epochs if cosine_after_warmup else 0.0
        assert cosine_end_lr < base_lr
        return cosine_end_lr + (base_lr - cosine_end_lr) * (
            math.cos(math.pi * (e - offset) / (max_epoch - offset)) + 1.0) * 0.5

    lr = lr_func_cosine(cur_epoch)
    if cur_epoch < warmup_epochs:
        lr_start = warmup_start_lr
        lr_end = lr_func_cosine(warmup_epochs)
        alpha = (lr_end - lr_start) / warmup_epochs
        lr = cur_epoch * alpha + lr_start
    return lr


def test_schedule_is_slowfasts_for_the_rho_byol_preset():
    """BYOL_SlowR50_8x8.yaml: BASE_LR 0.6, WARMUP_START_LR 0.001, 35 warm-up of 200 epochs, 8 shards
    (512 = 8 x 64 videos; BASE_LR_SCALE_NUM_SHARDS multiplies base, warm-up start and end LR by 8);
    468 iterations per epoch: epoch_exact = step / 468 (train_net.py:104)."""
    from rhovid.train.config import get_preset

    cfg = get_preset("rho2-byol-slow-r50")
    o, shards, iters = cfg.optim, cfg.batch_size // 64, 468
    assert (cfg.steps, o.warmup_steps) == (200 * iters, 35 * iters)
    scale = cfg.batch_size / o.lr_batch
    for step in [0, 1, 100, 5_000, 16_379, 16_380, 16_381, 40_000, 70_000, 93_599]:
        ours = lr_at(step, peak_lr=o.lr * scale, total_steps=cfg.steps, warmup_steps=o.warmup_steps,
                     warmup_lr=o.warmup_lr * scale, final_lr=o.final_lr * scale)
        theirs = slowfast_lr(step / iters, 0.6 * shards, 200, 35.0, 0.001 * shards)
        assert ours == pytest.approx(theirs, rel=1e-12)
    assert lr_at(0, peak_lr=4.8, total_steps=cfg.steps, warmup_steps=16_380, warmup_lr=0.008) == 0.008
    # the warm-up ends on the cosine (4.09 at epoch 35), not at the peak 4.8
    assert lr_at(16_380, peak_lr=4.8, total_steps=cfg.steps, warmup_steps=16_380) == pytest.approx(
        4.8 * (math.cos(math.pi * 35 / 200) + 1) / 2)


@pytest.mark.parametrize("after", [False, True])
def test_schedule_matches_slowfast_everywhere(after):
    kw = dict(peak_lr=1.2, total_steps=1000, warmup_steps=150, warmup_lr=0.02, final_lr=0.1, cosine_after_warmup=after)
    for step in range(0, 1001, 7):
        assert lr_at(step, **kw) == pytest.approx(
            slowfast_lr(step / 10, 1.2, 100, 15.0, 0.02, 0.1, cosine_after_warmup=after), rel=1e-12)
    assert lr_at(5000, **kw) == pytest.approx(0.1)  # clamped past the end


def test_no_warmup_starts_at_peak():
    assert lr_at(0, peak_lr=0.3, total_steps=10) == pytest.approx(0.3)
    assert lr_at(10, peak_lr=0.3, total_steps=10) == pytest.approx(0.0)


# ------------------------------------------------------------------ parameter groups


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))


def test_param_groups_exclude_norm_layers_like_slowfast():
    net = _net()
    decay, excluded = param_groups(net, weight_decay=0.1, lars=True)
    # optimizer.py:41-56: BN params -> BN.WEIGHT_DECAY (0), no LARS; everything else, biases too, decays
    assert {id(p) for p in excluded["params"]} == {id(net[1].weight), id(net[1].bias)}
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[0].bias), id(net[3].weight), id(net[3].bias)}
    assert decay["weight_decay"] == 0.1 and decay["lars"] and excluded["weight_decay"] == 0 and not excluded["lars"]
    decay, excluded = param_groups(net, weight_decay=0.1, no_decay="1d")
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    with pytest.raises(ValueError, match="no_decay"):
        param_groups(net, 0.1, no_decay="all")


# ------------------------------------------------------------------ PySlowFast's LARS + SGD


def slowfast_lars_step(params, grads, bufs, groups, lr, momentum=0.9, nesterov=True, trust=0.001, eps=1e-8):
    """One step of optimizer.LARS (optimizer.py:321-359) wrapping torch.optim.SGD (optimizer.py:105-113),
    written out: LARS groups rescale 2-D+ gradients, then SGD with momentum / Nesterov / group decay."""
    new_params, new_bufs = [], []
    for p, g, buf, (wd, apply_lars) in zip(params, grads, bufs, groups):
        g = g.clone()
        if apply_lars:
            if p.ndim != 1:
                param_norm, grad_norm = torch.norm(p), torch.norm(g)
                if param_norm != 0 and grad_norm != 0:
                    adaptive_lr = trust * param_norm / (grad_norm + param_norm * wd + eps)
                    g += wd * p
                    g *= adaptive_lr
            wd_sgd = 0.0  # LARS sets group["weight_decay"] = 0 for the SGD step
        else:
            wd_sgd = wd
        # torch.optim.SGD (dampening 0): d = g + wd p; buf = m buf + d; step = d + m buf (Nesterov)
        d = g + wd_sgd * p
        buf = d.clone() if buf is None else momentum * buf + d
        step = d + momentum * buf if nesterov else buf
        new_params.append(p - lr * step)
        new_bufs.append(buf)
    return new_params, new_bufs


@pytest.mark.parametrize("name", ["lars", "sgd"])
def test_three_steps_match_slowfasts_optimizer(name):
    net = _net()
    opt = build_optimizer(net, name, lr=0.5, momentum=0.9, weight_decay=1e-2)
    order = [net[0].weight, net[0].bias, net[1].weight, net[1].bias, net[3].weight, net[3].bias]
    groups = [(1e-2, name == "lars"), (1e-2, name == "lars"), (0.0, False), (0.0, False),
              (1e-2, name == "lars"), (1e-2, name == "lars")]
    params = [p.detach().clone() for p in order]
    bufs = [None] * len(order)
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        lr = 0.5 * (step + 1)
        set_lr(opt, lr)
        grads = [torch.randn(p.shape, generator=g) for p in order]
        if step == 1:
            grads[4] = torch.zeros_like(grads[4])  # a zero gradient: PySlowFast leaves it unscaled
        for p, gr in zip(order, grads):
            p.grad = gr.clone()
        opt.step()
        params, bufs = slowfast_lars_step(params, grads, bufs, groups, lr) if name == "lars" else \
            slowfast_lars_step(params, grads, bufs, [(wd, False) for wd, _ in groups], lr)
        for p, ref in zip(order, params):
            torch.testing.assert_close(p.detach(), ref, rtol=1e-6, atol=1e-7)
    assert all(grp["weight_decay"] in (0.0, 1e-2) for grp in opt.param_groups)  # restored after each step


def test_lars_trust_ratio_denominator_is_grad_norm_plus_decay():
    """eta |w| / (|g| + wd |w|), not eta |w| / |g + wd w| (optimizer.py:342-346)."""
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    w.grad = torch.tensor([[0.0, 1.0]])  # |g| = 1
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars": True}], lr=1.0, momentum=0.0, nesterov=False)
    opt.step()
    q = 0.001 * 5 / (1 + 0.1 * 5 + 1e-8)
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0]]) - q * torch.tensor([[0.3, 1.4]]))


def test_sgd_is_nesterov_and_decays_biases():
    """MoCo's solver: torch SGD, NESTEROV True (defaults.py:842), decay on every non-BN parameter."""
    net = _net()
    opt = build_optimizer(net, "sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert all(grp["nesterov"] for grp in opt.param_groups)
    biases = [grp for grp in opt.param_groups if any(p is net[0].bias for p in grp["params"])]
    assert biases[0]["weight_decay"] == 1e-4


def test_build_optimizer_kinds_and_set_lr():
    net = nn.Linear(3, 2)
    assert isinstance(build_optimizer(net, "lars", 0.1, 0.9, 1e-6), LARS)
    opt = build_optimizer(net, "sgd", 0.1, 0.9, 1e-6)
    set_lr(opt, 0.37)
    assert all(g["lr"] == 0.37 for g in opt.param_groups)
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(net, "adamw", 0.1, 0.9, 0.0)
