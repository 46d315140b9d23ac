"""Optimisers (SGD, LARS) with BN/bias exclusion, and the LR schedule as a pure function of step.

Both papers train with SGD-momentum or LARS (You et al. 2017) and exclude biases and
normalisation parameters from weight decay and from the LARS trust ratio, as BYOL
(Grill et al. 2020, App. C) and SimCLR (Chen et al. 2020, App. B.1) do; the rho-methods use
PySlowFast's solver (Feichtenhofer et al. 2021, App. A), which does the same via
``BN.WEIGHT_DECAY: 0`` and ``LARS_ON``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def lr_at(step: int, *, peak_lr: float, total_steps: int, warmup_steps: int = 0,
          warmup_lr: float = 0.0, final_lr: float = 0.0, cosine_over_warmup: bool = False) -> float:
    """Learning rate of update ``step`` (0-based): linear warm-up, then half-cosine to ``final_lr``.

    A pure function (nanoGPT/MAE style): resuming at step k gives the same LR as never stopping.

    Args:
        step: Index of the optimizer update about to be taken.
        peak_lr: LR reached at the end of warm-up (``step == warmup_steps``).
        total_steps: Length of the run; ``lr_at(total_steps) == final_lr``.
        warmup_steps: Steps of linear warm-up from ``warmup_lr`` to ``peak_lr``.
        warmup_lr: LR at step 0 when warming up (PySlowFast ``WARMUP_START_LR``).
        final_lr: LR at the end of the cosine (PySlowFast ``COSINE_END_LR``).
        cosine_over_warmup: False: the cosine starts at ``peak_lr`` when the warm-up ends.
            True: the cosine runs over the whole run from step 0 and the warm-up ramps
            linearly to the cosine's value at ``warmup_steps`` (TF Model Garden's
            ``LinearWarmup`` around ``CosineDecayWithOffset``, which ConST-CL trains with).
    """
    start = warmup_steps if not cosine_over_warmup else 0

    def cosine(s: int) -> float:
        progress = min((s - start) / max(total_steps - start, 1), 1.0)
        return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    if step < warmup_steps:
        return warmup_lr + (cosine(warmup_steps) - warmup_lr) * step / warmup_steps
    return cosine(step)


def param_groups(model: nn.Module, weight_decay: float, exclude_bn_bias: bool = True) -> list[dict]:
    """Split trainable parameters into a decayed group and an excluded group.

    Excluded = every parameter with ``ndim <= 1``: biases and the affine weights of BatchNorm /
    LayerNorm (the rule used by BYOL, MoCo v3 and MAE). The excluded group gets no weight decay
    and ``lars_exclude=True`` (plain SGD-momentum update inside LARS).
    """
    decay, excluded = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (excluded if exclude_bn_bias and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars_exclude": False}]
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups


class LARS(torch.optim.Optimizer):
    """SGD-momentum with a layer-wise trust ratio (You et al. 2017), SimCLR/BYOL formulation.

    For each parameter ``w`` with gradient ``g`` in a group without ``lars_exclude``::

        d = g + weight_decay * w
        q = eta * ||w|| / ||d||        (q = 1 when ||w|| or ||d|| is 0)
        v = momentum * v + q * d
        w = w - lr * v

    Groups with ``lars_exclude=True`` take the plain step ``v = momentum * v + g``.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001):
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"LARS: invalid lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    one = torch.ones_like(w_norm)
                    q = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, one)
                    d = d.mul(q)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.detach().clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


class KerasSGD(torch.optim.Optimizer):
    """SGD-momentum as Keras computes it (TF Model Garden's "sgd", which ConST-CL trains with).

    For each parameter ``w`` with gradient ``g``: ``d = g + weight_decay * w`` (an L2 term in the
    loss, as the authors add it), ``v = momentum * v - lr * d``, ``w = w + v``. At a constant LR
    this is torch's SGD; while the LR moves (warm-up, cosine) the buffer keeps each step's own LR,
    where torch's applies today's LR to the whole buffer.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"KerasSGD: invalid lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(group["momentum"]).add_(d, alpha=-group["lr"])
                p.add_(v)
        return loss


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    lars_eta: float = 0.001, exclude_bn_bias: bool = True) -> torch.optim.Optimizer:
    """SGD, Keras-style SGD or LARS over ``param_groups(model, ...)``; the loop sets ``lr`` each step."""
    groups = param_groups(model, weight_decay, exclude_bn_bias)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "keras_sgd":
        return KerasSGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=lars_eta)
    raise ValueError(f"unknown optimizer {name!r}; choose 'sgd', 'keras_sgd' or 'lars'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's LR (groups may carry an ``lr_scale``, e.g. for frozen-then-trained heads)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
