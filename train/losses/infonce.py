"""InfoNCE with multiple positives over rho clips (rho-SimCLR; also ConST-CL's global NT-Xent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import gather_with_grad, rank
from rhovid.train.losses.precision import fp32_forward


class RhoInfoNCE(nn.Module):
    """rho-SimCLR loss (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Chen et al. 2020 NT-Xent).

    Each of the B*rho clips is an anchor; each of the rho-1 other clips of its video is a positive,
    and every clip of every other video in the (global) batch is a negative. One InfoNCE term per
    ordered (anchor, positive) pair, whose denominator holds that positive plus all negatives (the
    other positives of the same video are neither); the loss is the mean over all pairs. With
    rho = 2 this is exactly SimCLR's NT-Xent with 2(B-1) negatives per anchor.

    Under torch.distributed, embeddings of all ranks are gathered (with gradients) as negatives;
    anchors are this rank's clips.

    Args:
        temperature: tau of the softmax (rho-paper: 0.1; ConST-CL global loss: 0.1).
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Loss for embeddings z (B, rho, D) (any scale: they are L2-normalised here). Returns a scalar."""
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        b, rho, d = z.shape
        if rho < 2:
            raise ValueError(f"RhoInfoNCE needs rho >= 2 clips per video, got z of shape {tuple(z.shape)}")
        z = F.normalize(z, dim=-1)
        anchors = z.reshape(b * rho, d)
        everyone = gather_with_grad(anchors)
        logits = anchors @ everyone.t() / self.temperature  # (B*rho, W*B*rho)
        video = torch.arange(everyone.shape[0] // rho, device=z.device).repeat_interleave(rho)
        mine = video[rank() * b * rho : (rank() + 1) * b * rho]
        same = mine[:, None] == video[None, :]
        # log-sum-exp over negatives only; each pair's loss is -log(e^p / (e^p + sum_neg e^n))
        # = softplus(lse_neg - p), which is stable and avoids building a per-pair denominator.
        lse_neg = logits.masked_fill(same, float("-inf")).logsumexp(dim=1, keepdim=True)
        column = torch.arange(everyone.shape[0], device=z.device)
        own = rank() * b * rho + torch.arange(b * rho, device=z.device)
        pairs = same & (column[None, :] != own[:, None])
        return F.softplus(lse_neg - logits)[pairs].mean()
