"""ConST-CL local (region) loss, as the authors compute it (losses/losses.py `InstanceContrastiveLoss`).

Lines cited: tensorflow/models official/projects/const_cl/losses/losses.py at commit 0ca414d5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import gather_no_grad, gather_with_grad, rank
from rhovid.train.losses.precision import fp32_forward


class ConSTCLLocalLoss(nn.Module):
    """Region InfoNCE of both reconstruction directions, averaged (ConST-CL Sec. 3.2).

    Inputs are the head's reconstructions ``a2b`` (view-a regions decoded in view b's context) and
    ``b2a``, and the pooled region features ``inst_a``, ``inst_b`` of the two views; all four are
    L2-normalised (:162-166). For direction a->b:

    - positive of query region j of video i: the region k of view b of the *same* video that
      maximises ``inst_a[i, j] . inst_b[i, k]``, the similarity of the raw region features, not
      of the reconstruction (:171-177, :339-343); the b->a direction takes the argmax over the
      other axis of the same matrix (:186-188). argmax carries no gradient.
    - negatives: every region of view b of every *other* video in the (global) batch; all
      regions of the query's own video are removed, the positive included (:322-336).
    - per-query loss ``logsumexp([pos, negs]) - pos``, averaged over valid queries (:349-356);
      the loss is 0.5 * (a->b + b->a) (:196-200).

    Nothing is detached: gradients reach the targets through the positive and the negatives, as
    in the authors' code. Under torch.distributed the targets of all ranks are gathered with
    gradients (the authors' ``tpu_cross_replica_concat``).

    Masks: the authors' code weights only the queries by their mask (every random box is valid
    there). rhovid's stored box sets pad with invalid slots, so an invalid *target* slot is also
    excluded from the argmax and the negatives; with all boxes valid (random boxes, the preset)
    this changes nothing.

    Args:
        temperature: tau (configs/const_cl.py:72: 0.2).
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature

    @fp32_forward
    def forward(self, a2b: torch.Tensor, b2a: torch.Tensor, inst_a: torch.Tensor, inst_b: torch.Tensor,
                mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
        """The loss for one batch.

        Args:
            a2b, b2a: reconstructions (B, K, D) of view a's / view b's regions.
            inst_a, inst_b: region features (B, K, D) of view a / view b (any scale).
            mask_a, mask_b: (B, K) bool, which regions exist.

        Returns:
            scalar; 0 (still attached to the graph) for a direction without any valid query.
        """
        dtype = torch.promote_types(a2b.dtype, torch.float32)
        a2b, b2a, inst_a, inst_b = (F.normalize(x.to(dtype), dim=-1) for x in (a2b, b2a, inst_a, inst_b))
        mask_a, mask_b = mask_a.bool(), mask_b.bool()
        with torch.no_grad():
            sim = (inst_a @ inst_b.transpose(1, 2)).masked_fill(~(mask_a[:, :, None] & mask_b[:, None, :]),
                                                                float("-inf"))  # (B, Ka, Kb)
            pick_a2b = sim.argmax(dim=2)  # (B, Ka): index into view b
            pick_b2a = sim.argmax(dim=1)  # (B, Kb): index into view a
        loss_a = self._direction(a2b, inst_b, pick_a2b, mask_a, mask_b)
        loss_b = self._direction(b2a, inst_a, pick_b2a, mask_b, mask_a)
        return 0.5 * (loss_a + loss_b)

    def _direction(self, queries: torch.Tensor, targets: torch.Tensor, pick: torch.Tensor,
                   query_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        b, k, d = queries.shape
        kt = targets.shape[1]
        positive = (queries * targets.gather(1, pick[:, :, None].expand(-1, -1, d))).sum(-1) / self.temperature
        t_all = gather_with_grad(targets.reshape(b * kt, d))
        t_valid = gather_no_grad(target_mask.reshape(-1).to(queries.dtype)) > 0.5
        video_t = torch.arange(t_all.shape[0] // kt, device=queries.device).repeat_interleave(kt)
        own = rank() * b + torch.arange(b, device=queries.device)
        negatives = queries.reshape(b * k, d) @ t_all.t() / self.temperature  # (B*K, W*B*Kt)
        keep = (video_t[None, :] != own.repeat_interleave(k)[:, None]) & t_valid[None, :]
        negatives = negatives.masked_fill(~keep, float("-inf"))
        logits = torch.cat([positive.reshape(b * k, 1), negatives], dim=1)
        per_query = torch.logsumexp(logits, dim=1) - positive.reshape(-1)
        # A query whose own video has no valid target region has no positive: skipped.
        valid = query_mask.reshape(-1) & target_mask.any(dim=1).repeat_interleave(k)
        if not bool(valid.any()):
            return positive.sum() * 0.0
        return per_query[valid].mean()
