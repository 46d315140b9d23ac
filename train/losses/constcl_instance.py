"""ConST-CL region instance loss: reconstructed regions vs. regions of the other view."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import gather_no_grad, gather_with_grad, rank
from rhovid.train.losses.precision import fp32_forward


class RegionInstanceLoss(nn.Module):
    """InfoNCE over regions with argmax-similarity positives (ConST-CL Sec. 3.2).

    Region k of video b, reconstructed from the other view's context (z[b, k]), has as positive the
    target region of the *same* video most similar to it (argmax of cosine similarity over valid
    target regions; the choice itself carries no gradient), and as negatives every valid target
    region of every *other* video in the (global) batch. Other target regions of the same video
    are excluded from the denominator: boxes are not matched across views, so they may depict the
    same instance. The loss is the mean over valid query regions.

    Args:
        temperature: tau (ConST-CL: 0.2).
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, z: torch.Tensor, target: torch.Tensor, z_mask: torch.Tensor,
                target_mask: torch.Tensor) -> torch.Tensor:
        """Loss for reconstructed regions z (B, K, D) against target regions target (B, K2, D).

        Args:
            z: reconstructed region embeddings of view A (B, K, D).
            target: region embeddings of view B (B, K2, D).
            z_mask: (B, K) bool, which query regions exist.
            target_mask: (B, K2) bool, which target regions exist.

        Returns:
            scalar; 0 (still attached to the graph) when no video has both a query and a target.
        """
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        target = target.to(torch.promote_types(target.dtype, torch.float32))
        b, k, d = z.shape
        z = F.normalize(z, dim=-1).reshape(b * k, d)
        t_local = F.normalize(target, dim=-1)
        k2 = t_local.shape[1]
        t_all = gather_with_grad(t_local.reshape(b * k2, d))
        t_mask = gather_no_grad(target_mask.reshape(-1).float()) > 0.5
        video_t = torch.arange(t_all.shape[0] // k2, device=z.device).repeat_interleave(k2)
        video_z = (rank() * b + torch.arange(b, device=z.device)).repeat_interleave(k)
        sim = z @ t_all.t() / self.temperature  # (B*K, W*B*K2)
        same = (video_z[:, None] == video_t[None, :]) & t_mask[None, :]
        neg = (video_z[:, None] != video_t[None, :]) & t_mask[None, :]
        with torch.no_grad():
            choice = sim.masked_fill(~same, float("-inf")).argmax(dim=1)
        pos = sim.gather(1, choice[:, None])[:, 0]
        lse_neg = sim.masked_fill(~neg, float("-inf")).logsumexp(dim=1)
        anchors = z_mask.reshape(-1) & same.any(dim=1)
        if not bool(anchors.any()):
            return sim.sum() * 0.0
        # -log(e^pos / (e^pos + sum_neg e^n)) = softplus(lse_neg - pos); with no negatives at all
        # (lse_neg = -inf) the term is 0, matching a denominator that holds only the positive.
        return F.softplus(lse_neg - pos)[anchors].mean()
