"""Spatial and colour augmentation: the ranges (``AugmentConfig``), the parameters the sampler draws
per clip (``ClipAug``), and the numbers both executors apply.

The sampler (``train/sampler.py``) draws one ``ClipAug`` per clip from the ``AugmentConfig`` of
its view; this module turns it into numbers both executors use identically: ``colour_affine`` (a
3x4 matrix on RGB in [0, 1]), the blur sigma and window, the solarisation flag. The CPU executor
(``apply_clip``, OpenCV/torch) and the DALI pipeline (``train/dali_pipeline.py``) run the same
sequence, so the CPU tests cover what the GPU runs. Every parameter is drawn once per clip, so
every frame of a clip is transformed identically (temporally consistent augmentation).

Two sequences, the two papers' (``blur_stage``):

- "frame" (PySlowFast, rho-methods): colour jitter, grayscale and blur run on the decoded frames
  before the spatial crop (``kinetics.py:378-387`` calls ``color_jitter_video_ssl`` before
  ``spatial_sampling``), the blur sigma in pixels of the decoded frame; then the random resized
  crop, resize, flip (``utils.py:153-176``). Blur borders are mirrored.
- "crop" (tensorflow/models video_ssl, ConST-CL): random crop, resize and flip first, then colour
  jitter, grayscale, blur (a fixed ``blur_window``, zero padding: ``tf.nn.depthwise_conv2d``
  'SAME') and solarisation on the output crop (``video_ssl_input.py`` ``_process_image``).

Documented deviations, shared by both papers' presets, keep the colour op one affine map (exactly
reproducible on GPU): contrast blends towards the constant 0.5 (DALI's ``contrast_center``) instead
of the image mean, saturation blends with BT.601 luma and hue rotates chroma in YIQ space instead
of HSV, and the composed map is clamped once instead of after every op; the frame-stage blur is a
true Gaussian (3 sigma window) instead of Pillow's box-blur approximation, applied to each frame
instead of PIL's stacked frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rhovid.errors import UsageError

# Kinetics RGB mean/std in [0, 1] (PySlowFast DATA.MEAN / DATA.STD, defaults.py:687-693).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# ITU-R BT.601 luma weights (torchvision rgb_to_grayscale uses the same).
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class AugmentConfig:
    """Spatial and colour augmentation ranges of one view (defaults: PySlowFast's rho-BYOL / rho-MoCo)."""

    crop_mode: Literal["rrc", "tf_box", "jitter"] = "rrc"
    """'rrc' = PySlowFast/torchvision random resized crop (``_get_param_spatial_crop``, 10 tries);
    'tf_box' = TensorFlow's ``sample_distorted_bounding_box`` (100 tries, uniform aspect, uniform height);
    'jitter' = short-side jitter + random square crop."""
    area: tuple[float, float] = (0.2, 0.766)
    """Fraction of the frame area ('rrc', 'tf_box'; ``TRAIN_JITTER_SCALES_RELATIVE``)."""
    aspect: tuple[float, float] = (0.75, 1.3333)
    """Aspect ratio w/h range ('rrc': log-uniform; 'tf_box': uniform; ``TRAIN_JITTER_ASPECT_RELATIVE``)."""
    short_side: tuple[int, int] = (256, 320)
    """'jitter' mode: the frame's short side is resized to U(a, b) before a random output-size square."""
    flip_p: float = 0.5
    """Probability of a horizontal flip."""
    colour_p: float = 0.8
    """Probability of applying colour jitter to a clip."""
    brightness: float = 0.6
    """Brightness factor drawn from U(max(0, 1 - b), 1 + b) (``SSL_COLOR_BRI_CON_SAT[0]``)."""
    contrast: float = 0.6
    """Contrast factor drawn from U(max(0, 1 - c), 1 + c) (towards 0.5, see module docstring)."""
    saturation: float = 0.6
    """Saturation factor drawn from U(max(0, 1 - s), 1 + s)."""
    hue: float = 0.15
    """Hue rotation drawn from U(-h, h) turns (YIQ chroma rotation; ``SSL_COLOR_HUE``)."""
    grayscale_p: float = 0.2
    """Probability of converting the clip to grayscale (after the colour jitter)."""
    blur_p: float = 0.5
    """Probability of a Gaussian blur."""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """Blur sigma range, in pixels of the stage's image (see ``blur_stage`` / ``blur_frame_short_side``)."""
    blur_stage: Literal["frame", "crop"] = "frame"
    """Where colour, grayscale and blur run: "frame" = decoded frame before the crop (PySlowFast),
    "crop" = output crop after resize and flip (tensorflow/models video_ssl, ConST-CL)."""
    blur_frame_short_side: int | None = 256
    """"frame" stage: the sigma is drawn in pixels of a frame with this short side (PySlowFast decodes at
    ``TRAIN_JITTER_SCALES[0]``) and scaled to the stored frame; None = stored pixels."""
    blur_window: int = 0
    """Blur window in pixels (odd); 0 = 2 ceil(3 sigma) + 1. ConST-CL: 23 (``kernel_size = 224 // 10``)."""
    solarize_p: float = 0.0
    """Probability of solarising the clip (x -> 1 - x where x >= 0.5; "crop" stage, after the blur)."""


@dataclass(frozen=True)
class ClipAug:
    """Drawn augmentation of one clip (all frames share it). JSON-serialisable."""

    crop: tuple[int, int, int, int]
    """Crop window x0, y0, w, h in stored-video pixels (integers, so both executors agree)."""
    size: int
    """Output side in pixels."""
    flip: bool = False
    """Horizontal flip after the crop."""
    colour_ops: tuple[tuple[str, float], ...] = ()
    """Colour jitter ops in application order: ('brightness'|'contrast'|'saturation'|'hue', factor)."""
    grayscale: bool = False
    """Convert to grayscale after the colour jitter."""
    blur_sigma: float = 0.0
    """Gaussian blur sigma in pixels of the stage's image (stored frame or output crop); 0 = no blur."""
    blur_window: int = 0
    """Odd blur window in pixels (0 when there is no blur)."""
    blur_stage: str = "frame"
    """"frame" (colour and blur before the crop, mirrored borders) or "crop" (after it, zero padding)."""
    solarize: bool = False
    """Solarise after the blur ("crop" stage)."""


def draw_clip_aug(rng: np.random.Generator, width: int, height: int, cfg: AugmentConfig, size: int) -> ClipAug:
    """Draw one clip's augmentation for a ``width`` x ``height`` video, output ``size`` x ``size``.

    Draw order (part of the seeded plan): crop, flip, colour (p, order, factors), grayscale,
    blur (p, sigma), solarise.
    """
    if cfg.crop_mode == "rrc":
        crop = _random_resized_crop(rng, width, height, cfg.area, cfg.aspect)
    elif cfg.crop_mode == "tf_box":
        crop = _tf_distorted_box(rng, width, height, cfg.area, cfg.aspect)
    elif cfg.crop_mode == "jitter":
        short = rng.uniform(cfg.short_side[0], cfg.short_side[1])
        side = max(1, min(width, height, round(size * min(width, height) / short)))
        crop = (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)), side, side)
    else:
        raise UsageError(f"crop_mode must be 'rrc', 'tf_box' or 'jitter', got {cfg.crop_mode!r}")
    if cfg.blur_stage not in ("frame", "crop"):
        raise UsageError(f"blur_stage must be 'frame' or 'crop', got {cfg.blur_stage!r}")
    flip = bool(rng.random() < cfg.flip_p)
    ops: list[tuple[str, float]] = []
    if rng.random() < cfg.colour_p:
        # torchvision ColorJitter / SimCLR's color_jitter_rand: the four ops in a random order,
        # each factor drawn independently.
        ranges = {
            "brightness": (max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
            "contrast": (max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
            "saturation": (max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
            "hue": (-cfg.hue, cfg.hue),
        }
        names = list(ranges)
        for i in rng.permutation(len(names)):
            lo, hi = ranges[names[i]]
            ops.append((names[i], float(rng.uniform(lo, hi))))
    grayscale = bool(rng.random() < cfg.grayscale_p)
    sigma = float(rng.uniform(*cfg.blur_sigma)) if rng.random() < cfg.blur_p else 0.0
    if sigma and cfg.blur_stage == "frame" and cfg.blur_frame_short_side:
        sigma *= min(width, height) / cfg.blur_frame_short_side
    window = (cfg.blur_window or blur_window(sigma)) if sigma else 0
    solarize = bool(rng.random() < cfg.solarize_p) if cfg.solarize_p else False
    return ClipAug(crop=crop, size=size, flip=flip, colour_ops=tuple(ops), grayscale=grayscale, blur_sigma=sigma,
                   blur_window=window, blur_stage=cfg.blur_stage, solarize=solarize)


def _random_resized_crop(rng, width, height, area, aspect) -> tuple[int, int, int, int]:
    # PySlowFast's _get_param_spatial_crop (transform.py:477-516) = torchvision's RandomResizedCrop:
    # 10 attempts, log-uniform aspect, then a centre crop with clamped ratio.
    total = width * height
    log_r = (math.log(aspect[0]), math.log(aspect[1]))
    for _ in range(10):
        target = total * rng.uniform(*area)
        ratio = math.exp(rng.uniform(*log_r))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return (int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h)
    in_ratio = width / height
    if in_ratio < min(aspect):
        w, h = width, round(width / min(aspect))
    elif in_ratio > max(aspect):
        h, w = height, round(height * max(aspect))
    else:
        w, h = width, height
    return ((width - w) // 2, (height - h) // 2, w, h)


def _tf_distorted_box(rng, width, height, area, aspect, attempts=100, min_covered=0.1) -> tuple[int, int, int, int]:
    # tf.image.sample_distorted_bounding_box with the whole image as the object box, as ConST-CL's
    # random_crop_resize calls it (preprocess_ops_3d.py: max_attempts=100, min_object_covered=0.1,
    # use_image_if_no_bounding_boxes), transcribed from GenerateRandomCrop in
    # tensorflow/core/kernels/image/sample_distorted_bounding_box_op.cc: the aspect ratio is uniform,
    # the height uniform between the heights of the smallest and largest area, offsets Uniform(n) in
    # [0, n). lrintf rounds half to even, as Python's round.
    min_area, max_area = area[0] * width * height, area[1] * width * height
    for _ in range(attempts):
        ratio = rng.random() * (aspect[1] - aspect[0]) + aspect[0]
        h = round(math.sqrt(min_area / ratio))
        max_h = round(math.sqrt(max_area / ratio))
        if round(max_h * ratio) > width:
            max_h = int((width + 0.5 - 1e-7) / ratio)
            if round(max_h * ratio) > width:
                max_h -= 1
        max_h = min(max_h, height)
        h = min(h, max_h)
        if h < max_h:
            h += int(rng.integers(0, max_h - h + 1))
        w = round(h * ratio)
        a = w * h
        if a < min_area:
            h += 1
            w = round(h * ratio)
            a = w * h
        if a > max_area:
            h -= 1
            w = round(h * ratio)
            a = w * h
        if a < min_area or a > max_area or w > width or h > height or w <= 0 or h <= 0:
            continue
        if a / (width * height) < min_covered:  # SatisfiesOverlapConstraints with the whole-image box
            continue
        y = int(rng.integers(0, height - h)) if h < height else 0
        x = int(rng.integers(0, width - w)) if w < width else 0
        return (x, y, w, h)
    return (0, 0, width, height)


def fixed_crop(width: int, height: int, size: int, position: str = "centre") -> ClipAug:
    """Deterministic evaluation crop: the largest square at left/centre/right (top/centre/bottom
    for portrait video), resized to ``size`` (= PySlowFast's short-side resize + 3-crop test)."""
    side = min(width, height)
    slack_x, slack_y = width - side, height - side
    frac = {"left": 0.0, "top": 0.0, "centre": 0.5, "center": 0.5, "right": 1.0, "bottom": 1.0}
    if position not in frac:
        raise ValueError(f"spatial crop must be left/centre/right, got {position!r}")
    x0, y0 = round(slack_x * frac[position]), round(slack_y * frac[position])
    return ClipAug(crop=(x0, y0, side, side), size=size)


def colour_affine(aug: ClipAug) -> np.ndarray:
    """The clip's colour transform as a (3, 4) float64 matrix ``[M | t]`` on RGB in [0, 1].

    ``rgb_out = clip(M @ rgb + t, 0, 1)``. Composed in ``aug.colour_ops`` order, then grayscale.
    """
    A = np.eye(4)
    gray = np.zeros((4, 4))
    gray[:3, :3] = np.tile(_LUMA, (3, 1))
    gray[3, 3] = 1
    for name, f in aug.colour_ops:
        step = np.eye(4)
        if name == "brightness":
            step[:3, :3] *= f
        elif name == "contrast":
            step[:3, :3] *= f
            step[:3, 3] = (1 - f) * 0.5
        elif name == "saturation":
            step = f * np.eye(4) + (1 - f) * gray
            step[3, 3] = 1
        elif name == "hue":
            c, s = math.cos(2 * math.pi * f), math.sin(2 * math.pi * f)
            rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
            step[:3, :3] = _YIQ2RGB @ rot @ _RGB2YIQ
        else:
            raise ValueError(f"unknown colour op {name!r}")
        A = step @ A
    if aug.grayscale:
        A = gray @ A
    return A[:3]


def has_colour(aug: ClipAug) -> bool:
    """Whether the clip's colour map is not the identity."""
    return bool(aug.colour_ops or aug.grayscale)


def blur_window(sigma: float) -> int:
    """Odd Gaussian window for ``sigma`` (3 sigma each side), shared by both executors."""
    return 2 * math.ceil(3 * sigma) + 1
