"""Spatial and colour augmentation: the parameters the sampler draws, and the CPU executor.

The sampler (``train/sampler.py``) draws one ``ClipAug`` per clip; this module turns it into
numbers both executors use identically: ``colour_affine`` (a 3x4 matrix on RGB in [0, 1]) and
``blur_window``. The CPU path applies them with OpenCV/numpy (``apply_clip``); the DALI path
(``train/dali_pipeline.py``) feeds the same numbers to ``fn.resize``/``fn.coord_transform``/
``fn.gaussian_blur``/``fn.crop_mirror_normalize``. Because the same numbers drive both,
the CPU tests cover the augmentation logic the GPU runs.

Defaults follow the rho-methods paper (Feichtenhofer et al. CVPR 2021, Sec. 3 / Appendix) as
released in PySlowFast's contrastive configs (MoCo v2 style): random resized crop with area
(0.08, 1) and aspect (3/4, 4/3), flip p 0.5, colour jitter p 0.8 with brightness/contrast/
saturation 0.4 and hue 0.1 in random order, grayscale p 0.2, Gaussian blur p 0.5 with sigma
U(0.1, 2.0). All parameters are drawn once per clip, so every frame of a clip is
transformed identically (temporally consistent augmentation, paper Sec. 3).

Two documented deviations keep the colour op affine and therefore exactly reproducible on
GPU: contrast blends towards the constant 0.5 (DALI's ``contrast_center``) instead of the
image mean, and hue rotates chroma in YIQ space instead of shifting HSV hue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Kinetics RGB mean/std in [0, 1] (PySlowFast DATA.MEAN / DATA.STD).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# ITU-R BT.601 luma weights (torchvision rgb_to_grayscale uses the same).
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class AugmentConfig:
    """Spatial and colour augmentation ranges (per clip)."""

    crop_mode: str = "rrc"
    """'rrc' = random resized crop (area/aspect), 'jitter' = short-side jitter + random square crop."""
    area: tuple[float, float] = (0.08, 1.0)
    """Random resized crop: fraction of the frame area."""
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    """Random resized crop: aspect ratio w/h, drawn log-uniformly."""
    short_side: tuple[int, int] = (256, 320)
    """'jitter' mode: the frame's short side is resized to U(a, b) before a random ``crop`` square."""
    flip_p: float = 0.5
    """Probability of a horizontal flip."""
    colour_p: float = 0.8
    """Probability of applying colour jitter to a clip."""
    brightness: float = 0.4
    """Brightness factor drawn from U(1 - b, 1 + b)."""
    contrast: float = 0.4
    """Contrast factor drawn from U(1 - c, 1 + c) (towards 0.5, see module docstring)."""
    saturation: float = 0.4
    """Saturation factor drawn from U(1 - s, 1 + s)."""
    hue: float = 0.1
    """Hue rotation drawn from U(-h, h) turns (YIQ chroma rotation)."""
    grayscale_p: float = 0.2
    """Probability of converting the clip to grayscale."""
    blur_p: float = 0.5
    """Probability of a Gaussian blur."""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """Blur sigma range in output pixels."""


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
    """Gaussian blur sigma in output pixels; 0 = no blur."""


def draw_clip_aug(rng: np.random.Generator, width: int, height: int, cfg: AugmentConfig, size: int) -> ClipAug:
    """Draw one clip's augmentation for a ``width`` x ``height`` video, output ``size`` x ``size``."""
    if cfg.crop_mode == "rrc":
        crop = _random_resized_crop(rng, width, height, cfg.area, cfg.aspect)
    elif cfg.crop_mode == "jitter":
        short = rng.uniform(cfg.short_side[0], cfg.short_side[1])
        side = max(1, min(width, height, round(size * min(width, height) / short)))
        crop = (int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)), side, side)
    else:
        raise ValueError(f"crop_mode must be 'rrc' or 'jitter', got {cfg.crop_mode!r}")
    flip = bool(rng.random() < cfg.flip_p)
    ops: list[tuple[str, float]] = []
    if rng.random() < cfg.colour_p:
        # torchvision ColorJitter: the four ops in a random order, each factor drawn independently.
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
    blur = float(rng.uniform(*cfg.blur_sigma)) if rng.random() < cfg.blur_p else 0.0
    return ClipAug(crop=crop, size=size, flip=flip, colour_ops=tuple(ops), grayscale=grayscale, blur_sigma=blur)


def _random_resized_crop(rng, width, height, area, aspect) -> tuple[int, int, int, int]:
    # torchvision RandomResizedCrop.get_params: 10 attempts, then a centre crop with clamped ratio.
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
    if in_ratio < aspect[0]:
        w, h = width, round(width / aspect[0])
    elif in_ratio > aspect[1]:
        h, w = height, round(height * aspect[1])
    else:
        w, h = width, height
    return ((width - w) // 2, (height - h) // 2, w, h)


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


def blur_window(sigma: float) -> int:
    """Odd Gaussian window for ``sigma`` (3 sigma each side), shared by both executors."""
    return 2 * math.ceil(3 * sigma) + 1


def resize_crop(frames: np.ndarray, crop: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop (T, H, W, 3) uint8 frames to ``crop`` and resize to ``size`` x ``size`` (uint8).

    Linear interpolation with antialiasing when shrinking (a triangle filter widened by the
    scale factor), rounded to uint8: the same filter as DALI's ``fn.resize`` defaults, so the
    two executors agree to rounding (torch's ``antialias=True`` implements that filter).
    """
    import torch
    import torch.nn.functional as F

    x0, y0, w, h = crop
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0 : y0 + h, x0 : x0 + w])).permute(0, 3, 1, 2)
    if (w, h) == (size, size):
        return x.permute(0, 2, 3, 1).numpy()
    # uint8 channels-last input takes torch's fast integer path (20x the float path; <= 1 level apart)
    y = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=(size, size), mode="bilinear",
                      align_corners=False, antialias=True)
    return y.permute(0, 2, 3, 1).numpy()


def apply_clip(frames: np.ndarray, aug: ClipAug, mean=KINETICS_MEAN, std=KINETICS_STD) -> np.ndarray:
    """Apply a clip's augmentation on CPU.

    Args:
        frames: (T, H, W, 3) uint8 RGB, the decoded frames of the clip.
        aug: the clip's drawn parameters.

    Returns:
        (3, T, S, S) float32, normalised with ``mean``/``std``.
    """
    S = aug.size
    frames = resize_crop(frames, aug.crop, S)
    T = len(frames)
    # Per-pixel 3x4 affines run through cv2.transform: numpy's (..., 3) @ (3, 3) is a batched tiny
    # matmul, 3.7 ms per 8x112² clip against 0.23 ms here (equal to 5e-7).
    colour = bool(aug.colour_ops or aug.grayscale)
    A = colour_affine(aug).astype(np.float32) if colour else np.eye(3, 4, dtype=np.float32)
    to_unit = np.concatenate([A[:, :3] / 255, A[:, 3:]], axis=1)  # uint8 levels -> [0, 1], then colour
    out = cv2.transform(frames.reshape(T * S, S, 3).astype(np.float32), to_unit).reshape(T, S, S, 3)
    if colour:
        np.clip(out, 0.0, 1.0, out=out)
    if aug.blur_sigma > 0:
        k = blur_window(aug.blur_sigma)
        for t in range(T):
            out[t] = cv2.GaussianBlur(out[t], (k, k), aug.blur_sigma, borderType=cv2.BORDER_REFLECT_101)
    # normalise before the flip: both act per pixel / per row, so the order does not matter, and
    # cv2.transform needs the contiguous (unflipped) array
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    normalise = np.concatenate([np.diag(1 / std), (-mean / std)[:, None]], axis=1).astype(np.float32)
    out = cv2.transform(out.reshape(T * S, S, 3), normalise).reshape(T, S, S, 3)
    if aug.flip:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2))
