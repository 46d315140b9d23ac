"""Felzenszwalb-Huttenlocher graph-segmentation boxes (ConST-CL Sec. 4.1 "FH" prior).

OpenCV ximgproc ``createGraphSegmentation(sigma, k, min_size)`` is the default;
``impl="skimage"`` runs ``skimage.segmentation.felzenszwalb(scale=k, sigma, min_size)``, the
reference implementation of the same algorithm (``k`` is the paper's scale constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhovid.errors import UsageError
from rhovid.store.regions import SelectParams, label_boxes


@dataclass(frozen=True)
class FhParams(SelectParams):
    """Graph-based segmentation; boxes are the segments' bounding boxes, largest first."""

    min_frac: float = 0.05  # object-scale regions: the ConST-CL appendix's width/height range (FORMAT.md)
    max_frac: float = 0.5
    nms_iou: float = 0.5  # one region found at both scales is stored once
    scales: tuple[float, ...] = (1000.0, 2000.0)
    """Scale constants k, one segmentation each (boxes pooled): larger = larger segments (skimage: scale)."""
    sigma: float = 0.8
    """Gaussian pre-smoothing sigma."""
    segment_min_size: int = 250
    """Segments smaller than this many pixels are merged into a neighbour."""
    impl: str = "opencv"
    """opencv (ximgproc) or skimage (reference implementation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.scales or min(self.scales) <= 0 or self.sigma < 0 or self.segment_min_size < 1:
            raise UsageError("fh needs scales (one or more k > 0), sigma >= 0 and segment_min_size >= 1")
        if self.impl not in ("opencv", "skimage"):
            raise UsageError(f"fh impl must be 'opencv' or 'skimage', got {self.impl!r}")


def fh_labels(frame: np.ndarray, p: FhParams, k: float) -> np.ndarray:
    """The bare segmentation call at scale ``k``: (H, W, 3) uint8 RGB -> (H, W) int label map."""
    if p.impl == "skimage":
        from skimage.segmentation import felzenszwalb

        return felzenszwalb(frame, scale=k, sigma=p.sigma, min_size=p.segment_min_size)
    import cv2

    seg = cv2.ximgproc.segmentation.createGraphSegmentation(p.sigma, k, p.segment_min_size)
    return seg.processImage(frame)


def fh_boxes(frames: np.ndarray, p: FhParams) -> list[tuple[np.ndarray, None]]:
    """Candidate boxes per frame.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        p: parameters.

    Returns:
        N pairs (boxes (M, 4) float32 x0 y0 x1 y1, None): one box per segment.
    """
    return [(np.concatenate([label_boxes(fh_labels(f, p, k))[0] for k in p.scales]), None) for f in frames]
