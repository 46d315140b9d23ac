"""3D ResNets: Slow-only R50 8x8 (PySlowFast), ConST-CL's R3D-50, R3D-18 and a tiny debug net.

All four are one `ResNet3D` class driven by a frozen `ResNet3DSpec`; the spec lists exactly the
choices the papers differ in (stem kernel/stride, per-stage temporal kernel, block type).
Bottleneck blocks follow PySlowFast's `BottleneckTransform` (temporal kernel on the first 1x1
conv, spatial stride on the 3x3 conv) so Slow-R50 8x8 matches its published 32.45M parameters.
ConST-CL's R3D-50 ("ResNet3DY", tensorflow/models official/projects/const_cl/modeling/backbones/
resnet_3d.py) additionally takes TF's conventions: 'same' padding of strided convs and pools, and
Keras' VarianceScaling conv initialiser (see `ResNet3DSpec.tf_same` / `conv_init`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ResNet3DSpec:
    """Architecture of one 3D ResNet."""

    block: str
    """"bottleneck" (1x1-3x3-1x1, expansion 4) or "basic" (two 3x3 convs, expansion 1)."""
    depths: tuple[int, int, int, int]
    """Blocks in res2..res5."""
    widths: tuple[int, int, int, int]
    """Inner (bottleneck) width of res2..res5; output width is width * expansion."""
    temporal_kernels: tuple[int, int, int, int]
    """Temporal kernel size of the temporal conv of every block in res2..res5."""
    temporal_strides: tuple[int, int, int, int] = (1, 1, 1, 1)
    """Temporal stride of the first block of res2..res5."""
    stem_width: int = 64
    """Channels of the stem conv."""
    stem_kernel: tuple[int, int, int] = (1, 7, 7)
    """Stem conv kernel (T, H, W)."""
    stem_stride: tuple[int, int, int] = (1, 2, 2)
    """Stem conv stride (T, H, W)."""
    stem_pool: bool = True
    """Whether a 1x3x3 stride-(1,2,2) max pool follows the stem conv."""
    tf_same: bool = False
    """Pad strided convs / the stem pool like TF's padding='same' (more padding after than before:
    output cell i of a stride-2 3x3 conv on an even input is centred on input 2i+1, not 2i)."""
    conv_init: Literal["kaiming_fan_out", "variance_scaling"] = "kaiming_fan_out"
    """Conv weight init: He normal fan-out (PySlowFast, torchvision) or Keras' default
    VarianceScaling (scale 1, fan-in, normal truncated at 2 sigma; TF Model Garden's ResNet3D)."""


SPECS: dict[str, ResNet3DSpec] = {
    # PySlowFast SLOW_8x8_R50: temporal kernel 1 in stem/res2/res3, 3 in res4/res5
    # (Feichtenhofer et al. ICCV 2019, Table 1 "Slow pathway"; rho-paper Sec. 4 backbone).
    "slow_r50": ResNet3DSpec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), (1, 1, 3, 3)),
    # ConST-CL's ResNet3DY-50 (const_cl_pretrain_k400_{100k,200k}.yaml:15-47): 5x7x7 stem of
    # temporal stride 2, 1x3x3 max pool of temporal stride 1, temporal kernels 1/1/3/3, no
    # temporal stride and no self-gating in the blocks; TF padding and init (resnet_3d.py,
    # nn_blocks_3d.py: padding='same', kernel_initializer='VarianceScaling').
    "r3d50": ResNet3DSpec(
        "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), (1, 1, 3, 3),
        stem_kernel=(5, 7, 7), stem_stride=(2, 2, 2), tf_same=True, conv_init="variance_scaling",
    ),
    # R3D-18 as in torchvision's r3d_18 (Tran et al. CVPR 2018): 3x3x3 everywhere, 3x7x7 stem,
    # no stem pool, stride 2 in T, H and W at res3..res5.
    "r3d18": ResNet3DSpec(
        "basic", (2, 2, 2, 2), (64, 128, 256, 512), (3, 3, 3, 3), temporal_strides=(1, 2, 2, 2),
        stem_kernel=(3, 7, 7), stem_pool=False,
    ),
    # Debug net for CPU tests: same topology as slow_r50 at 1/8 width and one block per stage.
    "tiny": ResNet3DSpec(
        "basic", (1, 1, 1, 1), (8, 16, 32, 64), (1, 1, 3, 3), stem_width=8, stem_kernel=(1, 3, 3),
    ),
}


def tf_same_pad(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Pad (N, C, T, H, W) as TF's padding='same' does: total max((ceil(n/s)-1)*s + k - n, 0) per
    axis, the smaller half before (tf.nn.convolution docs, "SAME" padding)."""
    pads = []
    for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class TFSameConv3d(nn.Conv3d):
    """Conv3d with TF 'same' padding computed from the input size (no `padding` of its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(tf_same_pad(x, self.kernel_size, self.stride))


class TFSameMaxPool3d(nn.MaxPool3d):
    """MaxPool3d with TF 'same' padding (padded cells never win: -inf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(tf_same_pad(x, self.kernel_size, self.stride, float("-inf")))


def _conv_bn(cin: int, cout: int, kernel, stride=(1, 1, 1), tf_same: bool = False) -> list[nn.Module]:
    if tf_same and any(s > 1 for s in stride):
        # 1x1 strided shortcuts pad nothing either way (TF builds them with padding='valid').
        return [TFSameConv3d(cin, cout, kernel, stride, bias=False), nn.BatchNorm3d(cout)]
    padding = tuple(k // 2 for k in kernel)  # stride 1, odd kernels: TF 'same' is symmetric too
    return [nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm3d(cout)]


class Bottleneck(nn.Module):
    """Tx1x1 -> 1x3x3 (spatial stride) -> 1x1x1, residual add, ReLU (PySlowFast `ResBlock`)."""

    expansion = 4

    def __init__(self, cin: int, width: int, temporal_kernel: int, stride: tuple[int, int, int],
                 tf_same: bool = False):
        super().__init__()
        cout = width * self.expansion
        self.branch = nn.Sequential(
            *_conv_bn(cin, width, (temporal_kernel, 1, 1), (stride[0], 1, 1), tf_same), nn.ReLU(inplace=True),
            *_conv_bn(width, width, (1, 3, 3), (1, stride[1], stride[2]), tf_same), nn.ReLU(inplace=True),
            *_conv_bn(width, cout, (1, 1, 1)),
        )
        # Zero-init the last BN's scale so every block starts as identity (Goyal et al. 2017),
        # as PySlowFast does with ZERO_INIT_FINAL_BN.
        nn.init.zeros_(self.branch[-1].weight)
        self.shortcut = None
        if cin != cout or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(*_conv_bn(cin, cout, (1, 1, 1), stride))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.branch(x) + identity)


class Basic(nn.Module):
    """Two Tx3x3 convs, residual add, ReLU (R3D-18 `BasicBlock`)."""

    expansion = 1

    def __init__(self, cin: int, width: int, temporal_kernel: int, stride: tuple[int, int, int],
                 tf_same: bool = False):
        super().__init__()
        kernel = (temporal_kernel, 3, 3)
        self.branch = nn.Sequential(
            *_conv_bn(cin, width, kernel, stride, tf_same), nn.ReLU(inplace=True), *_conv_bn(width, width, kernel)
        )
        nn.init.zeros_(self.branch[-1].weight)
        self.shortcut = None
        if cin != width or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(*_conv_bn(cin, width, (1, 1, 1), stride))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.branch(x) + identity)


class ResNet3D(nn.Module):
    """A 3D ResNet backbone returning globally pooled features.

    Args:
        spec: the architecture.
        y_structure: add `res5_local` (ConST-CL Sec. 3.3 "Y" structure): the global branch and
            the local (region) branch share stem..res4 and own one res5 each. The second res5 is
            built and initialised on its own, as the authors' ResNet3DY builds `res_5_1`
            (const_cl/modeling/backbones/resnet_3d.py `_build_model`), not copied from res5.
        num_classes: if > 0, add a linear classifier `fc` (used only to count parameters the way
            PySlowFast reports them; self-supervised methods use the pooled features).
    """

    def __init__(self, spec: ResNet3DSpec, y_structure: bool = False, num_classes: int = 0):
        super().__init__()
        self.spec = spec
        block = Bottleneck if spec.block == "bottleneck" else Basic
        stem = _conv_bn(3, spec.stem_width, spec.stem_kernel, spec.stem_stride, spec.tf_same) + [nn.ReLU(inplace=True)]
        if spec.stem_pool:
            stem.append(TFSameMaxPool3d((1, 3, 3), (1, 2, 2)) if spec.tf_same
                        else nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        self.stem = nn.Sequential(*stem)

        def stage(i: int, cin: int) -> nn.Sequential:
            width, ts = spec.widths[i], spec.temporal_strides[i]
            spatial = 1 if i == 0 else 2
            blocks = []
            for j in range(spec.depths[i]):
                stride = (ts, spatial, spatial) if j == 0 else (1, 1, 1)
                blocks.append(block(cin, width, spec.temporal_kernels[i], stride, spec.tf_same))
                cin = width * block.expansion
            return nn.Sequential(*blocks)

        dims = [spec.stem_width] + [w * block.expansion for w in spec.widths]
        self.res2, self.res3, self.res4, self.res5 = (stage(i, dims[i]) for i in range(4))
        self.res5_local = stage(3, dims[3]) if y_structure else None
        cin = dims[4]
        self.feature_dim = cin
        """Channels of res5, i.e. of the pooled features."""
        self.res4_dim = spec.widths[2] * block.expansion
        """Channels of res4."""
        self.fc = nn.Linear(cin, num_classes) if num_classes > 0 else None
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                if spec.conv_init == "variance_scaling":
                    # Keras VarianceScaling(1.0, "fan_in", "truncated_normal"): the std of a unit
                    # normal truncated at +-2 is 0.87962566, hence the division.
                    std = math.sqrt(1.0 / (m.weight[0].numel())) / 0.87962566103423978
                    nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.res4(self.res3(self.res2(self.stem(x))))

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps for region-level heads.

        Args:
            x: clips (N, C, T, H, W).

        Returns:
            dict with `res4` (N, C4, T4, H/16, W/16), `res5` (N, D, T5, H/32, W/32) of the global
            branch and, with the Y structure, `res5_local` of the same shape from the local branch.
        """
        res4 = self._trunk(x)
        out = {"res4": res4, "res5": self.res5(res4)}
        if self.res5_local is not None:
            out["res5_local"] = self.res5_local(res4)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled res5 features (N, D) (or logits (N, classes) if `fc` exists).

        Args:
            x: clips (N, C, T, H, W).
        """
        feats = self.res5(self._trunk(x)).mean(dim=(2, 3, 4))
        return feats if self.fc is None else self.fc(feats)


def build_backbone(arch: str, y_structure: bool = False, num_classes: int = 0) -> ResNet3D:
    """Build a backbone by name.

    Args:
        arch: one of "tiny", "r3d18", "r3d50", "slow_r50".
        y_structure: add the duplicated local res5 branch (ConST-CL).
        num_classes: add a classifier with this many outputs (0 = none, the SSL default).

    Raises:
        KeyError: unknown `arch` (the message lists the known ones).
    """
    if arch not in SPECS:
        raise KeyError(f"unknown backbone arch {arch!r}; known: {', '.join(sorted(SPECS))}")
    return ResNet3D(SPECS[arch], y_structure=y_structure, num_classes=num_classes)
