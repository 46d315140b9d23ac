"""rho-SwAV: projection, normalised prototypes and swapped prediction between clips."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.losses.swav import SwAVLoss
from rhovid.train.methods.views import per_clip
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import Prototypes, contrastive_head


class SwAV(nn.Module):
    """rho-SwAV (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Caron et al. NeurIPS 2020), as in PySlowFast.

    Each clip position goes through the encoder on its own (``run_swav_orig_encoder_q`` per clip,
    ``contrastive.py:596-599``); the projection has BN (SwAV_Slow_R50_8x8.yaml:20 ``BN_MLP: True``);
    scores against the unit-norm prototypes feed ``SwAVLoss`` (codes from clips 0 and 1). During
    the first epoch the prototypes get no update (``contrastive_parameter_surgery`` sets their
    gradient to None while ``epoch_exact <= 1``, ``contrastive.py:1032-1040``). Multi-crop and
    SwAV's feature queue are not used (``SWAV_QEUE_LEN`` default 0).

    Args:
        arch: backbone name.
        temperature: prediction softmax tau (0.1).
        epsilon: Sinkhorn entropy regularisation (0.05).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (3).
        num_prototypes: K prototypes (1000).
        freeze_prototypes_epochs: prototypes get no update while the fractional epoch is <= this
            (1.0, i.e. the first epoch and the first step of the second; negative = never frozen).
        proj_dim: projection output (128).
        hidden_dim: projection hidden width (2048).
        num_layers: projection Linear layers (3).
        bn_mlp: BatchNorm in the projection (True).
        code_clips: codes from the first ``code_clips`` clips (authors: 2); None = every clip.
    """

    def __init__(self, arch: str = "tiny", temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, num_prototypes: int = 1000, freeze_prototypes_epochs: float = 1.0,
                 proj_dim: int = 128, hidden_dim: int = 2048, num_layers: int = 3, bn_mlp: bool = True,
                 code_clips: int | None = 2):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.head = contrastive_head(self.backbone.feature_dim, hidden_dim, proj_dim, num_layers, bn=bn_mlp)
        self.prototypes = Prototypes(proj_dim, num_prototypes)
        self.loss = SwAVLoss(temperature, epsilon, sinkhorn_iterations, code_clips)
        self.freeze_prototypes_epochs = freeze_prototypes_epochs

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss", "terms": {"swapped"}}."""
        z = per_clip(lambda x: F.normalize(self.head(self.backbone(x)), dim=-1), batch["video"])
        loss = self.loss(self.prototypes(z))
        return {"loss": loss, "terms": {"swapped": loss.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """Drop the prototypes' gradient while ``epoch <= freeze_prototypes_epochs``; always update."""
        if epoch <= self.freeze_prototypes_epochs:
            self.prototypes.weight.grad = None
        return True

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """Re-normalise the prototypes onto the unit sphere (Caron et al. Alg. 1; PySlowFast does it at
        the start of the next forward, the same sequence)."""
        self.prototypes.normalize_()
