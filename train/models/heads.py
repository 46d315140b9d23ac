"""Projection heads, the BYOL predictor and SwAV prototypes, as PySlowFast builds them.

PySlowFast's ``MLPHead`` (``slowfast/models/head_helper.py:147-195``) is ``Linear`` then
``num_layers - 1`` times ``[BN] ReLU Linear``; with BN the Linear layers before a BN have no
bias, the last Linear always has one. Whether BN is used is ``CONTRASTIVE.BN_MLP`` (default
False, ``slowfast/config/defaults.py:60``): on in the BYOL and SwAV configs, off in the SimCLR
and MoCo configs. Every Linear is ``c2_xavier_fill``-initialised (``xavier_init=True``,
``slowfast/utils/weight_init_helper.py:48-54``: fvcore's ``kaiming_uniform_(a=1)``, bias 0).
Sizes (``configs/contrastive_ssl/*.yaml``): SimCLR / MoCo / SwAV 3 layers, 2048 hidden
(``MLP_DIM`` default), 128 out; BYOL 2 layers, 4096 hidden, 256 out, and a predictor of the same
shape (``PREDICTOR_DEPTHS: [2]``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.errors import UsageError


def c2_xavier_fill(layer: nn.Linear) -> None:
    """fvcore's ``c2_xavier_fill``: ``kaiming_uniform_(a=1)`` (U(+-sqrt(3 / fan_in))), bias 0."""
    nn.init.kaiming_uniform_(layer.weight, a=1)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class MLPHead(nn.Module):
    """``Linear`` then ``num_layers - 1`` x ``[BN] ReLU Linear`` (PySlowFast's MLPHead).

    Args:
        in_dim: input features D.
        hidden_dim: width of every hidden layer.
        out_dim: output features.
        num_layers: number of Linear layers (>= 1; 1 = a single linear projection).
        bn: batch-normalise hidden layers (``BN_MLP``; SyncBN conversion is the loop's job).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3, bn: bool = False):
        super().__init__()
        if num_layers < 1:
            raise UsageError(f"MLPHead num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            last = i == num_layers - 1
            if i > 0:
                if bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.ReLU(inplace=True))
            # The bias is redundant in front of BN (PySlowFast: bias=False when bn_on, except the last).
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=last or not bn))
            c2_xavier_fill(layers[-1])
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        return self.net(x)


def contrastive_head(in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 3,
                     bn: bool = False) -> MLPHead:
    """SimCLR / MoCo (no BN) and SwAV (BN) projection head: 3 layers, 2048 hidden, 128 out."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers, bn=bn)


def byol_head(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> MLPHead:
    """BYOL projector or predictor (BYOL_SlowR50_8x8.yaml:17-26: 2 layers, 4096 hidden, BN, 256 out)."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers=2, bn=True)


class Prototypes(nn.Module):
    """SwAV prototypes: a bias-free linear layer whose rows are kept on the unit sphere.

    PySlowFast: ``nn.Linear(DIM, 1000, bias=False)`` (``contrastive.py:98-100``) with torch's default
    Linear init, L2-normalised row-wise before every forward (``contrastive.py:587-591``, SwAV's
    public code); ``normalize_()`` does that and the SwAV method calls it after every update.

    Args:
        dim: embedding dimension.
        num_prototypes: K, the number of prototypes (clusters).
    """

    def __init__(self, dim: int, num_prototypes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear.reset_parameters
        self.normalize_()

    @torch.no_grad()
    def normalize_(self) -> None:
        """Project every prototype back onto the unit sphere (in place)."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Scores (N, K) = z @ C^T for L2-normalised embeddings z (N, dim)."""
        return z @ self.weight.t()
