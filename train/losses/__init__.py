"""Losses (rhovid.train.losses), one per module; each an nn.Module taking tensors, returning a scalar."""

from .byol import RhoBYOLLoss
from .constcl_global import ConSTCLGlobalLoss
from .constcl_local import ConSTCLLocalLoss
from .infonce import RhoInfoNCE
from .moco import RhoMoCoLoss
from .swav import SwAVLoss, sinkhorn

__all__ = ["ConSTCLGlobalLoss", "ConSTCLLocalLoss", "RhoBYOLLoss", "RhoInfoNCE", "RhoMoCoLoss", "SwAVLoss", "sinkhorn"]
