"""rho-MoCo: query encoder, momentum key encoder, and a FIFO queue holding the keys of all rho clips."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import gather_no_grad
from rhovid.train.losses.moco import RhoMoCoLoss
from rhovid.train.methods.momentum import ema_update_, make_target, momentum_at
from rhovid.train.methods.views import flatten_clips, unflatten_clips
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import contrastive_head


class KeyQueue(nn.Module):
    """A FIFO ring buffer of unit-norm keys (He et al. 2020, Sec. 3.2), saved in the state dict.

    Args:
        size: number of keys Q.
        dim: key dimension.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest entries with keys (N, dim), wrapping around (N may exceed Q)."""
        keys = keys.detach().to(self.keys.dtype)[-self.keys.shape[0]:]
        n, size = keys.shape[0], self.keys.shape[0]
        idx = (self.ptr + torch.arange(n, device=keys.device)) % size
        self.keys[idx] = keys
        self.ptr.copy_((self.ptr + n) % size)


class MoCo(nn.Module):
    """rho-MoCo (Feichtenhofer et al. CVPR 2021, Sec. 3.1; MoCo v2, Chen et al. 2020).

    Args:
        arch: backbone name.
        temperature: InfoNCE tau (0.1).
        queue_size: keys in the queue (rho-paper: 65536; must exceed B*rho*world per step).
        momentum: EMA momentum at step 0, annealed to 1 by a half cosine (0.994).
        proj_dim: projection output (128).
        hidden_dim: projection hidden width (2048).
        num_layers: projection Linear layers (3).
    """

    def __init__(self, arch: str = "tiny", temperature: float = 0.1, queue_size: int = 65536,
                 momentum: float = 0.994, proj_dim: int = 128, hidden_dim: int = 2048, num_layers: int = 3):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.head = contrastive_head(self.backbone.feature_dim, hidden_dim, proj_dim, num_layers)
        self.target_backbone = make_target(self.backbone)
        self.target_head = make_target(self.head)
        self.queue = KeyQueue(queue_size, proj_dim)
        self.loss = RhoMoCoLoss(temperature)
        self.base_momentum = momentum
        self._pending: torch.Tensor | None = None

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss", "terms": {"infonce"}}."""
        video = batch["video"]
        clips = flatten_clips(video)
        q = unflatten_clips(self.head(self.backbone(clips)), video.shape[0])
        with torch.no_grad():
            k = F.normalize(unflatten_clips(self.target_head(self.target_backbone(clips)), video.shape[0]), dim=-1)
        loss = self.loss(q, k, self.queue.keys.clone())
        if self.training:
            # Enqueue after the loss is computed (the current keys are positives, not negatives);
            # the push itself happens in after_step so a skipped (NaN) step leaves the queue alone.
            self._pending = gather_no_grad(k.flatten(0, 1))
        return {"loss": loss, "terms": {"infonce": loss.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA-update the key encoder with the annealed momentum and enqueue this step's keys."""
        ema_update_(self.target_backbone, self.backbone, momentum_at(step, total_steps, self.base_momentum))
        ema_update_(self.target_head, self.head, momentum_at(step, total_steps, self.base_momentum))
        if self._pending is not None:
            self.queue.push(self._pending)
            self._pending = None
