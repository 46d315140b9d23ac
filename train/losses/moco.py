"""InfoNCE of queries against momentum keys and a queue (rho-MoCo)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.losses.precision import fp32_forward


class RhoMoCoLoss(nn.Module):
    """rho-MoCo loss (Feichtenhofer et al. CVPR 2021, Sec. 3.1; He et al. 2020 Eq. 1), as in PySlowFast.

    PySlowFast's ``SEQUENTIAL`` loop (``slowfast/models/contrastive.py:1071-1088``) makes each clip
    k in turn the query and back-propagates one loss per query: the MoCo branch
    (``contrastive.py:464-477``) stacks, for every key j != k (the momentum-encoder keys of the
    other clips of the same video), the logits ``[q_k . k_j, q_k . queue] / tau`` and takes the
    cross-entropy with target 0, averaged over the (rho-1) x B rows. The objective is the SUM of
    these rho per-query losses (rho times the mean over ordered pairs; at rho = 2 it is MoCo v2's
    symmetrised loss, the sum of both directions).

    Args:
        temperature: tau (MoCo_SlowR50_8x8.yaml:18: 0.1).
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """Loss for queries q (B, rho, D), keys k (B, rho, D) and queue (Q, D). Returns a scalar.

        q and k are L2-normalised here; the queue is used as stored (PySlowFast fills it with
        unit keys, but starts from uniform random entries that are not). Keys and queue are
        detached (momentum encoder, ``torch.no_grad`` in PySlowFast's ``compute_key_feat``).
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
        # cross-entropy with target 0 of [p, negatives] = log(e^p + sum e^n) - p = softplus(lse_neg - p)
        ce = F.softplus(lse_neg[:, :, None] - pos)  # (B, rho_i, rho_j)
        off = ~torch.eye(rho, dtype=torch.bool, device=q.device)
        per_query = (ce * off).sum(dim=(0, 2)) / (b * (rho - 1))  # mean over the (rho-1) x B rows of query i
        return per_query.sum()
