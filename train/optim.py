"""Optimisers (SGD, LARS) and the LR schedule as a pure function of the step, as PySlowFast builds them.

The rho-methods train with PySlowFast's solver (Feichtenhofer et al. 2021, App. A;
``slowfast/models/optimizer.py``, ``slowfast/utils/lr_policy.py``):

- parameter groups (``optimizer.py:41-77``): the affine parameters of normalisation layers
  (``_NormBase``: BatchNorm, SyncBatchNorm, InstanceNorm) get ``BN.WEIGHT_DECAY`` (0) and no LARS;
  every other parameter, biases included, gets ``SOLVER.WEIGHT_DECAY`` and LARS when ``LARS_ON``
  (``no_decay="bn"``). ``no_decay="1d"`` instead excludes every parameter with ndim <= 1 (BYOL /
  SimCLR / MoCo v3 convention).
- ``torch.optim.SGD`` with ``SOLVER.NESTEROV: True`` (``defaults.py:842``) and dampening 0.
- LARS (``optimizer.py:262-359``, apex's LARC without clipping, trust coefficient 0.001): for
  each 2-D+ parameter of a LARS group, ``g <- (g + wd w) * eta |w| / (|g| + wd |w| + 1e-8)``
  when both norms are non-zero (else g unchanged and no decay), the group's weight decay is
  suspended, then the SGD step; 1-D parameters of LARS groups take the plain SGD step without
  decay (``ignore_1d_param``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from rhovid.errors import UsageError


def lr_at(step: int, *, peak_lr: float, total_steps: int, warmup_steps: int = 0,
          warmup_lr: float = 0.0, final_lr: float = 0.0, cosine_after_warmup: bool = False) -> float:
    """Learning rate of update ``step`` (0-based), PySlowFast's ``get_lr_at_epoch`` with the cosine policy.

    A pure function (nanoGPT/MAE style): resuming at step k gives the same LR as never stopping.
    With ``t = step`` in place of PySlowFast's fractional epoch (the two agree when
    ``total_steps = MAX_EPOCH x iterations per epoch``):

    - cosine over the whole run (``lr_func_cosine``, ``lr_policy.py:28-49``):
      ``final + (peak - final) (cos(pi t / total) + 1) / 2``;
    - warm-up (``lr_policy.py:20-24``): for ``t < warmup_steps`` linear from ``warmup_lr`` to the
      cosine's value at ``warmup_steps`` (not to ``peak_lr``).

    ``cosine_after_warmup=True`` is PySlowFast's ``COSINE_AFTER_WARMUP``: the cosine starts at the
    end of warm-up (offset), so warm-up ends at ``peak_lr``.

    Args:
        step: Index of the optimizer update about to be taken.
        peak_lr: ``SOLVER.BASE_LR`` (already scaled to the batch).
        total_steps: Length of the run; ``lr_at(total_steps) == final_lr``.
        warmup_steps: Steps of linear warm-up.
        warmup_lr: LR at step 0 (``WARMUP_START_LR``, scaled like ``peak_lr``).
        final_lr: LR at the end of the cosine (``COSINE_END_LR``).
        cosine_after_warmup: start the cosine after warm-up instead of at step 0.
    """

    def cosine(t: float) -> float:
        offset = warmup_steps if cosine_after_warmup else 0
        progress = min((t - offset) / max(total_steps - offset, 1), 1.0)
        return final_lr + (peak_lr - final_lr) * (math.cos(math.pi * progress) + 1.0) * 0.5

    if step < warmup_steps:
        return step * (cosine(warmup_steps) - warmup_lr) / warmup_steps + warmup_lr
    return cosine(step)


def param_groups(model: nn.Module, weight_decay: float, no_decay: Literal["bn", "1d"] = "bn",
                 lars: bool = False) -> list[dict]:
    """Split trainable parameters into a decayed (and LARS-adapted) group and an excluded group.

    ``no_decay="bn"`` (PySlowFast, ``optimizer.py:41-56``): excluded = parameters of normalisation
    modules (``_NormBase``); ``"1d"``: excluded = every parameter with ``ndim <= 1``. The excluded
    group gets no weight decay and no LARS adaptation.
    """
    if no_decay not in ("bn", "1d"):
        raise ValueError(f"no_decay must be 'bn' or '1d', got {no_decay!r}")
    decay, excluded = [], []
    for module in model.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._NormBase)
        for p in module.parameters(recurse=False):
            if not p.requires_grad:
                continue
            out = is_norm if no_decay == "bn" else p.ndim <= 1
            (excluded if out else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lars": lars}]
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars": False})
    return [g for g in groups if g["params"]]


class LARS(torch.optim.SGD):
    """SGD (momentum, Nesterov) with PySlowFast's layer-wise trust ratio (``optimizer.py:262-359``).

    For each parameter ``w`` with gradient ``g`` and ``ndim >= 2`` in a group with ``lars=True``::

        q = eta * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (both norms non-zero; else g as is)
        g = (g + weight_decay * w) * q

    then the group's own weight decay is suspended for the SGD step. 1-D parameters of LARS
    groups, and groups with ``lars=False``, take the plain SGD step (the latter with their weight
    decay).
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True, eta: float = 0.001,
                 eps: float = 1e-8):
        if lr < 0 or momentum < 0 or eta <= 0:
            raise UsageError(f"LARS: invalid lr={lr}, momentum={momentum}, eta={eta}")
        self.eta, self.eps = eta, eps
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        decays = []
        for group in self.param_groups:
            decays.append(group["weight_decay"])
            if not group.get("lars", True):
                continue
            wd = group["weight_decay"]
            group["weight_decay"] = 0.0
            for p in group["params"]:
                if p.grad is None or p.ndim == 1:  # ignore_1d_param
                    continue
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
                q = self.eta * w_norm / (g_norm + w_norm * wd + self.eps)
                # torch.where instead of PySlowFast's `if norms != 0` (same result, no host sync)
                p.grad.copy_(torch.where((w_norm != 0) & (g_norm != 0), (p.grad + wd * p) * q, p.grad))
        super().step()
        for group, wd in zip(self.param_groups, decays):
            group["weight_decay"] = wd
        return loss


class KerasSGD(torch.optim.Optimizer):
    """SGD-momentum as Keras computes it (TF Model Garden's "sgd", which ConST-CL trains with).

    For each parameter ``w`` with gradient ``g``: ``d = g + weight_decay * w`` (an L2 term in the
    loss, as the authors add it), ``v = momentum * v - lr * d``, ``w = w + v``; with ``nesterov``
    ``w = w + momentum * v - lr * d`` (keras/optimizers/sgd.py ``update_step``). At a constant LR
    this is torch's SGD; while the LR moves (warm-up, cosine) the buffer keeps each step's own LR,
    where torch's applies today's LR to the whole buffer.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise UsageError(f"KerasSGD: invalid lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

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
                if group["nesterov"]:
                    p.add_(v, alpha=group["momentum"]).add_(d, alpha=-group["lr"])
                else:
                    p.add_(v)
        return loss


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    lars_eta: float = 0.001, nesterov: bool = True,
                    no_decay: Literal["bn", "1d"] = "bn") -> torch.optim.Optimizer:
    """SGD, Keras-style SGD or LARS over ``param_groups(model, ...)``; the loop sets ``lr`` each step."""
    if name == "sgd":
        return torch.optim.SGD(param_groups(model, weight_decay, no_decay), lr=lr, momentum=momentum,
                               nesterov=nesterov)
    if name == "keras_sgd":
        return KerasSGD(param_groups(model, weight_decay, no_decay), lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "lars":
        return LARS(param_groups(model, weight_decay, no_decay, lars=True), lr=lr, momentum=momentum,
                    nesterov=nesterov, eta=lars_eta)
    raise UsageError(f"unknown optimizer {name!r}; choose 'sgd', 'keras_sgd' or 'lars'")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's LR (groups may carry an ``lr_scale``, e.g. for frozen-then-trained heads)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
