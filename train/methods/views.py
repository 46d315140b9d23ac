"""Reshape loader batches (B, rho, ...) into backbone inputs (B*rho, ...) and back."""

from __future__ import annotations

import torch


def flatten_clips(video: torch.Tensor) -> torch.Tensor:
    """(B, rho, C, T, H, W) -> (B*rho, C, T, H, W), clip-major within each video."""
    if video.dim() != 6:
        raise ValueError(f"batch['video'] must be (B, rho, C, T, H, W); got shape {tuple(video.shape)}")
    return video.flatten(0, 1)


def unflatten_clips(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(B*rho, ...) -> (B, rho, ...)."""
    return x.unflatten(0, (batch_size, x.shape[0] // batch_size))
