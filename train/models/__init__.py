"""Backbones, heads and FLOP counting (rhovid.train.models)."""

from .flops import count_flops, count_params
from .resnet3d import SPECS, ResNet3D, ResNet3DSpec, build_backbone

__all__ = ["SPECS", "ResNet3D", "ResNet3DSpec", "build_backbone", "count_flops", "count_params"]
