"""The losses' precision rule: computed in fp32 even inside a bf16 autocast region."""

from __future__ import annotations

import functools

import torch


def fp32_forward(forward):
    """Decorate a loss's ``forward`` to run with autocast off on CUDA and CPU.

    Under bf16 autocast a matmul of fp32 inputs still runs in bf16, so casting the inputs is
    not enough: logits / tau up to 10 lose ~0.05 in bf16 (8 mantissa bits), and the Sinkhorn
    exponent spans 2 / epsilon = 40. The trainer autocasts only on CUDA; CPU is covered too so
    a bf16 CPU run (and its test) computes the same losses.
    """

    @functools.wraps(forward)
    def wrapper(*args, **kwargs):
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            return forward(*args, **kwargs)

    return wrapper
