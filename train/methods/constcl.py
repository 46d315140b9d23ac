"""ConST-CL: global NT-Xent on the global branch + region reconstruction loss on the local branch.

Follows the authors' code (tensorflow/models official/projects/const_cl; modeling/const_cl_model.py,
tasks/const_cl.py, configs/const_cl.py and configs/head.py at commit 0ca414d5), item by item:
the README's ConST-CL table cites the file and line of every value.
"""

from __future__ import annotations

from torch import nn

from rhovid.train.losses.constcl_global import ConSTCLGlobalLoss
from rhovid.train.losses.constcl_local import ConSTCLLocalLoss
from rhovid.train.methods.views import flatten_clips, unflatten_clips
from rhovid.train.models import build_backbone
from rhovid.train.models.constcl_head import ConSTCLHead, keras_dense
from rhovid.train.models.heads import MLPHead


class ConSTCL(nn.Module):
    """ConST-CL (Yuan et al. CVPR 2022): ``global_weight * L_global + local_weight * L_local``.

    The backbone has the "Y" structure (Sec. 3.3): res5 feeds the global branch (global average
    pool -> MLP of `mlp_hidden_layers` x [Linear without bias, BN, ReLU] + Linear to `proj_dim`,
    const_cl_model.py + heads/simple.py:60-79 -> `ConSTCLGlobalLoss`, both directions summed),
    res5_local feeds the instance reconstructor (`ConSTCLHead`) whose reconstructions of each
    view's regions in the other view's context go to `ConSTCLLocalLoss` (directions averaged).
    The authors weight them 1.0 and 0.001 (configs/const_cl.py:73-74, tasks/const_cl.py
    `build_losses`); their l2 term (1e-6 on kernels) is rhovid's optimiser weight decay.

    Args:
        arch: backbone name (the authors' is "r3d50").
        temperature_global: tau of the global loss (0.1, configs/const_cl.py:71).
        temperature_local: tau of the local loss (0.2, configs/const_cl.py:72).
        global_weight: weight of the global loss (1.0, configs/const_cl.py:73).
        local_weight: weight of the local loss (0.001, configs/const_cl.py:74).
        proj_dim: global MLP output (128, configs/head.py:29).
        hidden_dim: global MLP hidden width (2048, configs/head.py:27).
        mlp_hidden_layers: global MLP hidden layers, each Linear-BN-ReLU (3, configs/head.py:28).
        tx_channels: width of each decoder unit (128, configs/head.py:47).
        tx_units: single-head units per decoder layer (3, configs/head.py:49 `num_tx_heads`).
        tx_layers: decoder layers (3, configs/head.py:48).
        context_level: memory frames, odd (5, configs/head.py:40).
        roi_size: RoIAlign crop (4, configs/head.py:44).
        roi_sampling_ratio: RoIAlign samples per bin and axis (1: TF's sample_offset 0.5 grid).
        roi_aligned: RoIAlign half-pixel shift (False: TF's multilevel_crop_and_resize).
    """

    def __init__(self, arch: str = "tiny", temperature_global: float = 0.1, temperature_local: float = 0.2,
                 global_weight: float = 1.0, local_weight: float = 0.001, proj_dim: int = 128,
                 hidden_dim: int = 2048, mlp_hidden_layers: int = 3, tx_channels: int = 128, tx_units: int = 3,
                 tx_layers: int = 3, context_level: int = 5, roi_size: int = 4, roi_sampling_ratio: int = 1,
                 roi_aligned: bool = False):
        super().__init__()
        self.backbone = build_backbone(arch, y_structure=True)
        dim = self.backbone.feature_dim
        self.head = MLPHead(dim, hidden_dim, proj_dim, num_layers=mlp_hidden_layers + 1)
        for i, m in enumerate(self.head.net):
            if isinstance(m, nn.Linear):  # Keras Dense init (Glorot uniform, zero bias)
                self.head.net[i] = keras_dense(m.in_features, m.out_features, bias=m.bias is not None)
        self.region_head = ConSTCLHead(dim, channels=tx_channels, num_units=tx_units, num_layers=tx_layers,
                                       context_level=context_level, roi_size=roi_size,
                                       sampling_ratio=roi_sampling_ratio, aligned=roi_aligned)
        self.global_loss = ConSTCLGlobalLoss(temperature_global)
        self.local_loss = ConSTCLLocalLoss(temperature_local)
        self.global_weight = global_weight
        self.local_weight = local_weight

    def forward(self, batch: dict) -> dict:
        """Loss for a batch with video (B, 2, C, T, H, W), boxes (B, 2, K, 4), box_mask (B, 2, K), box_frame (B, 2).

        Returns:
            {"loss", "terms": {"global", "local"}} (terms unweighted).
        """
        video = batch["video"]
        b, rho = video.shape[:2]
        if rho != 2:
            raise ValueError(f"ConST-CL contrasts two views: batch['video'] must have rho=2, got shape {tuple(video.shape)}")
        for key in ("boxes", "box_mask", "box_frame"):
            if key not in batch:
                raise KeyError(f"ConST-CL needs batch[{key!r}] (train with --boxes random or a box set)")
        maps = self.backbone.forward_features(flatten_clips(video))
        z = unflatten_clips(self.head(maps["res5"].mean(dim=(2, 3, 4))), b)
        loss_global = self.global_loss(z)

        local = unflatten_clips(maps["res5_local"], b)  # (B, 2, D, T', H', W')
        size = tuple(video.shape[3:6])
        boxes, mask, frame = batch["boxes"].to(local.dtype), batch["box_mask"].bool(), batch["box_frame"]
        inst = [self.region_head.regions(local[:, v], boxes[:, v], frame[:, v], size) for v in range(2)]
        memory = [self.region_head.memory(local[:, v]) for v in range(2)]
        a2b = self.region_head(inst[0], memory[1])  # view-a regions read in view b's context
        b2a = self.region_head(inst[1], memory[0])
        loss_local = self.local_loss(a2b, b2a, inst[0], inst[1], mask[:, 0], mask[:, 1])
        loss = self.global_weight * loss_global + self.local_weight * loss_local
        return {"loss": loss, "terms": {"global": loss_global.detach(), "local": loss_local.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    def after_step(self, step: int, total_steps: int) -> None:
        """Nothing to update: ConST-CL has no momentum encoder."""
