"""ConST-CL: global NT-Xent on the global branch + contextualised region instance loss on the local branch."""

from __future__ import annotations

from torch import nn

from rhovid.train.losses.constcl_instance import RegionInstanceLoss
from rhovid.train.losses.infonce import RhoInfoNCE
from rhovid.train.methods.views import flatten_clips, unflatten_clips
from rhovid.train.models import build_backbone
from rhovid.train.models.constcl_head import ConSTCLHead
from rhovid.train.models.heads import contrastive_head


class ConSTCL(nn.Module):
    """ConST-CL (Yuan et al. CVPR 2022): ``loss = L_local + global_weight * L_global``.

    The backbone has the "Y" structure (Sec. 3.3): res5 feeds the global branch (pooled ->
    projection MLP -> NT-Xent over the two views, tau 0.1), res5_local feeds the region head.
    For each view, region features (RoIAlign on the key frame, batch["box_frame"]) are decoded
    with the other view's context into z and contrasted with the other view's regions (tau 0.2);
    both directions are averaged.

    Args:
        arch: backbone name (the paper uses "r3d50").
        temperature_global: tau of the global NT-Xent (0.1).
        temperature_local: tau of the region instance loss (0.2).
        global_weight: lambda, weight of the global loss relative to the local one (1.0).
        proj_dim: global projection output (128).
        hidden_dim: global projection hidden width (2048).
        num_layers: global projection Linear layers (3).
        head_dim: decoder width (768; divisible by head_heads).
        head_heads: decoder attention heads (3).
        head_layers: decoder layers (3).
        context_frames: frames of the other view used as context (5).
        roi_size: RoIAlign output size (7).
        sampling_ratio: RoIAlign samples per bin per axis (2).
    """

    def __init__(self, arch: str = "tiny", temperature_global: float = 0.1, temperature_local: float = 0.2,
                 global_weight: float = 1.0, proj_dim: int = 128, hidden_dim: int = 2048, num_layers: int = 3,
                 head_dim: int = 768, head_heads: int = 3, head_layers: int = 3, context_frames: int = 5,
                 roi_size: int = 7, sampling_ratio: int = 2):
        super().__init__()
        self.backbone = build_backbone(arch, y_structure=True)
        dim = self.backbone.feature_dim
        self.head = contrastive_head(dim, hidden_dim, proj_dim, num_layers)
        self.region_head = ConSTCLHead(dim, head_dim, head_heads, head_layers, context_frames,
                                       roi_size=roi_size, sampling_ratio=sampling_ratio)
        self.global_loss = RhoInfoNCE(temperature_global)
        self.local_loss = RegionInstanceLoss(temperature_local)
        self.global_weight = global_weight

    def forward(self, batch: dict) -> dict:
        """Loss for a batch with video (B, 2, C, T, H, W), boxes (B, 2, K, 4), box_mask (B, 2, K), box_frame (B, 2).

        Returns:
            {"loss", "terms": {"global", "local"}}.
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
        boxes, mask, frame = batch["boxes"].to(video.dtype), batch["box_mask"].bool(), batch["box_frame"]
        regions = [self.region_head.regions(local[:, v], boxes[:, v], frame[:, v], size) for v in range(2)]
        contexts = [self.region_head.context(local[:, v]) for v in range(2)]
        loss_local = 0.0
        for v in range(2):
            other = 1 - v
            recon = self.region_head(regions[v], contexts[other])
            loss_local = loss_local + self.local_loss(recon, regions[other], mask[:, v], mask[:, other]) / 2
        loss = loss_local + self.global_weight * loss_global
        return {"loss": loss, "terms": {"global": loss_global.detach(), "local": loss_local.detach()}}

    def before_update(self, step: int, epoch: float) -> bool:
        """No gradient surgery: every step updates every parameter."""
        return True

    def after_step(self, step: int, total_steps: int) -> None:
        """Nothing to update: ConST-CL has no momentum encoder."""
