"""RoIAlign (pure torch) against a direct loop implementation of torchvision's bilinear rules."""

from __future__ import annotations

import math

import pytest
import torch

from rhovid.train.roi_align import roi_align


def _bilinear(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's `bilinear_interpolate` (roi_align_kernel.cpp), written out per sample."""
    _, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(fmap.shape[0], dtype=fmap.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    if y_low >= h - 1:
        y_low = y_high = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_low = x_high = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[:, y_low, x_low] + hy * lx * fmap[:, y_low, x_high]
            + ly * hx * fmap[:, y_high, x_low] + ly * lx * fmap[:, y_high, x_high])


def _reference(features, rois, out, scale, s):
    result = torch.zeros(rois.shape[0], features.shape[1], out, out, dtype=features.dtype)
    for r, (b, x0, y0, x1, y1) in enumerate(rois.tolist()):
        x0, y0, x1, y1 = x0 * scale - 0.5, y0 * scale - 0.5, x1 * scale - 0.5, y1 * scale - 0.5
        bh, bw = (y1 - y0) / out, (x1 - x0) / out
        for ph in range(out):
            for pw in range(out):
                acc = torch.zeros(features.shape[1], dtype=features.dtype)
                for iy in range(s):
                    for ix in range(s):
                        y = y0 + ph * bh + (iy + 0.5) * bh / s
                        x = x0 + pw * bw + (ix + 0.5) * bw / s
                        acc += _bilinear(features[int(b)], y, x)
                result[r, :, ph, pw] = acc / (s * s)
    return result


def _rois():
    # Inside, partly outside (clamped and zeroed samples), degenerate, and fully outside.
    return torch.tensor([
        [0, 3.0, 5.0, 40.0, 30.0],
        [1, -20.0, -10.0, 20.0, 64.0],
        [1, 50.0, 10.0, 70.0, 58.0],
        [0, 12.0, 12.0, 12.0, 12.0],
        [1, 200.0, 200.0, 260.0, 250.0],
        [0, 0.0, 0.0, 64.0, 64.0],
    ], dtype=torch.float64)


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_matches_direct_bilinear(sampling_ratio):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    got = roi_align(features, _rois(), 3, 1 / 8, sampling_ratio)
    want = _reference(features, _rois(), 3, 1 / 8, sampling_ratio)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_constant_map_and_outside_box():
    features = torch.full((2, 1, 8, 8), 3.0)
    out = roi_align(features, _rois().float(), 2, 1 / 8, 2)
    assert torch.allclose(out[0], torch.full((1, 2, 2), 3.0))
    assert torch.all(out[4] == 0)  # every sample more than a pixel outside the map


def test_rectangular_scale_and_grad():
    torch.manual_seed(1)
    features = torch.randn(1, 2, 6, 10, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 4.0, 2.0, 30.0, 20.0]], dtype=torch.float64)
    got = roi_align(features, rois, (2, 4), (6 / 24, 10 / 40), 2)
    assert got.shape == (1, 2, 2, 4)
    got.sum().backward()
    assert features.grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5), 2, 1.0, 0)
    with pytest.raises(ValueError, match="rois"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4), 2)


def test_matches_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    torch.manual_seed(0)
    features = torch.randn(2, 4, 8, 8)
    rois = _rois().float()
    want = ops.roi_align(features, rois, (3, 3), 1 / 8, 2, aligned=True)
    torch.testing.assert_close(roi_align(features, rois, 3, 1 / 8, 2), want, atol=2e-5, rtol=0)
