"""BYOL regression loss over all ordered pairs of rho clips (rho-BYOL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.losses.precision import fp32_forward


class RhoBYOLLoss(nn.Module):
    """Normalised MSE ``2 - 2 cos(p_i, z'_j)`` averaged over every ordered clip pair i != j.

    Grill et al. 2020 (Eq. 2) regress the online prediction of one view onto the target projection
    of the other and symmetrise; the rho-paper (Sec. 3.1) extends this to all ordered pairs of the
    rho clips. We average (not sum) over pairs so the loss scale does not grow with rho; for
    rho = 2 the value is half of BYOL's symmetrised sum, i.e. in [0, 4].

    The targets are detached here: gradients never flow into the target network.
    """

    @fp32_forward
    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Loss for online predictions p (B, rho, D) and target projections z (B, rho, D). Scalar."""
        p = p.to(torch.promote_types(p.dtype, torch.float32))
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        if p.shape != z.shape or p.shape[1] < 2:
            raise ValueError(f"RhoBYOLLoss needs p and z of equal shape (B, rho>=2, D); got {tuple(p.shape)}, {tuple(z.shape)}")
        rho = p.shape[1]
        p = F.normalize(p, dim=-1)
        z = F.normalize(z.detach(), dim=-1)
        cos = torch.einsum("bid,bjd->bij", p, z)  # (B, rho, rho)
        off = ~torch.eye(rho, dtype=torch.bool, device=p.device)
        return (2 - 2 * cos[:, off]).mean()
