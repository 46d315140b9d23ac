"""Moving-region boxes: a cheap prior neither paper has.

Two sources of "where is something moving":

- ``source="diff"`` (default): absolute difference between the frame and the frame ``gap``
  frames before it (after it for the first ``gap`` frames), blurred, thresholded, dilated;
  each connected component is a box.
- ``source="mv"``: the H.264 motion vectors the decoder already has (PyAV, codec option
  ``flags2=+export_mvs``), rasterised on an 8-px grid; cells moving more than
  ``mv_threshold`` px form the components. No pixel work beyond decoding, but intra
  frames (every GOP start) carry no vectors and yield no boxes.

Boxes are ranked by area like the segmenters'.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rhovid.errors import UsageError
from rhovid.store.regions import SelectParams

MV_CELL = 8  # px; H.264 partitions are 4..16 px, 8 keeps a 16x16 macroblock as 2x2 cells


@dataclass(frozen=True)
class MotionParams(SelectParams):
    """Connected components of moving pixels (frame differences or codec motion vectors)."""

    source: str = "diff"
    """diff (frame differences) or mv (codec motion vectors via PyAV export_mvs)."""
    gap: int = 1
    """diff: compare with the decoded frame this many frames earlier."""
    threshold: float = 12.0
    """diff: grey-level change (0..255) that counts as motion."""
    mv_threshold: float = 0.5
    """mv: motion in px (per frame) that counts as moving."""
    blur: int = 5
    """diff: Gaussian blur kernel (odd px) applied before thresholding, to ignore noise."""
    dilate: int = 7
    """Dilation kernel (px) joining nearby moving pixels into one region."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source not in ("diff", "mv"):
            raise UsageError(f"motion source must be 'diff' or 'mv', got {self.source!r}")
        if self.gap < 1 or self.blur < 1 or self.blur % 2 == 0 or self.dilate < 1 or self.threshold <= 0:
            raise UsageError("motion needs gap >= 1, odd blur >= 1, dilate >= 1 and threshold > 0")
        if self.mv_threshold < 0:
            raise UsageError(f"motion mv_threshold must be >= 0, got {self.mv_threshold}")

    def extra_inputs(self) -> tuple[str, ...]:
        return ("previous",) if self.source == "diff" else ("vectors",)


def motion_mask(frame: np.ndarray, previous: np.ndarray, p: MotionParams) -> np.ndarray:
    """(H, W) uint8 0/1 mask of pixels that changed between two (H, W, 3) RGB frames."""
    import cv2

    a = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    diff = cv2.GaussianBlur(cv2.absdiff(a, b), (p.blur, p.blur), 0)
    return (diff > p.threshold).astype(np.uint8)


def component_boxes(mask: np.ndarray, dilate: int, cell: int = 1) -> np.ndarray:
    """Boxes (M, 4) float32 x0 y0 x1 y1 of the 8-connected components of a dilated 0/1 mask.

    ``cell`` scales grid coordinates (motion-vector cells) back to pixels.
    """
    import cv2

    if dilate > 1:
        k = max(1, dilate // cell)
        mask = cv2.dilate(mask, np.ones((k, k), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    s = stats[1:n, :4].astype(np.float32)  # row 0 is the background
    return np.concatenate([s[:, :2], s[:, :2] + s[:, 2:]], axis=1) * cell


def decode_motion_vectors(mp4: bytes, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames and their motion magnitude on an 8-px grid, from the codec's motion vectors.

    One decoding pass gives both, so the ``mv`` source costs one decode like the others.

    Args:
        mp4: a whole video (or fragment slice) PyAV can open.
        indices: increasing frame indices (local to ``mp4``) to return.

    Returns:
        rgb (N, H, W, 3) uint8 and magnitude (N, ceil(H/8), ceil(W/8)) float32 in px (0 where
        there is no vector, e.g. on I-frames).

    Raises:
        IndexError: an index past the last decodable frame.
    """
    import av

    wanted = {int(i): k for k, i in enumerate(indices)}
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"flags2": "+export_mvs"}
        h, w = stream.codec_context.height, stream.codec_context.width
        rgb = np.zeros((len(wanted), h, w, 3), np.uint8)
        mag = np.zeros((len(wanted), -(-h // MV_CELL), -(-w // MV_CELL)), np.float32)
        last, seen = (max(wanted) if wanted else -1), 0
        for i, frame in enumerate(container.decode(stream)):
            if i > last:
                break
            if i not in wanted:
                continue
            seen += 1
            rgb[wanted[i]] = frame.to_ndarray(format="rgb24")
            mvs = frame.side_data.get("MOTION_VECTORS")
            if mvs is not None and len(mvs):
                _rasterise(mvs.to_ndarray(), mag[wanted[i]])
    if seen < len(wanted):
        raise IndexError(f"frame {last} is past the last decodable frame")
    return rgb, mag


def _rasterise(v: np.ndarray, grid: np.ndarray) -> None:
    """Max motion magnitude of every block into the grid cells the block covers."""
    scale = np.maximum(v["motion_scale"].astype(np.float32), 1.0)
    mag = np.hypot(v["motion_x"] / scale, v["motion_y"] / scale).astype(np.float32)
    x0 = v["dst_x"].astype(np.int64) - v["w"] // 2
    y0 = v["dst_y"].astype(np.int64) - v["h"] // 2
    gh, gw = grid.shape
    for oy in range(0, 16, MV_CELL):  # blocks are at most 16 px: <= 2x2 cells each
        for ox in range(0, 16, MV_CELL):
            ok = (ox < v["w"]) & (oy < v["h"])
            gy = np.clip((y0[ok] + oy) // MV_CELL, 0, gh - 1)
            gx = np.clip((x0[ok] + ox) // MV_CELL, 0, gw - 1)
            np.maximum.at(grid, (gy, gx), mag[ok])


def motion_boxes(
    frames: np.ndarray, p: MotionParams, previous: np.ndarray | None = None, vectors: np.ndarray | None = None
) -> list[tuple[np.ndarray, None]]:
    """Candidate boxes per frame around moving regions.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        p: parameters.
        previous: (N, H, W, 3) the frames ``p.gap`` earlier (``source="diff"``).
        vectors: (N, H/8, W/8) motion magnitude from ``decode_motion_vectors`` (``source="mv"``).

    Returns:
        N pairs (boxes (M, 4) float32 x0 y0 x1 y1, None).
    """
    out = []
    for i, frame in enumerate(frames):
        if p.source == "diff":
            if previous is None:
                raise ValueError("motion source 'diff' needs the previous frames")
            boxes = component_boxes(motion_mask(frame, previous[i], p), p.dilate)
        else:
            if vectors is None:
                raise ValueError("motion source 'mv' needs motion vectors")
            mask = (vectors[i] > p.mv_threshold).astype(np.uint8)
            boxes = component_boxes(mask, p.dilate, MV_CELL)
        out.append((boxes, None))
    return out
