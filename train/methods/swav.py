"""rho-SwAV: projection, normalised prototypes and swapped prediction between clips."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.losses.swav import SwAVLoss
from rhovid.train.methods.views import flatten_clips, unflatten_clips
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import Prototypes, contrastive_head


class SwAV(nn.Module):
    """rho-SwAV (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Caron et al. NeurIPS 2020).

    Multi-crop and the feature queue of SwAV are not used (the rho-paper trains with rho full
    clips and large batches).

    Args:
        arch: backbone name.
        temperature: prediction softmax tau (0.1).
        epsilon: Sinkhorn entropy regularisation (0.05).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (3).
        num_prototypes: K prototypes (1000).
        freeze_prototypes_steps: prototypes get no gradient for this many steps (SwAV freezes
            them during the first epoch for stability; 0 = never).
        proj_dim: projection output (128).
        hidden_dim: projection hidden width (2048).
        num_layers: projection Linear layers (3).
    """

    def __init__(self, arch: str = "tiny", temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, num_prototypes: int = 1000, freeze_prototypes_steps: int = 0,
                 proj_dim: int = 128, hidden_dim: int = 2048, num_layers: int = 3):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.head = contrastive_head(self.backbone.feature_dim, hidden_dim, proj_dim, num_layers)
        self.prototypes = Prototypes(proj_dim, num_prototypes)
        self.loss = SwAVLoss(temperature, epsilon, sinkhorn_iterations)
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss", "terms": {"swapped"}}."""
        video = batch["video"]
        z = F.normalize(self.head(self.backbone(flatten_clips(video))), dim=-1)
        weight = self.prototypes.weight
        if int(self.step) < self.freeze_prototypes_steps:
            weight = weight.detach()
        scores = unflatten_clips(z @ weight.t(), video.shape[0])
        loss = self.loss(scores)
        return {"loss": loss, "terms": {"swapped": loss.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Re-normalise the prototypes onto the unit sphere (Caron et al. Alg. 1) and count steps."""
        self.prototypes.normalize_()
        self.step.fill_(step + 1)
