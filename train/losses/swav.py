"""SwAV swapped prediction with Sinkhorn-Knopp codes over rho clips (rho-SwAV)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from rhovid.train.distributed import all_reduce_sum, is_distributed, world_size
from rhovid.train.losses.precision import fp32_forward


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Equipartitioned soft codes Q (Caron et al. 2020, Sec. 3.1 Eq. 3 and Alg. 1).

    Alternately normalises exp(scores / eps) so that every prototype receives 1/K of the (global)
    batch mass and every sample 1/N_global; sums over samples are all-reduced across ranks, so the
    equipartition constraint holds over the global batch (PySlowFast's ``distributed_sinkhorn``,
    ``slowfast/models/contrastive.py:841-862``, used when training on more than one machine).

    Args:
        scores: prototype scores (N, K) of this rank's samples: cosine similarities in [-1, 1], so
            the exponent spans at most 2 / epsilon (= 40) after the max is subtracted.
        epsilon: entropy regularisation (SwAV: 0.05, contrastive.py:105).
        iterations: Sinkhorn-Knopp iterations (3, contrastive.py:634).

    Returns:
        codes (N, K); every row sums to 1 (the last step normalises per sample).
    """
    scores = scores.float() / epsilon
    # Subtract the global max before exp: the normalisations cancel it, and exp cannot overflow.
    top = scores.max()
    if is_distributed():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(scores - top).t()  # (K, N)
    k, n = q.shape
    n_global = n * world_size()
    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))  # each prototype: total mass 1/K
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # each sample: total mass 1/N
        q /= n_global
    return (q * n_global).t()


class SwAVLoss(nn.Module):
    """Swapped prediction between clips (rho-paper Sec. 3.1; Caron et al. Eq. 1), as in PySlowFast.

    PySlowFast's SwAV branch (``slowfast/models/contrastive.py:593-643``, SwAV's public code) takes
    Sinkhorn codes from the first two clips only (``crops_for_assign = arange(n_clips - (n_clips -
    2))``); the code q_c of clip c is predicted by the softmax of every other clip v:
    ``loss = mean_{c in codes} mean_{v != c} mean_b -sum_k q_c[k] log p_v[k]``, one backward for
    the whole loss (the SwAV config has no ``SEQUENTIAL``). Codes are computed per clip position
    over the global batch, without gradient.

    Args:
        temperature: softmax temperature of the predictions (SwAV_Slow_R50_8x8.yaml:16: 0.1).
        epsilon: Sinkhorn entropy regularisation (0.05).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (3).
        code_clips: codes from the first ``code_clips`` clips (authors: 2); None = from every clip
            (the paper's all-pairs form).
    """

    def __init__(self, temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3,
                 code_clips: int | None = 2):
        super().__init__()
        if code_clips is not None and code_clips < 1:
            raise ValueError(f"SwAVLoss code_clips must be >= 1 or None, got {code_clips}")
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.code_clips = code_clips

    @fp32_forward
    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """Loss for prototype scores (B, rho, K) (cosine similarities to normalised prototypes)."""
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        b, rho, _ = scores.shape
        if rho < 2:
            raise ValueError(f"SwAVLoss needs rho >= 2 clips per video, got scores of shape {tuple(scores.shape)}")
        coded = rho if self.code_clips is None else min(self.code_clips, rho)
        codes = torch.stack([sinkhorn(scores[:, c].detach(), self.epsilon, self.sinkhorn_iterations)
                             for c in range(coded)], dim=1)  # (B, coded, K)
        log_p = torch.log_softmax(scores / self.temperature, dim=-1)  # (B, rho, K)
        cross = -torch.einsum("bck,bvk->cv", codes.to(log_p.dtype), log_p) / b  # (coded, rho): mean over b
        off = ~torch.eye(coded, rho, dtype=torch.bool, device=scores.device)
        return (cross * off).sum() / (coded * (rho - 1))
