"""ConST-CL's random boxes against the authors' generator (const_cl/datasets/video_ssl_inputs.py:43-75).

The laws are derived here from the authors' formulas, not from rhovid's code: boxes in coordinates
normalised to the output crop, x0, y0 ~ U(0, 1), w ~ U(0.1, 0.5), h = w * U(0.5, 2), ends clipped
at 0.999. TF draws the four uniforms from one stream (same op seed 1234 in a tf.data map; checked
with TF 2.21), so "shared" has one u per box; "independent" is the code's evident intent.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhovid.train.data_config import DataConfig
from rhovid.train.sampler import plan_sample, random_boxes

N = 200_000
C = 1.0 - 1e-3


def _unit(draws, seed=0):
    return random_boxes(np.random.default_rng(seed), (224, 224), N, draws).astype(np.float64) / 224


def test_shared_draw_is_one_uniform_per_box():
    b = _unit("shared")
    u = b[:, 0]
    assert np.array_equal(b[:, 0], b[:, 1])  # x0 == y0: every box starts on the diagonal
    np.testing.assert_allclose(b[:, 2], np.minimum(u + 0.1 + 0.4 * u, C), atol=1e-6)
    np.testing.assert_allclose(b[:, 3], np.minimum(u + (0.1 + 0.4 * u) * (0.5 + 1.5 * u), C), atol=1e-6)
    # start uniform on [0, 1): mean 1/2, variance 1/12
    assert u.mean() == pytest.approx(0.5, abs=0.005) and u.var() == pytest.approx(1 / 12, abs=0.002)
    # truncated at the right or bottom border iff u + (0.1 + 0.4u)(0.5 + 1.5u) > 0.999, i.e.
    # 0.6u^2 + 1.35u + 0.05 - 0.999 > 0: u > u* (the y end always passes first)
    u_star = (-1.35 + np.sqrt(1.35**2 + 4 * 0.6 * (C - 0.05))) / 1.2
    truncated = (b[:, 2] >= C - 1e-6) | (b[:, 3] >= C - 1e-6)
    assert truncated.mean() == pytest.approx(1 - u_star, abs=0.004)  # 43.8 %
    assert 1 - u_star == pytest.approx(0.4376, abs=1e-4)


def test_independent_draws_follow_the_authors_laws():
    b = _unit("independent")
    x0, y0, x1, y1 = b.T
    assert abs(np.corrcoef(x0, y0)[0, 1]) < 0.01
    # fraction truncated: 1 - E_{w,a}[P(x0 <= c - w) P(y0 <= c - w a)], w ~ U(.1,.5), a ~ U(.5,2)
    w = np.linspace(0.1, 0.5, 801)[:, None]
    a = np.linspace(0.5, 2.0, 801)[None, :]
    p_inside = (np.clip(C - w, 0, 1) * np.clip(C - w * a, 0, 1)).mean()
    truncated = (x1 >= C - 1e-6) | (y1 >= C - 1e-6)
    assert truncated.mean() == pytest.approx(1 - p_inside, abs=0.004)
    assert 0.5 < 1 - p_inside < 0.6  # "about half" of the boxes
    # untruncated boxes: width U(0.1, 0.5) would be flat without the clipping bias; their
    # aspect h / w lies in [0.5, 2]
    inside = ~truncated
    aspect = (y1 - y0)[inside] / (x1 - x0)[inside]
    assert aspect.min() >= 0.5 - 1e-6 and aspect.max() <= 2.0 + 1e-6
    # the aspect law before clipping: E[a | box inside] from the same integral
    weight = np.clip(C - w, 0, 1) * np.clip(C - w * a, 0, 1)
    expected = (weight * a).sum() / weight.sum()
    assert aspect.mean() == pytest.approx(expected, abs=0.01)


def test_plan_keeps_every_box_and_does_not_flip_them():
    cfg = DataConfig(rho=2, crop=64, boxes="random", max_boxes=6)
    meta = {"key": "v0", "num_frames": 3600, "fps": 30.0, "width": 160, "height": 120, "label": 3}
    flipped = 0
    for seed in range(300):
        for c in plan_sample(meta, seed, cfg).clips:
            b, m = np.asarray(c.boxes), np.asarray(c.box_mask)
            assert b.shape == (6, 4) and m.all()  # all valid, as the authors' mask (ones)
            assert (b >= 0).all() and (b[:, 2:] <= 64 * C + 1e-4).all()
            # drawn after crop and flip: clipped only at the right / bottom, never mirrored
            assert np.array_equal(b[:, 0], b[:, 1])
            flipped += c.aug.flip
    assert flipped > 100
    with pytest.raises(ValueError, match="draws"):
        random_boxes(np.random.default_rng(0), (8, 8), 2, "uniform")
