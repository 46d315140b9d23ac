"""InfoNCE of queries against momentum keys and a queue (rho-MoCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.losses.precision import fp32_forward


class RhoMoCoLoss(nn.Module):
    """rho-MoCo loss (Feichtenhofer et al. CVPR 2021, Sec. 3.1; He et al. 2020 Eq. 1).

    For every clip i of a video, the momentum-encoder keys of the rho-1 *other* clips of the same
    video are positives, and the queue (keys of earlier batches, all rho clips each) holds the
    negatives. One InfoNCE term per ordered (query, positive key) pair, with denominator = that
    positive + all queue entries; the loss is the mean over pairs (for rho = 2 this is MoCo v2's
    symmetrised loss).

    Args:
        temperature: tau (rho-paper MoCo: 0.1).
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """Loss for queries q (B, rho, D), keys k (B, rho, D) and queue (Q, D). Returns a scalar.

        q and k are L2-normalised here; queue entries must already be unit vectors. Keys are
        detached (they come from the momentum encoder).
        """
        q = q.to(torch.promote_types(q.dtype, torch.float32))
        k = k.to(torch.promote_types(k.dtype, torch.float32))
        queue = queue.to(torch.promote_types(queue.dtype, torch.float32))
        b, rho, _ = q.shape
        if rho < 2 or k.shape != q.shape:
            raise ValueError(f"RhoMoCoLoss needs q and k of shape (B, rho>=2, D); got {tuple(q.shape)}, {tuple(k.shape)}")
        q = F.normalize(q, dim=-1)
        k = F.normalize(k.detach(), dim=-1)
        pos = torch.einsum("bid,bjd->bij", q, k) / self.temperature  # (B, rho, rho) query i vs key j
        lse_neg = (q @ queue.detach().t() / self.temperature).logsumexp(dim=-1)  # (B, rho)
        off = ~torch.eye(rho, dtype=torch.bool, device=q.device)
        # -log(e^p / (e^p + sum_queue e^n)) = softplus(lse_neg - p)
        return F.softplus(lse_neg[:, :, None] - pos)[:, off].mean()
