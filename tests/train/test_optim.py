"""LR schedule values, BN/bias exclusion and the LARS trust ratio against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rhovid.train.optim import LARS, build_optimizer, lr_at, param_groups, set_lr

SCHED = dict(peak_lr=1.0, total_steps=110, warmup_steps=10, warmup_lr=0.1, final_lr=0.0)


def test_warmup_endpoints_and_linearity():
    assert lr_at(0, **SCHED) == pytest.approx(0.1)
    assert lr_at(5, **SCHED) == pytest.approx(0.55)  # halfway between 0.1 and 1.0
    assert lr_at(10, **SCHED) == pytest.approx(1.0)  # warm-up ends exactly at the peak
    steps = [lr_at(s, **SCHED) for s in range(11)]
    assert all(b > a for a, b in zip(steps, steps[1:]))


def test_half_cosine_midpoint_and_end():
    assert lr_at(60, **SCHED) == pytest.approx(0.5)  # (peak + final) / 2 halfway through the cosine
    assert lr_at(35, **SCHED) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, **SCHED) == pytest.approx(0.0)
    assert lr_at(500, **SCHED) == pytest.approx(0.0)  # clamped past the end
    s = dict(SCHED, final_lr=0.2)
    assert lr_at(60, **s) == pytest.approx(0.6) and lr_at(110, **s) == pytest.approx(0.2)


def test_no_warmup_starts_at_peak():
    assert lr_at(0, peak_lr=0.3, total_steps=10) == pytest.approx(0.3)
    assert lr_at(10, peak_lr=0.3, total_steps=10) == pytest.approx(0.0)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(2, 3, 1), nn.BatchNorm3d(3), nn.Flatten(), nn.Linear(3, 2))


def test_param_groups_exclude_bn_and_biases():
    net = _net()
    decay, excluded = param_groups(net, weight_decay=0.1)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert {id(p) for p in excluded["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias),
                                                  id(net[3].bias)}
    assert decay["weight_decay"] == 0.1 and excluded["weight_decay"] == 0.0
    assert excluded["lars_exclude"] and not decay["lars_exclude"]
    (only,) = param_groups(net, weight_decay=0.1, exclude_bn_bias=False)
    assert len(only["params"]) == 6


def test_lars_trust_ratio_matches_hand_computation():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([2.0]))
    bn = nn.Parameter(torch.tensor([1.5, -1.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars_exclude": False},
                {"params": [b, bn], "weight_decay": 0.0, "lars_exclude": True}],
               lr=2.0, momentum=0.9, eta=0.001)
    w.grad = torch.tensor([[0.6, 0.8]])
    b.grad = torch.tensor([0.5])
    bn.grad = torch.tensor([0.25, 0.0])
    opt.step()
    # d = g + 0.1 w = (0.9, 1.2), ||d|| = 1.5; q = 0.001 * 5 / 1.5; w -= lr * q * d
    q = 0.001 * 5.0 / 1.5
    assert w.detach().tolist()[0] == pytest.approx([3.0 - 2.0 * q * 0.9, 4.0 - 2.0 * q * 1.2], rel=1e-6)
    # excluded: plain SGD step, no decay, no trust ratio
    assert b.item() == pytest.approx(2.0 - 2.0 * 0.5)
    assert bn.detach().tolist() == pytest.approx([1.5 - 0.5, -1.0])
    # second step: momentum buffer v = 0.9 v + d_new on the excluded group
    b.grad = torch.tensor([0.5])
    opt.step()
    assert b.item() == pytest.approx(1.0 - 2.0 * (0.9 * 0.5 + 0.5))


def test_lars_zero_norm_uses_unit_trust():
    w = nn.Parameter(torch.zeros(2, 2))
    opt = LARS([w], lr=1.0, momentum=0.0, eta=0.001)
    w.grad = torch.ones(2, 2)
    opt.step()
    assert torch.equal(w.detach(), -torch.ones(2, 2))


def test_sgd_weight_decay_skips_bn_and_bias():
    net = _net()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = build_optimizer(net, "sgd", lr=0.5, momentum=0.0, weight_decay=0.1)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in net.named_parameters():
        expected = before[n] * (1 - 0.5 * 0.1) if p.ndim > 1 else before[n]
        assert torch.allclose(p, expected), n


def test_build_optimizer_kinds_and_set_lr():
    net = _net()
    assert isinstance(build_optimizer(net, "lars", 0.1, 0.9, 1e-6), LARS)
    opt = build_optimizer(net, "sgd", 0.1, 0.9, 1e-6)
    set_lr(opt, 0.37)
    assert all(g["lr"] == 0.37 for g in opt.param_groups)
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(net, "adamw", 0.1, 0.9, 0.0)
