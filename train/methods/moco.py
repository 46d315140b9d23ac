"""rho-MoCo: query encoder, momentum key encoder, and a per-process FIFO queue of the keys of all rho clips."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.distributed import shuffled_forward, world_size
from rhovid.train.losses.moco import RhoMoCoLoss
from rhovid.train.methods.momentum import ema_update_, make_target, momentum_at
from rhovid.train.methods.views import per_clip
from rhovid.train.models import build_backbone
from rhovid.train.models.heads import contrastive_head


class KeyQueue(nn.Module):
    """A FIFO ring buffer of keys (He et al. 2020, Sec. 3.2), saved in the state dict.

    Initialised as PySlowFast's ``queue_x`` (``contrastive.py:80-84``): uniform in
    [-1/sqrt(dim/3), 1/sqrt(dim/3)], not unit vectors.

    Args:
        size: number of keys Q.
        dim: key dimension.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("keys", torch.rand(size, dim).mul_(2 * stdv).add_(-stdv))
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
    """rho-MoCo (Feichtenhofer et al. CVPR 2021, Sec. 3.1; MoCo v2, Chen et al. 2020), as in PySlowFast.

    - Query and key encoders run once per clip position; the keys with MoCo's shuffle BN across
      the processes of one machine (``shuffled_forward``; the MoCo config uses plain per-GPU
      BatchNorm, ``BN.NORM_TYPE`` default "batchnorm", so ``_batch_shuffle_on`` is True,
      ``contrastive.py:86-94``).
    - Loss: ``RhoMoCoLoss`` (one InfoNCE per query clip, summed).
    - Queue: this process's keys only, of all rho clips in clip order (``MOCO_MULTI_VIEW_QUEUE``,
      ``_dequeue_and_enqueue`` writes the local keys, ``contrastive.py:255-281``), pushed after the
      step.
    - No parameter update while the queue fills: the first ``queue_size // global batch`` steps
      of the first epoch only run the forward, the EMA and the enqueue
      (``contrastive_parameter_surgery``, ``contrastive.py:1042-1053``).

    Args:
        arch: backbone name.
        temperature: InfoNCE tau (MoCo_SlowR50_8x8.yaml:18: 0.1).
        queue_size: keys in each process's queue (``QUEUE_LEN`` default 65536).
        momentum: EMA momentum at step 0, annealed to 1 by a half cosine (MoCo_SlowR50_8x8.yaml:22: 0.994).
        proj_dim: projection output (``NUM_CLASSES: 128``).
        hidden_dim: projection hidden width (``MLP_DIM`` default 2048).
        num_layers: projection Linear layers (``NUM_MLP_LAYERS: 3``).
        bn_mlp: BatchNorm in the projection (``BN_MLP`` not set: False).
        freeze_while_queue_fills: skip updates while the queue fills (PySlowFast); False = update from step 0.
    """

    def __init__(self, arch: str = "tiny", temperature: float = 0.1, queue_size: int = 65536,
                 momentum: float = 0.994, proj_dim: int = 128, hidden_dim: int = 2048, num_layers: int = 3,
                 bn_mlp: bool = False, freeze_while_queue_fills: bool = True):
        super().__init__()
        self.backbone = build_backbone(arch)
        self.head = contrastive_head(self.backbone.feature_dim, hidden_dim, proj_dim, num_layers, bn=bn_mlp)
        self.target_backbone = make_target(self.backbone)
        self.target_head = make_target(self.head)
        self.queue = KeyQueue(queue_size, proj_dim)
        self.loss = RhoMoCoLoss(temperature)
        self.base_momentum = momentum
        self.freeze_while_queue_fills = freeze_while_queue_fills
        self._pending: torch.Tensor | None = None
        self._global_batch = 0

    def forward(self, batch: dict) -> dict:
        """batch["video"] (B, rho, C, T, H, W) -> {"loss", "terms": {"infonce"}}."""
        video = batch["video"]
        q = per_clip(lambda x: self.head(self.backbone(x)), video)
        with torch.no_grad():
            k = per_clip(lambda x: shuffled_forward(lambda y: self.target_head(self.target_backbone(y)), x), video)
            k = F.normalize(k, dim=-1)
        loss = self.loss(q, k, self.queue.keys.clone())
        if self.training:
            # Enqueue after the loss is computed (the current keys are positives, not negatives);
            # the push itself happens in after_step so a skipped (NaN) step leaves the queue alone.
            self._pending = k.transpose(0, 1).flatten(0, 1)  # clip-major, as PySlowFast's key list
            self._global_batch = video.shape[0] * world_size()
        return {"loss": loss, "terms": {"infonce": loss.detach()}}

    def noupdate_steps(self) -> int:
        """Steps without a parameter update: ``QUEUE_LEN // TRAIN.BATCH_SIZE // NUM_SHARDS``, i.e. the
        queue size over the global batch (0 before the first forward or when disabled)."""
        if not self.freeze_while_queue_fills or not self._global_batch:
            return 0
        return self.queue.keys.shape[0] // self._global_batch

    def before_update(self, step: int, epoch: float) -> bool:
        """False (no optimizer step) for the first ``noupdate_steps()`` steps of the first epoch."""
        return not (step < self.noupdate_steps() and epoch < 1)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """EMA-update the key encoder with the annealed momentum and enqueue this step's keys."""
        m = momentum_at(step, total_steps, self.base_momentum)
        ema_update_(self.target_backbone, self.backbone, m)
        ema_update_(self.target_head, self.head, m)
        if self._pending is not None:
            self.queue.push(self._pending)
            self._pending = None
