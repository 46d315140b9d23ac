"""The box-quality benchmark's scoring (benchmarks/boxes_quality.py) on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest

from rhovid.benchmarks.boxes_quality import goals, score


def test_recall_boxes_per_frame_and_boxes_on_nothing():
    gt = np.float32([[0, 0, 10, 10], [20, 20, 40, 40]])
    ignored = np.float32([[60, 60, 64, 64]])  # too small to count for recall
    preds = [
        np.float32([[0, 0, 10, 12], [22, 22, 40, 40], [61, 61, 70, 70], [80, 80, 90, 90]]),  # IoU .83, .81; tiny; none
        np.float32([[0, 0, 10, 30]]),  # frame 2: IoU 0.33 with the first object only
    ]
    s = score(preds, [(gt, ignored), (gt, np.zeros((0, 4), np.float32))])
    assert s["recall50"] == pytest.approx(2 / 4) and s["recall30"] == pytest.approx(3 / 4)
    assert s["boxes_per_frame"] == 2.5 and s["objects_per_frame"] == 2
    assert s["on_nothing"] == pytest.approx(1 / 5)  # only the (80, 80) box touches nothing
    empty = score([np.zeros((0, 4), np.float32)], [(gt, ignored)])
    assert empty["recall50"] == 0 and empty["boxes_per_frame"] == 0 and empty["on_nothing"] == 0


def test_goals_say_met_or_not_with_the_numbers():
    rows = [{"set": s, "prior": p, "recall50": r} for s, p, r in [
        ("synthetic static", "random", 0.04), ("synthetic static", "slic", 0.2), ("synthetic static", "fh", 0.6),
        ("synthetic static", "hog", 0.01), ("synthetic static", "motion", 0.6),
        ("synthetic pan", "random", 0.04), ("synthetic pan", "slic", 0.2), ("synthetic pan", "fh", 0.6),
        ("synthetic pan", "hog", 0.0), ("synthetic pan", "motion", 0.45),
        ("vtest (weak)", "hog", 0.6), ("vtest (weak)", "hog, before", 0.0)]]
    text = "\n".join(goals(rows))
    assert "synthetic static: fh recall@0.5 0.600 vs random 0.040: met" in text
    assert "synthetic static: hog recall@0.5 0.010 vs random 0.040: NOT met (a person detector" in text
    assert "vtest: hog recall@0.5 0.600 vs 0.000 before (>= 4x): met" in text
    assert "motion panning / static recall@0.5 0.450 / 0.600 = 0.75 (>= 0.8): NOT met" in text
