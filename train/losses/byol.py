"""BYOL regression loss over the rho clips (rho-BYOL), as in PySlowFast."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.losses.precision import fp32_forward


class RhoBYOLLoss(nn.Module):
    """rho-BYOL loss: ``sum_i mean_{j != i} mean_b -cos(p_i, z'_j) / tau``.

    PySlowFast's ``SEQUENTIAL`` loop (``slowfast/models/contrastive.py:1071-1088``) makes each clip
    i in turn the query and back-propagates one loss per query: the BYOL branch
    (``contrastive.py:531-535``) averages ``sim_loss(p_i, z'_j)`` over the rho-1 other clips j,
    where ``sim_loss = -mean_b(p . z') / T`` (``contrastive.py:237-243``) of the L2-normalised
    online prediction p and target projection z', with ``CONTRASTIVE.T = 0.5``
    (BYOL_SlowR50_8x8.yaml:16). So per query -2 cos, i.e. Grill et al.'s ``2 - 2 cos`` (Eq. 2)
    minus its constant; the objective is the SUM over the rho queries (at rho = 2: BYOL's
    symmetrised loss). Values lie in [-rho / tau, rho / tau].

    The targets are detached here: gradients never flow into the target network.

    Args:
        temperature: T of ``sim_loss`` (0.5).
    """

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Loss for online predictions p (B, rho, D) and target projections z (B, rho, D). Scalar."""
        p = p.to(torch.promote_types(p.dtype, torch.float32))
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        if p.shape != z.shape or p.shape[1] < 2:
            raise ValueError(f"RhoBYOLLoss needs p and z of equal shape (B, rho>=2, D); got {tuple(p.shape)}, {tuple(z.shape)}")
        b, rho, _ = p.shape
        p = F.normalize(p, dim=-1)
        z = F.normalize(z.detach(), dim=-1)
        cos = torch.einsum("bid,bjd->bij", p, z)  # (B, rho_i, rho_j)
        off = ~torch.eye(rho, dtype=torch.bool, device=p.device)
        per_query = -(cos * off).sum(dim=(0, 2)) / (b * (rho - 1) * self.temperature)
        return per_query.sum()
