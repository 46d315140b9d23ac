"""Parameter and FLOP counting for the backbones (no external dependencies).

FLOPs are counted the way PySlowFast / fvcore report them: one multiply-add (MAC) = one FLOP,
for convolutions and linear layers only (BN, ReLU, pooling and residual adds are not counted).
Counting runs on the `meta` device, so even Slow-R50 at 224^2 costs no compute.
"""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: tuple[int, ...], forward: str = "forward") -> int:
    """Multiply-adds of conv and linear layers for one forward pass.

    Args:
        model: any module; it is copied to the `meta` device (weights are not needed).
        input_shape: input size including the batch dimension, e.g. (1, 3, 8, 224, 224).
        forward: name of the method to call (e.g. "forward_features" to include a Y branch).

    Returns:
        total MACs (an int; divide by 1e9 for "GFLOPs" in the PySlowFast sense).
    """
    import copy

    meta = copy.deepcopy(model).to("meta").eval()
    total = 0

    def conv_hook(mod: nn.Conv3d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        # Each output element needs (Cin / groups) * prod(kernel) MACs.
        per_out = mod.in_channels // mod.groups
        for k in mod.kernel_size:
            per_out *= k
        total += output.numel() * per_out

    def linear_hook(mod: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * mod.in_features

    handles = []
    for m in meta.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            getattr(meta, forward)(torch.empty(input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return total
