"""Moving-region boxes: a cheap prior neither paper has.

Two sources of "where is something moving":

- ``source="diff"`` (default): absolute difference between the frame and the frame ``gap``
  frames before it (after it for the first ``gap`` frames), blurred, thresholded, dilated;
  each connected component is a box. With ``compensate`` (default ``affine``) the
  earlier frame is first warped by the camera's own motion between the two
  (``rhovid.store.priors.camera_motion``), so a panning or shaking camera gives boxes on what
  moves in the scene instead of on every background edge; a static camera's frames are
  compared unaligned, exactly as without compensation.
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
from rhovid.store.priors.camera_motion import align_previous, estimate_camera_motion
from rhovid.store.regions import SelectParams

MV_CELL = 8  # px; H.264 partitions are 4..16 px, 8 keeps a 16x16 macroblock as 2x2 cells


@dataclass(frozen=True)
class MotionParams(SelectParams):
    """Connected components of moving pixels (frame differences or codec motion vectors)."""

    source: str = "diff"
    """diff (frame differences) or mv (codec motion vectors via PyAV export_mvs)."""
    compensate: str = "affine"
    """Camera motion removed first: homography, affine (diff: tracked corners + RANSAC; mv: median vector) or none."""
    gap: int = 1
    """diff: compare with the frame this many source frames earlier (frames ingest repeated to reach its fps are skipped)."""
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
        if self.compensate not in ("homography", "affine", "none"):
            raise UsageError(f"motion compensate must be 'homography', 'affine' or 'none', got {self.compensate!r}")

    def extra_inputs(self) -> tuple[str, ...]:
        return ("previous",) if self.source == "diff" else ("vectors",)


def reference_gap(meta: dict, gap: int) -> int:
    """Stored frames between a frame and the one ``gap`` source frames before it.

    Ingest resamples to a constant rate by repeating frames (a 10 fps source at 30 fps shows
    every frame 3 times), and a repeated frame has no difference at all, so the gap counts
    source frames: ``gap * ceil(fps / source fps)`` stored frames (``gap`` when the source
    rate is unknown or not lower).
    """
    src = (meta.get("source_info") or {}).get("fps")
    fps = float(meta["fps"])
    if not src or float(src) <= 0 or float(src) >= fps:
        return gap
    return gap * int(np.ceil(fps / float(src) - 1e-6))


def motion_mask(frame: np.ndarray, previous: np.ndarray, p: MotionParams) -> np.ndarray:
    """(H, W) uint8 0/1 mask of pixels that changed between two (H, W, 3) RGB frames, after
    removing the camera's motion (``p.compensate``); pixels the aligned frame does not cover are 0."""
    import cv2

    a = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    covered = None
    if p.compensate != "none":
        b, covered = align_previous(b, estimate_camera_motion(a, b, p.compensate))
    diff = cv2.GaussianBlur(cv2.absdiff(a, b), (p.blur, p.blur), 0)
    mask = (diff > p.threshold).astype(np.uint8)
    if covered is not None:
        mask[~covered] = 0
    return mask


def component_boxes(mask: np.ndarray, dilate: int, cell: int = 1) -> np.ndarray:
    """Boxes (M, 4) float32 x0 y0 x1 y1 of groups of moving pixels of a 0/1 mask.

    Pixels closer than ``dilate`` px form one group (8-connected components of the dilated
    mask); each box bounds the group's own pixels, not the dilation, so a box is as tight as
    the motion it covers. ``cell`` scales grid coordinates (motion-vector cells) back to pixels.
    """
    import cv2

    from rhovid.store.regions import label_boxes

    grouped = mask
    if dilate > 1:
        k = max(1, dilate // cell)
        grouped = cv2.dilate(mask, np.ones((k, k), np.uint8))
    n, labels = cv2.connectedComponents(grouped, connectivity=8)
    if n <= 1:
        return np.zeros((0, 4), np.float32)
    boxes, _ = label_boxes(np.where(mask > 0, labels, 0), background=0)
    return boxes * cell


def decode_motion_vectors(
    mp4: bytes, indices: Sequence[int], compensate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames and their motion magnitude on an 8-px grid, from the codec's motion vectors.

    One decoding pass gives both, so the ``mv`` source costs one decode like the others.

    Args:
        mp4: a whole video (or fragment slice) PyAV can open.
        indices: increasing frame indices (local to ``mp4``) to return.
        compensate: subtract each frame's median vector (per reference direction: past,
            future) before taking magnitudes: the camera's dominant motion.

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
                _rasterise(mvs.to_ndarray(), mag[wanted[i]], compensate)
    if seen < len(wanted):
        raise IndexError(f"frame {last} is past the last decodable frame")
    return rgb, mag


def _rasterise(v: np.ndarray, grid: np.ndarray, compensate: bool = False) -> None:
    """Max motion magnitude of every block into the grid cells the block covers."""
    scale = np.maximum(v["motion_scale"].astype(np.float32), 1.0)
    dx, dy = v["motion_x"] / scale, v["motion_y"] / scale
    if compensate:  # the dominant vector of each reference direction is the camera's
        dx, dy = dx.astype(np.float32), dy.astype(np.float32)
        for direction in np.unique(np.sign(v["source"])):
            sel = np.sign(v["source"]) == direction
            dx[sel] -= np.median(dx[sel])
            dy[sel] -= np.median(dy[sel])
    mag = np.hypot(dx, dy).astype(np.float32)
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
