"""rho-SimCLR: backbone + 3-layer MLP projection (no BN) + NT-Xent over consecutive clip pairs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from rhovid.train.losses.infonce import RhoInfoNCE
from rhovid.train.methods.views import per_clip
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import contrastive_head


class SimCLR(nn.Module):
    """rho-SimCLR (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Chen et al. ICML 2020), as in PySlowFast.

    Each clip position goes through the encoder on its own (per-position BatchNorm, as
    PySlowFast's ``SEQUENTIAL`` loop); the loss sums SimCLR's NT-Xent over consecutive clip pairs
    (``RhoInfoNCE(pairs="consecutive")``). The projection has no BN: SimCLR_SlowR50_8x8.yaml does
    not set ``CONTRASTIVE.BN_MLP`` (default False).

    Args:
        arch: backbone name (see `build_backbone`).
        temperature: NT-Xent tau (SimCLR_SlowR50_8x8.yaml:16: 0.1).
        proj_dim: output dimension of the projection MLP (128).
        hidden_dim: hidden width of the projection MLP (2048).
        num_layers: Linear layers in the projection MLP (3).
        bn_mlp: BatchNorm in the projection MLP (False).
        pairs: "consecutive" (authors' code) or "all" (the paper's Eq. 1 multi-positive form).
    """

    def __init__(self, arch: str = "tiny", temperature: float = 0.1, proj_dim: int = 128,
                 hidden_dim: int = 2048, num_layers: int = 3, bn_mlp: bool = False,
                 pairs: Literal["consecutive", "all"] = "consecutive"):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.head = contrastive_head(self.backbone.feature_dim, hidden_dim, proj_dim, num_layers, bn=bn_mlp)
        self.loss = RhoInfoNCE(temperature, pairs=pairs)

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss": scalar, "terms": {"infonce": scalar}}."""
        z = per_clip(lambda x: self.head(self.backbone(x)), batch["video"])
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
