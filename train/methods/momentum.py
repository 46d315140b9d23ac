"""Momentum (EMA) target networks with BYOL's cosine momentum schedule (rho-MoCo, rho-BYOL)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_at(step: int, total_steps: int, base: float = 0.994, final: float = 1.0) -> float:
    """Cosine-annealed EMA momentum (Grill et al. 2020, Sec. 3.2; rho-paper Appendix A).

    ``m(k) = final - (final - base) * (cos(pi k / K) + 1) / 2``: `base` at step 0, `final` at K.
    Steps beyond `total_steps` stay at `final`.
    """
    if total_steps <= 0:
        return base
    progress = min(max(step, 0), total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def make_target(online: nn.Module) -> nn.Module:
    """A frozen copy of `online` for the momentum encoder (no gradients, same initial weights)."""
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online`` for parameters; buffers copied.

    BN running statistics are copied rather than averaged: the target's own batch statistics are
    what it normalises with in training, and evaluation never uses the target.
    """
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers()):
        t.copy_(o)
