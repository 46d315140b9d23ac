"""Projection heads, the BYOL predictor and SwAV prototypes.

Sizes follow the rho-paper (Feichtenhofer et al. CVPR 2021, Appendix A) as configured in
PySlowFast's contrastive SSL configs: SimCLR / MoCo / SwAV use a 3-layer MLP with 2048 hidden
units and BN on the hidden layers, projecting to 128; BYOL uses a 2-layer MLP with 4096 hidden
units and BN projecting to 256, and a predictor of the same shape (Grill et al. 2020, Sec. 3.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.errors import UsageError


class MLPHead(nn.Module):
    """Linear -> BN -> ReLU repeated, then a final Linear (no BN, no ReLU).

    Args:
        in_dim: input features D.
        hidden_dim: width of every hidden layer.
        out_dim: output features.
        num_layers: number of Linear layers (>= 1; 1 = a single linear projection).
        bn: batch-normalise hidden layers (the papers do; SyncBN conversion is the loop's job).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 3, bn: bool = True):
        super().__init__()
        if num_layers < 1:
            raise UsageError(f"MLPHead num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            # The bias is redundant in front of BN.
            layers += [nn.Linear(dim, hidden_dim, bias=not bn)]
            if bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        return self.net(x)


def contrastive_head(in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 3) -> MLPHead:
    """SimCLR / MoCo / SwAV projection head (rho-paper: 3 layers, 2048 hidden, BN)."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers)


def byol_head(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> MLPHead:
    """BYOL projector or predictor (Grill et al. Sec. 3.3: 4096 hidden with BN, 256 out)."""
    return MLPHead(in_dim, hidden_dim, out_dim, num_layers=2)


class Prototypes(nn.Module):
    """SwAV prototypes: a bias-free linear layer whose rows are kept on the unit sphere.

    Caron et al. 2020 (Sec. 4 / Alg. 1) re-normalise the prototype vectors after every update;
    `normalize_()` does that and the SwAV method calls it before each forward pass.

    Args:
        dim: embedding dimension.
        num_prototypes: K, the number of prototypes (clusters).
    """

    def __init__(self, dim: int, num_prototypes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.normal_(self.weight, std=dim**-0.5)
        self.normalize_()

    @torch.no_grad()
    def normalize_(self) -> None:
        """Project every prototype back onto the unit sphere (in place)."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Scores (N, K) = z @ C^T for L2-normalised embeddings z (N, dim)."""
        return z @ self.weight.t()
