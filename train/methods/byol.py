"""rho-BYOL: online network with predictor regresses the momentum target of every other clip."""

from __future__ import annotations

import torch
from torch import nn

from rhovid.train.losses.byol import RhoBYOLLoss
from rhovid.train.methods.momentum import ema_update_, make_target, momentum_at
from rhovid.train.methods.views import per_clip
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import byol_head


class BYOL(nn.Module):
    """rho-BYOL (Feichtenhofer et al. CVPR 2021, Sec. 3.1; Grill et al. NeurIPS 2020), as in PySlowFast.

    Online and target encoders run once per clip position (per-position BatchNorm, PySlowFast's
    ``SEQUENTIAL`` loop and ``compute_key_feat(batched_inference=False)``); the loss is
    ``RhoBYOLLoss`` (sum over queries of -cos / T). The target is an EMA of the online backbone and
    projector with the cosine-annealed momentum (``MOMENTUM_ANNEALING``), updated once per step.

    Args:
        arch: backbone name.
        momentum: target EMA momentum at step 0, cosine-annealed to 1 (BYOL_SlowR50_8x8.yaml:23: 0.996).
        proj_dim: projector and predictor output (``NUM_CLASSES: 256``).
        hidden_dim: projector and predictor hidden width (``MLP_DIM: 4096``).
        temperature: T of PySlowFast's ``sim_loss`` (``CONTRASTIVE.T: 0.5``).
    """

    def __init__(self, arch: str = "tiny", momentum: float = 0.996, proj_dim: int = 256, hidden_dim: int = 4096,
                 temperature: float = 0.5):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.projector = byol_head(self.backbone.feature_dim, hidden_dim, proj_dim)
        self.predictor = byol_head(proj_dim, hidden_dim, proj_dim)
        self.target_backbone = make_target(self.backbone)
        self.target_projector = make_target(self.projector)
        self.loss = RhoBYOLLoss(temperature)
        self.base_momentum = momentum

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss", "terms": {"regression"}}."""
        video = batch["video"]
        p = per_clip(lambda x: self.predictor(self.projector(self.backbone(x))), video)
        with torch.no_grad():
            z = per_clip(lambda x: self.target_projector(self.target_backbone(x)), video)
        loss = self.loss(p, z)
        return {"loss": loss, "terms": {"regression": loss.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA-update the target network with the cosine-annealed momentum.

        PySlowFast updates the target at the start of the next step with the momentum of this one
        (``_update_history`` in ``compute_key_feat`` before the forward that anneals ``mmt``,
        ``contrastive.py:152-166, 295-302, 358-360``): the same update, done here right after it.
        """
        m = momentum_at(step, total_steps, self.base_momentum)
        ema_update_(self.target_backbone, self.backbone, m)
        ema_update_(self.target_projector, self.projector, m)
