"""ConST-CL global loss, as the authors compute it (losses/losses.py `ContrastiveLoss`).

Lines cited: tensorflow/models official/projects/const_cl/losses/losses.py at commit 0ca414d5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import gather_with_grad, rank
from rhovid.train.losses.precision import fp32_forward


class ConSTCLGlobalLoss(nn.Module):
    """SimCLR NT-Xent over two views, summed over both directions (:62-99).

    For anchor i of view 1 the logits are [z1_i . z2_j for all j] and [z1_i . z1_j for j != i]
    (self-similarity masked), divided by tau, and the label is z2_i; loss_a is the mean
    cross-entropy over view-1 anchors, loss_b the same for view 2, and the loss is
    ``loss_a + loss_b`` (:99): twice the usual mean over the 2B anchors. Embeddings are
    L2-normalised (:63-65). Under torch.distributed both views of all ranks are gathered with
    gradients as keys, anchors are this rank's (the authors' ``tpu_cross_replica_concat``).

    Args:
        temperature: tau (configs/const_cl.py:71: 0.1).
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Loss for embeddings z (B, 2, D) of the two views. Returns a scalar."""
        if z.dim() != 3 or z.shape[1] != 2:
            raise ValueError(f"ConSTCLGlobalLoss needs z of shape (B, 2, D), got {tuple(z.shape)}")
        z = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
        b = z.shape[0]
        z1, z2 = z[:, 0], z[:, 1]
        k1, k2 = gather_with_grad(z1), gather_with_grad(z2)
        labels = rank() * b + torch.arange(b, device=z.device)
        self_mask = torch.zeros(b, k1.shape[0], dtype=torch.bool, device=z.device)
        self_mask[torch.arange(b, device=z.device), labels] = True

        def direction(q: torch.Tensor, other: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
            logits_ab = q @ other.t() / self.temperature
            logits_aa = (q @ same.t() / self.temperature).masked_fill(self_mask, float("-inf"))
            return F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)

        return direction(z1, k2, k1) + direction(z2, k1, k2)
