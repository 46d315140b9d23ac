"""HOG people-detector boxes: the person-detector prior that needs no weights.

OpenCV's built-in Dalal-Triggs HOG + linear SVM (``getDefaultPeopleDetector``) stands in
for ConST-CL's person-detector boxes (Sec. 4.1) where no detector weights are available.
Its window is 64x128 px, so small stored videos are upscaled first (``min_side``) and the
boxes are scaled back to stored-video pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rhovid.errors import UsageError
from rhovid.store.regions import SelectParams

DETECTORS = {"default": (64, 128), "daimler": (48, 96)}
"""OpenCV's pedestrian SVMs and their window (w, h): INRIA (Dalal-Triggs) and Daimler."""
MARGINS = {"default": (0.25, 0.125), "daimler": (0.19, 0.11)}
"""Background margin of a detection window on each side, as a fraction of its (width, height).
default: Dalal & Triggs 2005 (Sec. 3) train on 64x128 windows with about 16 px of margin around
the person on all four sides (16/64, 16/128). daimler: measured, median margins of detections
matched to pedestrians in OpenCV's vtest.avi (rhovid bench boxes --quality; default measured 0.22 / 0.14)."""


@dataclass(frozen=True)
class HogParams(SelectParams):
    """OpenCV HOG people detector; boxes ranked by SVM score."""

    scored: ClassVar[bool] = True

    nms_iou: float = 0.4  # overlapping windows of one person (replaces OpenCV's grouping, group=0)
    detector: str = "daimler"
    """default (INRIA-trained, 64x128 window) or daimler (48x96 window: smaller people)."""
    min_side: int = 512
    """Upscale frames so their short side is at least this many pixels (people must fill the window)."""
    scale: float = 1.2
    """Image-pyramid step of detectMultiScale."""
    win_stride: int = 8
    """Sliding-window stride in (upscaled) pixels."""
    hit_threshold: float = 0.6
    """SVM decision threshold; higher = fewer, surer detections."""
    group: int = 0
    """OpenCV's grouping of overlapping windows: a person needs more than this many (0 = no grouping)."""
    trim: bool = True
    """Cut the window's background margin (``MARGINS``) so a box bounds the person, not the window."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale <= 1.0 or self.win_stride < 1 or self.min_side < 1 or self.group < 0:
            raise UsageError("hog needs scale > 1, win_stride >= 1, min_side >= 1 and group >= 0")
        if self.detector not in DETECTORS:
            raise UsageError(f"hog detector must be one of {sorted(DETECTORS)}, got {self.detector!r}")
        if self.win_stride % 8:
            raise UsageError(f"hog win_stride must be a multiple of the 8-px block stride, got {self.win_stride}")


_DETECTORS: dict = {}


def hog_detector(name: str = "default"):
    """The process-wide HOG detector ``name`` (building it costs ~1 ms; reuse it per worker)."""
    if name not in _DETECTORS:
        import cv2

        if name == "daimler":
            hog = cv2.HOGDescriptor(DETECTORS[name], (16, 16), (8, 8), (8, 8), 9)
            hog.setSVMDetector(cv2.HOGDescriptor_getDaimlerPeopleDetector())
        else:
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        _DETECTORS[name] = hog
    return _DETECTORS[name]


def hog_upscale(frame: np.ndarray, min_side: int) -> tuple[np.ndarray, float]:
    """Resize (H, W, 3) so min(H, W) >= min_side; returns the image and the factor used."""
    import cv2

    f = max(1.0, min_side / min(frame.shape[:2]))
    if f == 1.0:
        return frame, 1.0
    h, w = frame.shape[:2]
    return cv2.resize(frame, (round(w * f), round(h * f)), interpolation=cv2.INTER_LINEAR), f


def hog_detect(image: np.ndarray, p: HogParams) -> tuple[np.ndarray, np.ndarray]:
    """The bare OpenCV call: returns rects (M, 4) x, y, w, h and scores (M,)."""
    rects, weights = hog_detector(p.detector).detectMultiScale(
        image, hitThreshold=p.hit_threshold, winStride=(p.win_stride, p.win_stride), scale=p.scale,
        groupThreshold=p.group,
    )
    return np.asarray(rects, np.float32).reshape(-1, 4), np.asarray(weights, np.float32).reshape(-1)


def hog_boxes(frames: np.ndarray, p: HogParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate person boxes per frame.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        p: parameters.

    Returns:
        N pairs (boxes (M, 4) float32 x0 y0 x1 y1 in input pixels, scores (M,) float32).
    """
    out = []
    for frame in frames:
        image, f = hog_upscale(frame, p.min_side)
        rects, scores = hog_detect(image, p)
        if p.trim:
            mx, my = MARGINS[p.detector]
            rects = rects + np.float32([mx, my, -2 * mx, -2 * my]) * rects[:, [2, 3, 2, 3]]
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / f
        out.append((boxes.astype(np.float32), scores))
    return out
