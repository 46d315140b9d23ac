"""SLIC superpixel boxes (ConST-CL Sec. 4.1 "SLIC" region prior).

OpenCV ximgproc SLIC is the default (about 2x faster than scikit-image, DESIGN.md
decision 7); ``impl="skimage"`` runs ``skimage.segmentation.slic`` as the reference.
The two implementations take different knobs for the same idea, so the mapping is:
``segments`` (superpixels per frame) is scikit-image's ``n_segments`` and OpenCV's
``region_size = round(sqrt(H*W / segments))`` (superpixel side in pixels); OpenCV ``ruler``
(spatial vs colour weight) <-> scikit-image ``compactness``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhovid.errors import UsageError
from rhovid.store.regions import SelectParams, label_boxes

ALGORITHMS = {"slic": 100, "slico": 101, "mslic": 102}  # cv2.ximgproc.SLIC, SLICO, MSLIC


@dataclass(frozen=True)
class SlicParams(SelectParams):
    """SLIC superpixels; boxes are the superpixels' bounding boxes, largest first."""

    min_frac: float = 0.05  # the same object-scale range as fh (store/FORMAT.md)
    max_frac: float = 0.5
    nms_iou: float = 0.5
    segments: int = 16
    """Superpixels per frame (their side is sqrt(frame pixels / segments), whatever the resolution)."""
    ruler: float = 20.0
    """Smoothness: larger = more compact, square superpixels (skimage: compactness)."""
    iterations: int = 10
    """Number of SLIC iterations."""
    algorithm: str = "slic"
    """OpenCV variant: slic, slico (adaptive compactness) or mslic."""
    impl: str = "opencv"
    """opencv (ximgproc) or skimage (reference implementation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.segments < 1 or self.iterations < 1 or self.ruler <= 0:
            raise UsageError("slic needs segments >= 1, iterations >= 1 and ruler > 0")
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"slic algorithm must be one of {sorted(ALGORITHMS)}, got {self.algorithm!r}")
        if self.impl not in ("opencv", "skimage"):
            raise UsageError(f"slic impl must be 'opencv' or 'skimage', got {self.impl!r}")


def slic_labels(frame: np.ndarray, p: SlicParams) -> np.ndarray:
    """The bare segmentation call: (H, W, 3) uint8 RGB -> (H, W) int label map."""
    h, w = frame.shape[:2]
    if p.impl == "skimage":
        from skimage.segmentation import slic

        return slic(frame, n_segments=p.segments, compactness=p.ruler, max_num_iter=p.iterations, start_label=0)
    import cv2

    # OpenCV SLIC works in any 3-channel space; LAB is what the SLIC paper uses.
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)
    region_size = max(2, round(np.sqrt(h * w / p.segments)))
    seg = cv2.ximgproc.createSuperpixelSLIC(lab, ALGORITHMS[p.algorithm], region_size, float(p.ruler))
    seg.iterate(p.iterations)
    # Absorb fragments under 25 % of a superpixel into a neighbour (OpenCV's default; the SLIC
    # paper's connectivity step, which scikit-image runs as enforce_connectivity=True).
    seg.enforceLabelConnectivity(25)
    return seg.getLabels()


def slic_boxes(frames: np.ndarray, p: SlicParams) -> list[tuple[np.ndarray, None]]:
    """Candidate boxes per frame.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        p: parameters.

    Returns:
        N pairs (boxes (M, 4) float32 x0 y0 x1 y1, None): one box per superpixel.
    """
    return [(label_boxes(slic_labels(f, p))[0], None) for f in frames]
