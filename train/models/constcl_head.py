"""ConST-CL's instance reconstructor: RoIAlign regions, context memory, cross-attention decoder.

A line-by-line port of the authors' head (tensorflow/models official/projects/const_cl,
modeling/heads/instance_reconstructor.py and transformer_decoder.py; the files and lines cited
below are those of that directory, commit 10e77a69 for the two heads, 0ca414d5 for configs/).
ConST-CL (Yuan et al. CVPR 2022, Sec. 3.2, Fig. 2): region features h of one view are pooled on
its key frame; context features of the other view (a few frames of its map plus positional
encodings) are the keys/values of a transformer decoder that takes h as queries and outputs z,
the region "reconstructed" in the other view.

What the authors' code does, and this module with it:
- The local map is L2-normalised over channels first (instance_reconstructor.py:214-215).
- Regions: RoIAlign on map frame T'//2 (:178), crop 4, one sample per bin at the bin centre, no
  half-pixel shift (configs/head.py:44-45), then the 4x4 crop averaged (:188-190): (B, K, D).
  These D-dim vectors are both the decoder's queries and the targets of the other direction.
- Memory: frames ``T'//2 + (-c//2 .. c//2) * (T' // c)`` of the map, c = context_level = 5
  (:119-128, configs/head.py:40): frames 2..6 of an 8-frame map. Each token gets its (t, y, x)
  position relative to the grid mean (:136-146); t goes through Dense(4, relu) -> Dense(8), (y, x)
  through another Dense(4, relu) -> Dense(8), and both are concatenated to the D channels
  (:92-101, :148-156): tokens of D + 16 channels, not projected before attention.
- Decoder: 3 layers (configs/head.py:48), each 3 separate single-head units of 128 channels
  (:47, :49) whose outputs are concatenated (384). A unit: q, k, v = Dense(128) of the query /
  memory; softmax(q k^T / sqrt(128)) v; + q (the residual is the *projected* query); LayerNorm
  eps 1e-12 (:53); Dense(128, gelu) -> Dense(128), no residual around the FFN
  (transformer_decoder.py:55-90, :113-134). Every layer attends to the same memory.
- Output: Dense(384 -> out_dim), out_dim = 2048 = D for R3D-50 (configs/head.py:42;
  instance_reconstructor.py:112, :243-245).
- Initialisation: Keras Dense defaults (Glorot-uniform kernels, zero biases); LayerNorm 1 / 0.

Parameter count at the paper's size (D = 2048): see tests/train/test_constcl_faithful.py
(6,928,356, derived there from these layer definitions).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rhovid.train.roi_align import roi_align


def keras_dense(in_dim: int, out_dim: int, bias: bool = True) -> nn.Linear:
    """nn.Linear initialised like Keras' Dense default: Glorot-uniform weight, zero bias."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def memory_frames(num_frames: int, context_level: int) -> list[int]:
    """Map frames the memory is built from (instance_reconstructor.py:114-128).

    ``T'//2 + i * (T' // c)`` for i in -(c//2) .. c//2; c must be odd. For T' = 8 and c = 5:
    [2, 3, 4, 5, 6]. A stride of 0 (T' < c) repeats the key frame, as the authors' code would.
    """
    if context_level % 2 == 0 or context_level < 1:
        raise ValueError(f"context_level must be an odd number >= 1 (authors' head), got {context_level}")
    key, stride = num_frames // 2, num_frames // context_level
    frames = [key + i * stride for i in range(-(context_level // 2), context_level // 2 + 1)]
    if min(frames) < 0 or max(frames) >= num_frames:
        raise ValueError(f"context_level {context_level} selects frames {frames} outside a {num_frames}-frame map")
    return frames


class DecoderUnit(nn.Module):
    """One of the authors' single-head units (transformer_decoder.py `DecoderUnit`).

    Args:
        query_dim: channels of the queries.
        memory_dim: channels of the memory tokens.
        channels: width of q, k, v and the FFN (128).
        eps: LayerNorm epsilon (1e-12).
    """

    def __init__(self, query_dim: int, memory_dim: int, channels: int = 128, eps: float = 1e-12):
        super().__init__()
        self.query = keras_dense(query_dim, channels)
        self.key = keras_dense(memory_dim, channels)
        self.value = keras_dense(memory_dim, channels)
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.ffn1 = keras_dense(channels, channels)
        self.ffn2 = keras_dense(channels, channels)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query (B, K, query_dim), memory (B, L, memory_dim) -> (B, K, channels)."""
        q = self.query(query)
        attn = torch.softmax(q @ self.key(memory).transpose(1, 2) * self.scale, dim=-1)
        x = self.norm(attn @ self.value(memory) + q)
        # Keras' 'gelu' is the exact (erf) form, as torch's default.
        return self.ffn2(F.gelu(self.ffn1(x)))


class DecoderLayer(nn.Module):
    """`num_units` separate units on the same query and memory, outputs concatenated."""

    def __init__(self, query_dim: int, memory_dim: int, channels: int, num_units: int, eps: float):
        super().__init__()
        self.units = nn.ModuleList(DecoderUnit(query_dim, memory_dim, channels, eps) for _ in range(num_units))

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query (B, K, query_dim), memory (B, L, memory_dim) -> (B, K, num_units * channels)."""
        return torch.cat([unit(query, memory) for unit in self.units], dim=-1)


class ConSTCLHead(nn.Module):
    """The authors' instance reconstructor (see the module docstring for every choice).

    Args:
        in_dim: channels D of the local feature map (res5_local; 2048 for R3D-50).
        out_dim: output channels of the reconstruction (None = in_dim, the authors' 2048).
        channels: width of each decoder unit (num_tx_channels, 128).
        num_units: units per layer (num_tx_heads, 3).
        num_layers: decoder layers (num_tx_layers, 3).
        context_level: memory frames c, odd (5).
        roi_size: RoIAlign crop (4).
        sampling_ratio: RoIAlign samples per bin per axis (1).
        aligned: RoIAlign half-pixel convention (False: the authors' TF pooling).
        eps: LayerNorm epsilon (1e-12).
        positional: add the (t, y, x) MLP encodings to the memory (True).
        normalize: L2-normalise the map over channels before pooling and attention (True).
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, channels: int = 128, num_units: int = 3,
                 num_layers: int = 3, context_level: int = 5, roi_size: int = 4, sampling_ratio: int = 1,
                 aligned: bool = False, eps: float = 1e-12, positional: bool = True, normalize: bool = True):
        super().__init__()
        memory_frames(max(context_level, 1), context_level)  # validates context_level early
        self.context_level = context_level
        self.roi_size, self.sampling_ratio, self.aligned = roi_size, sampling_ratio, aligned
        self.normalize = normalize
        self.positional = positional
        if positional:
            self.temporal_mlp = nn.Sequential(keras_dense(1, 4), nn.ReLU(), keras_dense(4, 8))
            self.spatial_mlp = nn.Sequential(keras_dense(2, 4), nn.ReLU(), keras_dense(4, 8))
        memory_dim = in_dim + (16 if positional else 0)
        width = channels * num_units
        self.layers = nn.ModuleList(
            DecoderLayer(in_dim if i == 0 else width, memory_dim, channels, num_units, eps) for i in range(num_layers)
        )
        self.out_dim = in_dim if out_dim is None else out_dim
        self.projection = keras_dense(width, self.out_dim)

    def _map(self, fmap: torch.Tensor) -> torch.Tensor:
        return F.normalize(fmap, dim=1) if self.normalize else fmap

    def regions(self, fmap: torch.Tensor, boxes: torch.Tensor, key_frame: torch.Tensor,
                input_size: tuple[int, int, int]) -> torch.Tensor:
        """Region features of one view (instance_reconstructor.py:158-191, :221-230).

        Args:
            fmap: local-branch map (B, D, T', H', W').
            boxes: (B, K, 4) x0y0x1y1 in input (crop) pixels.
            key_frame: (B,) index into the input's T frames of the frame the boxes belong to;
                input frame T//2 (the authors' key frame) maps to map frame T'//2.
            input_size: (T, H, W) of the clip the map was computed from.

        Returns:
            (B, K, D) RoIAlign crops of the (normalised) key-frame map, averaged over the crop.
        """
        b, _, tf, hf, wf = fmap.shape
        t, h, w = input_size
        ft = (key_frame.long() * tf // t).clamp(0, tf - 1)
        frames = self._map(fmap[torch.arange(b, device=fmap.device), :, ft])  # (B, D, H', W')
        k = boxes.shape[1]
        idx = torch.arange(b, device=fmap.device, dtype=boxes.dtype).repeat_interleave(k)
        rois = torch.cat([idx[:, None], boxes.reshape(b * k, 4)], dim=1)
        pooled = roi_align(frames, rois, self.roi_size, (hf / h, wf / w), self.sampling_ratio, aligned=self.aligned)
        return pooled.mean(dim=(2, 3)).reshape(b, k, -1)

    def memory(self, fmap: torch.Tensor) -> torch.Tensor:
        """Memory tokens of one view (instance_reconstructor.py:114-156, :233-237).

        Args:
            fmap: local-branch map (B, D, T', H', W').

        Returns:
            (B, c*H'*W', D + 16) tokens in (t, y, x) order: normalised features, then the
            temporal and the spatial encoding.
        """
        b, _, tf, hf, wf = fmap.shape
        sel = self._map(fmap)[:, :, memory_frames(tf, self.context_level)]  # (B, D, c, H', W')
        tokens = sel.flatten(2).transpose(1, 2)  # (B, c*H'*W', D)
        if not self.positional:
            return tokens
        grid = torch.meshgrid(*(torch.arange(n, dtype=tokens.dtype, device=tokens.device) for n in sel.shape[2:]),
                              indexing="ij")
        pos = torch.stack(grid, dim=-1).reshape(-1, 3)
        pos = pos - pos.mean(dim=0)  # relative to the grid's centre (:143-146)
        enc = torch.cat([self.temporal_mlp(pos[:, :1]), self.spatial_mlp(pos[:, 1:])], dim=-1)
        return torch.cat([tokens, enc.expand(b, -1, -1)], dim=-1)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Reconstruct regions: queries (B, K, D) attend to memory (B, L, D+16) -> (B, K, out_dim)."""
        x = queries
        for layer in self.layers:
            x = layer(x, memory)
        return self.projection(x)
