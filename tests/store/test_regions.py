"""Label maps -> boxes, post-processing, and the per-frame priors on numpy frames."""

from __future__ import annotations

import numpy as np
import pytest

from rhovid.store.boxsets import make_params
from rhovid.store.priors import METHODS
from rhovid.store.priors.fh import fh_labels
from rhovid.store.priors.motion import motion_boxes
from rhovid.store.priors.slic import slic_labels
from rhovid.store.regions import label_boxes, select_boxes


def naive_label_boxes(labels, background=None):
    out, pixels = [], []
    for lab in np.unique(labels):
        if lab == background:
            continue
        ys, xs = np.nonzero(labels == lab)
        out.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        pixels.append(len(xs))
    return np.array(out, np.float32).reshape(-1, 4), np.array(pixels)


def scene(n=3, h=96, w=128, seed=0):
    """Frames with a textured background and two bright moving rectangles (RGB uint8)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 120, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
    frames = np.repeat(base[None], n, 0)
    for i in range(n):
        frames[i, 20:50, 10 + 6 * i : 40 + 6 * i] = (230, 40, 40)
        frames[i, 60:90, 70 - 4 * i : 110 - 4 * i] = (40, 40, 230)
    return frames


@pytest.mark.parametrize("seed", range(5))
def test_label_boxes_equals_naive_loop(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 40, (37, 53))
    labels[labels == 7] = 8  # a missing label in the middle of the range
    labels[:5, :5] = 60  # a label far above the others
    got, pix = label_boxes(labels)
    want, want_pix = naive_label_boxes(labels)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(pix, want_pix)
    got_bg, _ = label_boxes(labels, background=0)
    np.testing.assert_array_equal(got_bg, naive_label_boxes(labels, background=0)[0])


def test_label_boxes_on_real_superpixels_and_errors():
    labels = slic_labels(scene(1)[0], make_params("slic"))
    np.testing.assert_array_equal(label_boxes(labels)[0], naive_label_boxes(labels)[0])
    with pytest.raises(ValueError, match="2-D"):
        label_boxes(np.zeros((2, 2, 2), int))
    with pytest.raises(ValueError, match="negative"):
        label_boxes(np.array([[0, -1]]))


def test_select_boxes_clips_drops_and_ranks():
    boxes = np.array(
        [
            [0, 0, 100, 80],  # whole frame: dropped (area > 0.9)
            [10, 10, 12, 50],  # 2 px wide: degenerate, dropped
            [5, 5, 25, 25],  # area 400
            [-10, 40, 30, 90],  # clipped to 0,40,30,80: area 1200
            [50, 50, 60, 60],  # area 100
        ],
        np.float32,
    )
    b, s = select_boxes(boxes, 100, 80, max_boxes=2, min_size=4, max_area=0.9)
    assert s is None
    np.testing.assert_array_equal(b, [[0, 40, 30, 80], [5, 5, 25, 25]])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.7], np.float32)
    b, s = select_boxes(boxes, 100, 80, max_boxes=3, min_size=4, max_area=0.9, scores=scores)
    np.testing.assert_array_equal(s, np.array([0.7, 0.2, 0.1], np.float32))
    np.testing.assert_array_equal(b[0], [50, 50, 60, 60])


def test_select_boxes_frame_fraction_range_and_nms():
    boxes = np.array(
        [
            [0, 0, 60, 40],  # 60 % of the width: above max_frac 0.5, dropped
            [0, 0, 4, 20],  # 4 % of the width: below min_frac 0.05, dropped
            [10, 10, 40, 40],  # 30x30, area 900: kept first
            [12, 12, 40, 40],  # 28x28, IoU 784/900 = 0.87 with the first: suppressed
            [30, 30, 50, 50],  # 20x20, IoU 100/1200 = 0.08 with the first: kept
            [60, 10, 80, 30],  # 20x20, disjoint: kept
        ],
        np.float32,
    )
    b, _ = select_boxes(boxes, 100, 80, 16, 4, 0.9, frac=(0.05, 0.5), nms_iou=0.5)
    np.testing.assert_array_equal(b, [[10, 10, 40, 40], [30, 30, 50, 50], [60, 10, 80, 30]])
    b, _ = select_boxes(boxes, 100, 80, 2, 4, 0.9, frac=(0.05, 0.5), nms_iou=0.5)
    assert len(b) == 2  # K counts boxes that survive suppression
    b, _ = select_boxes(boxes, 100, 80, 16, 4, 0.9)  # defaults: no range, no suppression
    assert len(b) == 6
    scores = np.array([0.1, 0.1, 0.5, 0.9, 0.8, 0.2], np.float32)  # detectors: NMS by score rank
    b, s = select_boxes(boxes, 100, 80, 16, 4, 0.9, scores=scores, frac=(0.05, 0.5), nms_iou=0.5)
    np.testing.assert_array_equal(s, np.float32([0.9, 0.8, 0.2]))
    np.testing.assert_array_equal(b[0], [12, 12, 40, 40])


def assert_valid(result, h, w, min_size=4, max_area=0.9, k=16):
    boxes, scores = select_boxes(result[0], w, h, k, min_size, max_area, result[1])
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] - boxes[:, 0] >= min_size).all() and (boxes[:, 3] - boxes[:, 1] >= min_size).all()
    return boxes


@pytest.mark.parametrize("method", ["slic", "fh"])
def test_opencv_and_skimage_paths_both_give_valid_boxes(method):
    frames = scene(2)
    params_cls, fn = METHODS[method]
    counts = {}
    for impl in ("opencv", "skimage"):
        # a 128x96 scene: SLIC at 60 superpixels (16 px) so some superpixel fits inside the 30-px rectangle
        p = make_params(method, {"impl": impl, **({"segments": 60} if method == "slic" else {})})
        per_frame = fn(frames, p)
        assert len(per_frame) == len(frames)
        kept = [assert_valid(r, 96, 128) for r in per_frame]
        counts[impl] = [len(k) for k in kept]
        assert min(counts[impl]) >= 2, (impl, counts)
        # segments follow the red rectangle's edges: FH (both) finds it as one segment; OpenCV
        # SLIC superpixels do not cross it, so some box lies inside it
        red = np.array([10, 20, 40, 50], np.float32)
        cand = per_frame[0][0]
        if method == "slic" and impl == "opencv":
            inside = (cand[:, :2] >= red[:2] - 1).all(1) & (cand[:, 2:] <= red[2:] + 1).all(1)
            assert inside.any()
        if method == "fh":
            assert (np.abs(cand - red).max(1) <= 2).any(), impl
    p = make_params(method, {"impl": "skimage"})
    labels = slic_labels(frames[0], p) if method == "slic" else fh_labels(frames[0], p, p.scales[0])
    assert labels.shape == (96, 128)


def test_hog_boxes_are_valid_frame_pixels():
    fn = METHODS["hog"][1]
    frames = scene(2)
    for boxes, scores in fn(frames, make_params("hog", {"hit_threshold": -1.0})):
        assert scores.dtype == np.float32 and len(scores) == len(boxes)
        assert_valid((boxes, scores), 96, 128, min_size=0, max_area=1.0)


def test_motion_diff_box_covers_the_moving_square():
    prev = np.zeros((1, 80, 100, 3), np.uint8)
    cur = prev.copy()
    prev[0, 20:40, 20:40] = 200
    cur[0, 20:40, 30:50] = 200
    ((boxes, scores),) = motion_boxes(cur, make_params("motion"), previous=prev)
    assert scores is None and len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    # changed pixels span x 20..50, y 20..40; blur (5) and dilation (7) widen that by a few px
    assert 14 <= x0 <= 20 and 14 <= y0 <= 20 and 50 <= x1 <= 56 and 40 <= y1 <= 46
    ((still, _),) = motion_boxes(cur, make_params("motion"), previous=cur)
    assert len(still) == 0
