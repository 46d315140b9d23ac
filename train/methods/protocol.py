"""The method interface the training loop and the checkpoint code rely on, written down.

Every entry of ``rhovid.train.methods.METHODS`` is an ``nn.Module`` with this shape; the loop
(``train/loop.py``) calls nothing else on it, and ``train/checkpoint.py`` saves its
``state_dict`` and reads back ``.backbone``.
"""

from __future__ import annotations

from typing import Protocol, TypedDict, runtime_checkable

import torch
from torch import nn


class MethodOutput(TypedDict):
    """What ``forward`` returns."""

    loss: torch.Tensor
    """Scalar the loop back-propagates (the authors' objective, see each method)."""
    terms: dict[str, torch.Tensor]
    """Detached scalars logged beside it (the loss's parts)."""


@runtime_checkable
class Method(Protocol):
    """A self-supervised method: backbone + heads + loss, one training step at a time."""

    backbone: nn.Module
    """The encoder evaluation and export use: clips (N, C, T, H, W) -> pooled features (N, D)."""

    def forward(self, batch: dict) -> MethodOutput:
        """One batch of the loader (``video`` (B, rho, C, T, H, W), boxes, ...) -> loss and terms."""
        ...

    def before_update(self, step: int, epoch: float) -> bool:
        """Called after backward, before the optimizer step of update ``step`` (0-based) at fractional
        epoch ``epoch`` (PySlowFast's ``contrastive_parameter_surgery``): may drop gradients
        (``p.grad = None``); returning False skips this optimizer step."""
        ...

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after the optimizer step of update ``step`` (momentum encoders, queues, prototypes)."""
        ...

    def state_dict(self, *args, **kwargs) -> dict:
        """Everything exact resume needs (weights, momentum encoders, queues, counters)."""
        ...

    def load_state_dict(self, state_dict, strict: bool = True):
        """Inverse of ``state_dict``."""
        ...
