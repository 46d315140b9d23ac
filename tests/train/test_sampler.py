"""Properties of the pure sampler over many seeds (no data needed)."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from rhovid.train.augment import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipAug,
    apply_clip,
    blur_window,
    colour_affine,
    resize_crop,
)
from rhovid.train.data_config import DataConfig
from rhovid.train.sampler import (
    SamplePlan,
    clip_span,
    gop_cover,
    map_boxes,
    plan_sample,
    sample_seed,
)

META = {"key": "v0", "num_frames": 30 * 120, "fps": 30.0, "width": 160, "height": 120, "label": 3}


@pytest.mark.parametrize("timespan,gap", [(1.0, 0.0), (10.0, 2.0), (60.0, 0.0), (60.0, 30.0)])
def test_clips_in_range_within_timespan_and_gap(timespan, gap):
    spec = DataConfig(rho=3, frames=8, stride=4, timespan_s=timespan, min_gap_s=gap, crop=64)
    spans = []
    for seed in range(300):
        plan = plan_sample(META, seed, spec)
        assert len(plan.clips) == 3
        starts = [c.frames[0] for c in plan.clips]
        for c in plan.clips:
            assert list(np.diff(c.frames)) == [4] * 7  # stride exact
            assert 0 <= c.frames[0] and c.frames[-1] < META["num_frames"]
            assert c.start_s == c.frames[0] / 30.0
        d = np.abs(np.subtract.outer(starts, starts))
        assert d.max() <= round(timespan * 30)
        gap_frames = min(round(gap * 30), round(timespan * 30) // 4)  # clamped to span / (2 (rho - 1))
        assert d[~np.eye(3, dtype=bool)].min() >= gap_frames
        spans.append(d.max())
    # the timespan is used, not just respected: some pairs come close to the maximum
    assert max(spans) >= 0.8 * round(timespan * 30)


def test_clip_order_is_shuffled():
    spec = DataConfig(rho=2, timespan_s=60.0, crop=64)
    first_earlier = sum(plan_sample(META, s, spec).clips[0].frames[0] <
                        plan_sample(META, s, spec).clips[1].frames[0] for s in range(200))
    assert 60 < first_earlier < 140


def test_short_video_is_clamped():
    meta = dict(META, num_frames=20)
    spec = DataConfig(rho=4, frames=8, stride=8, timespan_s=60.0, min_gap_s=10.0, crop=64)
    for seed in range(50):
        plan = plan_sample(meta, seed, spec)
        for c in plan.clips:
            assert c.frames[0] == 0 and c.frames[-1] == 19  # last frame repeated
    meta = dict(META, num_frames=120)  # room for starts 0..63 only: the 10 s gap is clamped
    for seed in range(50):
        starts = sorted(c.frames[0] for c in plan_sample(meta, seed, spec).clips)
        assert starts[-1] <= 120 - clip_span(spec)


def test_deterministic_and_json_roundtrip():
    spec = DataConfig(rho=2, crop=64)
    a = plan_sample(META, 7, replace(spec, boxes="random"))
    b = plan_sample(META, 7, replace(spec, boxes="random"))
    assert a == b
    assert SamplePlan.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert plan_sample(META, 8, replace(spec, boxes="random")) != a
    assert sample_seed(0, 1, "k") == sample_seed(0, 1, "k") != sample_seed(0, 2, "k")


def test_augmentation_ranges():
    spec = DataConfig(rho=2, crop=64)
    flips = colour = gray = blur = 0
    n = 0
    for seed in range(400):
        for c in plan_sample(META, seed, spec).clips:
            x0, y0, w, h = c.aug.crop
            assert 0 <= x0 and 0 <= y0 and x0 + w <= 160 and y0 + h <= 120
            area = w * h / (160 * 120)
            assert 0.07 <= area <= 1.0
            flips += c.aug.flip
            colour += bool(c.aug.colour_ops)
            gray += c.aug.grayscale
            blur += c.aug.blur_sigma > 0
            if c.aug.blur_sigma:
                assert 0.1 <= c.aug.blur_sigma <= 2.0
            for name, f in c.aug.colour_ops:
                lim = (-0.1, 0.1) if name == "hue" else (0.6, 1.4)
                assert lim[0] <= f <= lim[1]
            n += 1
    assert abs(flips / n - 0.5) < 0.07 and abs(colour / n - 0.8) < 0.06
    assert abs(gray / n - 0.2) < 0.05 and abs(blur / n - 0.5) < 0.07


def test_store_boxes_mapped_clipped_padded():
    calls = []

    def lookup(frames):
        calls.append(list(frames))
        # one box covering the whole frame, one tiny, one outside any crop (dropped), one half
        boxes = np.array([[[0, 0, 160, 120], [10, 10, 10.5, 11], [-50, -50, -40, -40], [80, 0, 160, 120]]], np.float32)
        return boxes, np.array([4]), None

    spec = DataConfig(rho=2, crop=64)
    for seed in range(100):
        plan = plan_sample(META, seed, replace(spec, boxes="slic-x", max_boxes=5), lookup=lookup)
        for c in plan.clips:
            assert calls.pop(0) == [c.frames[spec.frames // 2]]
            b, m = np.asarray(c.boxes), np.asarray(c.box_mask)
            assert m[0] and np.allclose(b[0], [0, 0, 64, 64])  # whole frame -> whole crop
            assert not m[2:].any() and (b[m.sum():] == 0).all()


def test_map_boxes_flip_and_scale():
    aug = ClipAug(crop=(10, 20, 100, 50), size=50, flip=True)
    b, m = map_boxes(np.array([[10, 20, 60, 45]]), aug, 3)
    assert m.tolist() == [True, False, False]
    assert np.allclose(b[0], [25, 0, 50, 25])  # x: (0..50)*0.5 -> 0..25, flipped -> 25..50


def test_eval_views_deterministic():
    spec = DataConfig(rho=2, frames=8, stride=8, crop=64)
    plan = plan_sample(META, 1, spec, evaluation=True, clips_per_video=3, spatial_crops=("left", "centre", "right"))
    assert plan == plan_sample(META, 99, spec, evaluation=True, clips_per_video=3,
                               spatial_crops=("left", "centre", "right"))
    assert len(plan.clips) == 9
    assert [c.aug.crop[0] for c in plan.clips[:3]] == [0, 20, 40]
    starts = [c.frames[0] for c in plan.clips[::3]]
    last = META["num_frames"] - clip_span(spec)
    assert starts == [round(last / 6), round(last / 2), round(5 * last / 6)]
    assert all(not c.aug.flip and not c.aug.colour_ops and c.aug.blur_sigma == 0 for c in plan.clips)


def test_gop_cover():
    assert gop_cover([33, 41, 49], 16) == 49 - 32 + 1


def test_colour_affine_identity_and_gray():
    assert np.allclose(colour_affine(ClipAug(crop=(0, 0, 1, 1), size=1)), np.eye(3, 4))
    A = colour_affine(ClipAug(crop=(0, 0, 1, 1), size=1, grayscale=True))
    rgb = np.array([0.2, 0.5, 0.9])
    y = A[:, :3] @ rgb + A[:, 3]
    assert np.allclose(y, y[0]) and np.isclose(y[0], 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9)
    # hue rotation keeps luma; a full turn is the identity
    A = colour_affine(ClipAug(crop=(0, 0, 1, 1), size=1, colour_ops=(("hue", 0.1),)))
    assert np.isclose(np.array([0.299, 0.587, 0.114]) @ (A[:, :3] @ rgb), 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9)
    A = colour_affine(ClipAug(crop=(0, 0, 1, 1), size=1, colour_ops=(("hue", 1.0),)))
    assert np.allclose(A, np.eye(3, 4))


def test_apply_clip_crop_flip_normalise():
    frames = np.zeros((2, 12, 16, 3), np.uint8)
    frames[:, :, :8] = 255  # left half white
    aug = ClipAug(crop=(4, 2, 8, 8), size=8, flip=True)
    out = apply_clip(frames, aug, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (3, 2, 8, 8)
    # crop columns 4..11: 4..7 white, 8..11 black; flipped -> right half white
    assert np.allclose(out[:, :, :, 4:], 1) and np.allclose(out[:, :, :, :4], 0)
    out = apply_clip(frames, ClipAug(crop=(4, 2, 8, 8), size=8))
    assert np.isclose(out[0, 0, 0, 0], (1 - 0.45) / 0.225)


@pytest.mark.parametrize("flip, grayscale, sigma", [(False, False, 0.0), (True, False, 1.2), (True, True, 0.7)])
def test_apply_clip_matches_the_written_out_definition(flip, grayscale, sigma):
    """crop+resize -> /255 -> colour affine, clip to [0, 1] -> blur -> flip -> (x - mean) / std."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    aug = ClipAug(crop=(5, 3, 30, 24), size=16, flip=flip, grayscale=grayscale, blur_sigma=sigma,
                  colour_ops=(("brightness", 1.3), ("contrast", 0.7), ("saturation", 1.4), ("hue", 0.05)))
    x = resize_crop(frames, aug.crop, aug.size).astype(np.float64) / 255
    A = colour_affine(aug)
    x = np.clip(x @ A[:, :3].T + A[:, 3], 0, 1).astype(np.float32)
    if sigma:
        k = blur_window(sigma)
        x = np.stack([cv2.GaussianBlur(f, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101) for f in x])
    if flip:
        x = x[:, :, ::-1]
    want = ((x - np.float32(KINETICS_MEAN)) / np.float32(KINETICS_STD)).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(apply_clip(frames, aug), want, atol=2e-5)
