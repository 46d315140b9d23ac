"""Losses (rhovid.train.losses), one per module; each an nn.Module taking tensors, returning a scalar."""

from .byol import RhoBYOLLoss
from .constcl_instance import RegionInstanceLoss
from .infonce import RhoInfoNCE
from .moco import RhoMoCoLoss
from .swav import SwAVLoss, sinkhorn

__all__ = ["RegionInstanceLoss", "RhoBYOLLoss", "RhoInfoNCE", "RhoMoCoLoss", "SwAVLoss", "sinkhorn"]
