"""The CPU executor of a clip's augmentation (``ClipAug``): OpenCV/torch on decoded uint8 frames.

``apply_clip`` runs the sequence of ``train/augment.py`` (and of the DALI graph in
``train/dali_pipeline.py``):

- "frame" stage: on the crop window widened by the blur radius (clipped to the frame, so the
  crop's pixels equal those of a whole-frame pass, mirrored at the frame's border): colour map,
  clamp, blur, round to uint8 (PySlowFast's colour and blur run on PIL uint8 images), then crop +
  resize, flip.
- "crop" stage: crop + resize (uint8), then colour map, clamp, blur with zero padding, solarise,
  clamp (tensorflow/models' float pipeline).

Then normalise with ``mean``/``std`` and flip.
"""

from __future__ import annotations

import cv2
import numpy as np

from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, ClipAug, colour_affine, has_colour


def resize_crop(frames: np.ndarray, crop: tuple[int, int, int, int], size: int, antialias: bool = False) -> np.ndarray:
    """Crop (T, H, W, 3) uint8 frames to ``crop`` and resize to ``size`` x ``size`` (uint8).

    Bilinear (half-pixel centres, as PySlowFast's ``F.interpolate(align_corners=False)`` and
    ``tf.image.resize``), rounded to uint8; ``antialias`` widens the triangle filter when shrinking
    (DALI's ``fn.resize(antialias=True)``, torch's ``antialias=True``: the same filter).
    """
    import torch
    import torch.nn.functional as F

    x0, y0, w, h = crop
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0 : y0 + h, x0 : x0 + w])).permute(0, 3, 1, 2)
    if (w, h) == (size, size):
        return x.permute(0, 2, 3, 1).numpy()
    # uint8 channels-last input takes torch's fast integer path (20x the float path; <= 1 level apart)
    y = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=(size, size), mode="bilinear",
                      align_corners=False, antialias=antialias)
    return y.permute(0, 2, 3, 1).numpy()


def _colour(frames: np.ndarray, aug: ClipAug, levels: float) -> np.ndarray:
    """(T, H, W, 3) float32 in [0, levels] -> colour map applied and clamped (cv2.transform: a
    per-pixel 3x4 affine, 16x faster than numpy's batched tiny matmul)."""
    A = colour_affine(aug).astype(np.float32)
    A[:, 3] *= levels
    t, h, w, _ = frames.shape
    out = cv2.transform(frames.reshape(t * h, w, 3), A).reshape(t, h, w, 3)
    return np.clip(out, 0.0, levels, out=out)


def _blur(frames: np.ndarray, aug: ClipAug, border: int) -> np.ndarray:
    k = aug.blur_window
    for t in range(len(frames)):
        frames[t] = cv2.GaussianBlur(frames[t], (k, k), aug.blur_sigma, borderType=border)
    return frames


def apply_clip(frames: np.ndarray, aug: ClipAug, mean=KINETICS_MEAN, std=KINETICS_STD,
               antialias: bool = False) -> np.ndarray:
    """Apply a clip's augmentation on CPU.

    Args:
        frames: (T, H, W, 3) uint8 RGB, the decoded frames of the clip.
        aug: the clip's drawn parameters.
        mean, std: per-channel normalisation in [0, 1] units.
        antialias: antialiased resize (see ``resize_crop``).

    Returns:
        (3, T, S, S) float32, normalised.
    """
    S = aug.size
    crop = aug.crop
    if aug.blur_stage == "frame" and (has_colour(aug) or aug.blur_sigma > 0):
        x0, y0, w, h = crop
        H, W = frames.shape[1:3]
        r = aug.blur_window // 2 if aug.blur_sigma > 0 else 0
        wx0, wy0, wx1, wy1 = max(0, x0 - r), max(0, y0 - r), min(W, x0 + w + r), min(H, y0 + h + r)
        win = frames[:, wy0:wy1, wx0:wx1].astype(np.float32)
        if has_colour(aug):
            win = _colour(win, aug, 255.0)
        if aug.blur_sigma > 0:
            win = _blur(win, aug, cv2.BORDER_REFLECT_101)
        frames = np.floor(win + 0.5).astype(np.uint8)  # round half up, as DALI's cast to uint8
        crop = (x0 - wx0, y0 - wy0, w, h)
    out = resize_crop(frames, crop, S, antialias)
    T = len(out)
    out = out.astype(np.float32)
    if aug.blur_stage == "crop":
        out /= 255.0
        if has_colour(aug):
            out = _colour(out, aug, 1.0)
        if aug.blur_sigma > 0:
            out = _blur(out, aug, cv2.BORDER_CONSTANT)
        if aug.solarize:
            out = np.where(out >= 0.5, 1.0 - out, out).astype(np.float32)
        scale = 1.0
    else:
        scale = 1.0 / 255
    # normalise before the flip: both act per pixel / per row, so the order does not matter, and
    # cv2.transform needs the contiguous (unflipped) array
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    normalise = np.concatenate([np.diag(scale / std), (-mean / std)[:, None]], axis=1).astype(np.float32)
    out = cv2.transform(np.ascontiguousarray(out).reshape(T * S, S, 3), normalise).reshape(T, S, S, 3)
    if aug.flip:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2))
