"""rho-BYOL: online network with predictor regresses the momentum target of every other clip."""

from __future__ import annotations

import torch
from torch import nn

from rhovid.train.losses.byol import RhoBYOLLoss
from rhovid.train.methods.momentum import ema_update_, make_target, momentum_at
from rhovid.train.methods.views import flatten_clips, unflatten_clips
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import byol_head


class BYOL(nn.Module):
    """rho-BYOL (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Grill et al. NeurIPS 2020).

    Args:
        arch: backbone name.
        momentum: target EMA momentum at step 0, cosine-annealed to 1 (0.996: BYOL Sec. 3.2 and
            PySlowFast's BYOL configs; rho-MoCo uses 0.994).
        proj_dim: projector and predictor output (256).
        hidden_dim: projector and predictor hidden width (4096).
    """

    def __init__(self, arch: str = "tiny", momentum: float = 0.996, proj_dim: int = 256, hidden_dim: int = 4096):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.projector = byol_head(self.backbone.feature_dim, hidden_dim, proj_dim)
        self.predictor = byol_head(proj_dim, hidden_dim, proj_dim)
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)
        self.loss = RhoBYOLLoss()
        self.base_momentum = momentum

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss", "terms": {"regression"}}."""
        video = batch["video"]
        clips = flatten_clips(video)
        p = unflatten_clips(self.predictor(self.projector(self.backbone(clips))), video.shape[0])
        with torch.no_grad():
            z = unflatten_clips(self.target_projector(self.target_backbone(clips)), video.shape[0])
        loss = self.loss(p, z)
        return {"loss": loss, "terms": {"regression": loss.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA-update the target network with the cosine-annealed momentum."""
        m = momentum_at(step, total_steps, self.base_momentum)
        ema_update_(self.target_backbone, self.backbone, m)
        ema_update_(self.target_projector, self.projector, m)
