"""NT-Xent / InfoNCE over rho clips (rho-SimCLR; also ConST-CL's global loss at rho = 2)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import gather_with_grad, rank
from rhovid.train.losses.precision import fp32_forward


class RhoInfoNCE(nn.Module):
    """rho-SimCLR loss (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Chen et al. 2020 NT-Xent).

    ``pairs="consecutive"`` (the authors' code, the presets): PySlowFast's ``SEQUENTIAL`` loop
    (``slowfast/models/contrastive.py:1082-1088``) calls the SimCLR branch on the clip pairs
    (0, 1), (1, 2), ..., (rho-2, rho-1) and back-propagates each pair's loss, so the objective is
    the SUM over consecutive pairs of SimCLR's NT-Xent (``contrastive.py:727-745``): the 2N
    embeddings of the two clips (N = global batch) are anchors, each one's positive is the
    other clip of its video, and the denominator holds every other of the 2N embeddings (the
    negatives come from those two clip positions only); the pair's loss is the mean over the 2N
    anchors. At rho = 2 this is SimCLR's NT-Xent.

    ``pairs="all"`` (the paper's Eq. 1 multi-positive form): each of the B*rho clips is an
    anchor, each of the rho-1 other clips of its video a positive, every clip of every other
    video a negative; one term per ordered (anchor, positive) pair whose denominator holds that
    positive plus all negatives; the loss is the MEAN over pairs. Equal to "consecutive" at
    rho = 2.

    Under torch.distributed, embeddings of all ranks are gathered (with gradients) as negatives;
    anchors are this rank's clips, so the mean over ranks of the per-rank loss is the global
    loss and DDP's gradient average is its gradient (what PySlowFast's AllGatherWithGradient
    computes with every rank evaluating the global loss).

    Args:
        temperature: tau of the softmax (rho-paper: 0.1, SimCLR_SlowR50_8x8.yaml:16; ConST-CL: 0.1).
        pairs: "consecutive" (authors' code) or "all" (paper Eq. 1).
    """

    def __init__(self, temperature: float = 0.1, pairs: Literal["consecutive", "all"] = "consecutive"):
        super().__init__()
        if pairs not in ("consecutive", "all"):
            raise ValueError(f"RhoInfoNCE pairs must be 'consecutive' or 'all', got {pairs!r}")
        self.temperature, self.pairs = temperature, pairs

    @fp32_forward
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Loss for embeddings z (B, rho, D) (any scale: they are L2-normalised here). Returns a scalar."""
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        b, rho, d = z.shape
        if rho < 2:
            raise ValueError(f"RhoInfoNCE needs rho >= 2 clips per video, got z of shape {tuple(z.shape)}")
        z = F.normalize(z, dim=-1)
        if self.pairs == "all":
            return self._all_pairs(z)
        return sum(self._nt_xent(z[:, k], z[:, k + 1]) for k in range(rho - 1))

    def _nt_xent(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """SimCLR's NT-Xent of two unit-norm views a, b (B, D) of the same videos, mean over 2B anchors."""
        n = a.shape[0]
        a_all, b_all = gather_with_grad(a), gather_with_grad(b)  # (W*B, D) each
        out = torch.cat([a_all, b_all])  # PySlowFast's out = cat([q, q2]) (contrastive.py:731)
        anchors = torch.cat([a, b])
        logits = anchors @ out.t() / self.temperature  # (2B, 2WB)
        nw = a_all.shape[0]
        own = rank() * n + torch.arange(n, device=a.device)
        self_col = torch.cat([own, nw + own])  # the anchor itself: excluded from the denominator
        pos_col = torch.cat([nw + own, own])  # the other clip of the same video
        rows = torch.arange(2 * n, device=a.device)
        denominator = logits.index_put((rows, self_col), logits.new_tensor(float("-inf")))
        return (denominator.logsumexp(dim=1) - logits[rows, pos_col]).mean()

    def _all_pairs(self, z: torch.Tensor) -> torch.Tensor:
        b, rho, d = z.shape
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
