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


def per_clip(fn, video: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to each clip position separately: (B, rho, C, T, H, W) -> (B, rho, ...).

    PySlowFast's contrastive models run the encoder once per clip position (the ``SEQUENTIAL``
    loop and the momentum keys of ``compute_key_feat(batched_inference=False)``,
    ``slowfast/models/contrastive.py:1058-1070``; SwAV's per-crop loop, ``contrastive.py:596-599``),
    so every BatchNorm normalises the B clips of one position, never a mix of positions.
    """
    if video.dim() != 6:
        raise ValueError(f"batch['video'] must be (B, rho, C, T, H, W); got shape {tuple(video.shape)}")
    return torch.stack([fn(video[:, i]) for i in range(video.shape[1])], dim=1)
