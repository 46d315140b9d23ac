"""rho-SimCLR: backbone + 3-layer MLP projection + multi-positive InfoNCE."""

from __future__ import annotations

import torch
from torch import nn

from rhovid.train.losses.infonce import RhoInfoNCE
from rhovid.train.methods.views import flatten_clips, unflatten_clips
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import contrastive_head


class SimCLR(nn.Module):
    """rho-SimCLR (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Chen et al. ICML 2020).

    Args:
        arch: backbone name (see `build_backbone`).
        temperature: InfoNCE tau (rho-paper: 0.1).
        proj_dim: output dimension of the projection MLP (128).
        hidden_dim: hidden width of the projection MLP (2048).
        num_layers: Linear layers in the projection MLP (3).
    """

    def __init__(self, arch: str = "tiny", temperature: float = 0.1, proj_dim: int = 128,
                 hidden_dim: int = 2048, num_layers: int = 3):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.head = contrastive_head(self.backbone.feature_dim, hidden_dim, proj_dim, num_layers)
        self.loss = RhoInfoNCE(temperature)

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss": scalar, "terms": {"infonce": scalar}}."""
        video = batch["video"]
        z = unflatten_clips(self.head(self.backbone(flatten_clips(video))), video.shape[0])
        loss = self.loss(z)
        return {"loss": loss, "terms": {"infonce": loss.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    def after_step(self, step: int, total_steps: int) -> None:
        """Nothing to update: SimCLR has no momentum encoder."""

    @torch.no_grad()
    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, D) of clips (N, C, T, H, W) (what evaluation uses)."""
        return self.backbone(video)
