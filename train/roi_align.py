"""RoIAlign in pure torch (grid_sample): torchvision's `roi_align` and ConST-CL's TF pooling.

torchvision's PyPI wheel is a CUDA build that does not import beside CPU torch (DESIGN.md,
decision 7), so the ConST-CL head pools regions with this implementation instead.

Semantics (He et al. 2017, Mask R-CNN Sec. 3; torchvision `roi_align`): a box x0,y0,x1,y1 in input
pixels is scaled by `spatial_scale`, split into out_h x out_w bins, and each bin averages
sampling_ratio^2 bilinear samples at regularly spaced points. A sample more than one pixel outside
the map contributes 0; one within a pixel of the border is clamped to the border (torchvision's
`bilinear_interpolate`). grid_sample with border padding reproduces the clamp; a mask the zeroing.

`aligned` chooses where feature cell k sits:
- True (torchvision `aligned=True`, rhovid's default): at k + 0.5, so the box is shifted by -0.5.
- False: at k, no shift, and the box is used as given (no minimum size). This is TF Model Garden's
  `multilevel_crop_and_resize` (official/vision/ops/spatial_transform_ops.py, `_compute_grid_positions`:
  sample i of a bin at ``x0 + (i + sample_offset) * w / output_size``, floor/ceil neighbours, the far
  border clamped), which ConST-CL's head calls with crop 4 and one sample per bin
  (const_cl/configs/head.py:44-45, sample_offset 0.5). Unlike torchvision's `aligned=False` it does
  not widen boxes narrower than one cell (ConST-CL's random boxes can be 0.7 cells wide).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float | tuple[float, float] = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """Pool one feature patch per region of interest.

    Args:
        features: maps (N, C, H, W).
        rois: (R, 5) rows ``[batch_index, x0, y0, x1, y1]`` in input-image pixels.
        output_size: (out_h, out_w) or one int for both.
        spatial_scale: map size / image size; one float or (scale_y, scale_x).
        sampling_ratio: samples per bin along each axis (>= 1). torchvision's adaptive mode
            (<= 0) varies per box and is not supported.
        aligned: True: cell k at k + 0.5 (torchvision aligned=True); False: cell k at k and boxes
            as given (ConST-CL's TF pooling; see the module docstring).

    Returns:
        (R, C, out_h, out_w) pooled features, differentiable w.r.t. `features`.
    """
    if features.dim() != 4 or rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_align needs features (N,C,H,W) and rois (R,5); got {tuple(features.shape)}, {tuple(rois.shape)}")
    if sampling_ratio < 1:
        raise ValueError(f"roi_align sampling_ratio must be >= 1 (adaptive mode unsupported), got {sampling_ratio}")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    scale_y, scale_x = (spatial_scale, spatial_scale) if isinstance(spatial_scale, (int, float)) else spatial_scale
    _, _, h, w = features.shape
    r = rois.shape[0]
    rois = rois.to(features.dtype)
    x0 = rois[:, 1] * scale_x
    y0 = rois[:, 2] * scale_y
    bin_w = (rois[:, 3] * scale_x - x0) / out_w
    bin_h = (rois[:, 4] * scale_y - y0) / out_h
    if aligned:
        x0, y0 = x0 - 0.5, y0 - 0.5
    s = sampling_ratio
    # Sample offsets within the box in bin units: bin p, sample i -> p + (i + 0.5) / s.
    fy = (torch.arange(out_h * s, device=features.device, dtype=features.dtype) + 0.5) / s
    fx = (torch.arange(out_w * s, device=features.device, dtype=features.dtype) + 0.5) / s
    ys = y0[:, None] + fy[None, :] * bin_h[:, None]  # (R, out_h*s) pixel coordinates
    xs = x0[:, None] + fx[None, :] * bin_w[:, None]  # (R, out_w*s)
    valid = ((ys >= -1.0) & (ys <= h))[:, :, None] & ((xs >= -1.0) & (xs <= w))[:, None, :]
    # grid_sample(align_corners=False) maps pixel coordinate p to (2p + 1) / size - 1.
    gy = (2 * ys + 1) / h - 1
    gx = (2 * xs + 1) / w - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (R, Hs, Ws, 2)
    per_roi = features[rois[:, 0].long()]  # (R, C, H, W)
    samples = F.grid_sample(per_roi, grid, mode="bilinear", padding_mode="border", align_corners=False)
    samples = samples * valid[:, None].to(samples.dtype)
    return F.avg_pool2d(samples, kernel_size=s, stride=s) if s > 1 else samples.reshape(r, -1, out_h, out_w)
