"""ConST-CL's contextualised region head: RoIAlign regions, context tokens, cross-attention decoder.

ConST-CL (Yuan et al. CVPR 2022, Sec. 3.2, Fig. 2): region features h of one view are pooled with
RoIAlign on the key frame of the local-branch map; context features F'_c are sampled from a few
frames of the other view's map and given learned spatio-temporal positional encodings; a
transformer decoder takes h as queries and F'_c as keys/values and outputs z, the region
"reconstructed" in the other view, which the instance loss contrasts with the other view's regions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.roi_align import roi_align


class CrossAttentionLayer(nn.Module):
    """Post-norm transformer decoder layer without query self-attention.

    Each region is reconstructed from the context alone (queries do not attend to each other), so
    boxes cannot copy from one another; this keeps a region's output a function of that region
    and the other view's context, as the pretext task intends.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """query (B, K, dim), context (B, L, dim) -> (B, K, dim)."""
        x = self.norm1(query + self.attn(query, context, context, need_weights=False)[0])
        return self.norm2(x + self.mlp(x))


class ConSTCLHead(nn.Module):
    """Region pooling + positional context + cross-attention decoder.

    Args:
        in_dim: channels D of the local feature map (res5_local).
        dim: decoder width (must be divisible by `num_heads`).
        num_heads: attention heads (ConST-CL: 3).
        num_layers: decoder layers (ConST-CL: 3).
        context_frames: frames of the other view's map used as context (ConST-CL: 5).
        pos_size: (H, W) of the learned positional grid; other map sizes interpolate it.
        roi_size: RoIAlign output size (pooled to one vector afterwards).
        sampling_ratio: RoIAlign samples per bin per axis.
    """

    def __init__(self, in_dim: int, dim: int = 768, num_heads: int = 3, num_layers: int = 3,
                 context_frames: int = 5, pos_size: tuple[int, int] = (7, 7), roi_size: int = 7,
                 sampling_ratio: int = 2):
        super().__init__()
        self.context_frames = context_frames
        self.roi_size = roi_size
        self.sampling_ratio = sampling_ratio
        self.region_proj = nn.Linear(in_dim, dim)
        self.context_proj = nn.Linear(in_dim, dim)
        # Learned spatio-temporal positional encoding on a (T_c, H, W) grid (ConST-CL Sec. 3.2).
        self.pos = nn.Parameter(torch.zeros(1, dim, context_frames, *pos_size))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(CrossAttentionLayer(dim, num_heads) for _ in range(num_layers))
        self.out_proj = nn.Linear(dim, dim)
        self.dim = dim

    def regions(self, fmap: torch.Tensor, boxes: torch.Tensor, key_frame: torch.Tensor,
                input_size: tuple[int, int, int]) -> torch.Tensor:
        """Region features of one view: RoIAlign on the key frame, then spatial average.

        Args:
            fmap: local-branch map (B, D, T', H', W').
            boxes: (B, K, 4) x0y0x1y1 in input (crop) pixels.
            key_frame: (B,) long index into the input's T frames.
            input_size: (T, H, W) of the clip the map was computed from.

        Returns:
            embeddings (B, K, dim) in the decoder's space.
        """
        b, _, tf, hf, wf = fmap.shape
        t, h, w = input_size
        ft = (key_frame.long() * tf // t).clamp(0, tf - 1)
        frames = fmap[torch.arange(b, device=fmap.device), :, ft]  # (B, D, H', W')
        k = boxes.shape[1]
        idx = torch.arange(b, device=fmap.device, dtype=boxes.dtype).repeat_interleave(k)
        rois = torch.cat([idx[:, None], boxes.reshape(b * k, 4)], dim=1)
        pooled = roi_align(frames, rois, self.roi_size, (hf / h, wf / w), self.sampling_ratio)
        return self.region_proj(pooled.mean(dim=(2, 3)).reshape(b, k, -1))

    def context(self, fmap: torch.Tensor) -> torch.Tensor:
        """Context tokens (B, context_frames*H'*W', dim) from evenly spaced frames of fmap (B, D, T', H', W')."""
        tf = fmap.shape[2]
        idx = torch.linspace(0, tf - 1, self.context_frames, device=fmap.device).round().long()
        sel = fmap[:, :, idx]  # (B, D, Tc, H', W'); repeats frames when T' < context_frames
        tokens = self.context_proj(sel.flatten(2).transpose(1, 2))
        pos = self.pos
        if pos.shape[3:] != sel.shape[3:]:
            pos = F.interpolate(pos, size=sel.shape[2:], mode="trilinear", align_corners=False)
        return tokens + pos.flatten(2).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Reconstruct regions: queries (B, K, dim) attend to context (B, L, dim) -> z (B, K, dim)."""
        x = queries
        for layer in self.layers:
            x = layer(x, context)
        return self.out_proj(x)
