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


@dataclass(frozen=True)
class HogParams(SelectParams):
    """OpenCV HOG people detector; boxes ranked by SVM score."""

    scored: ClassVar[bool] = True

    min_side: int = 256
    """Upscale frames so their short side is at least this many pixels (window is 64x128)."""
    scale: float = 1.05
    """Image-pyramid step of detectMultiScale."""
    win_stride: int = 8
    """Sliding-window stride in (upscaled) pixels."""
    hit_threshold: float = 0.0
    """SVM decision threshold; higher = fewer, surer detections."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale <= 1.0 or self.win_stride < 1 or self.min_side < 1:
            raise UsageError("hog needs scale > 1, win_stride >= 1 and min_side >= 1")


_DETECTOR = None


def hog_detector():
    """The process-wide HOG detector (building it costs ~1 ms; reuse it per worker)."""
    global _DETECTOR
    if _DETECTOR is None:
        import cv2

        _DETECTOR = cv2.HOGDescriptor()
        _DETECTOR.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return _DETECTOR


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
    rects, weights = hog_detector().detectMultiScale(
        image, hitThreshold=p.hit_threshold, winStride=(p.win_stride, p.win_stride), scale=p.scale
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
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1) / f
        out.append((boxes.astype(np.float32), scores))
    return out
