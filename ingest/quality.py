"""What a transcode cost: PSNR and SSIM of a few stored frames against the source.

Ingest re-encodes every video (DESIGN.md decision 1), and on grainy sources the default
(CRF 23, veryfast) keeps only ~29 dB (README, *What the transcode costs*). So each sample
records the cost of its own encode: ``frames`` output frames spread evenly over the video are
taken from the transcode's own filter chain just before x264 (``transcode.ffmpeg_args(...,
reference=...)`` splits the chain: the source is decoded once, the frames are the source at
the stored size, rate and 4:2:0 exactly as the encoder got them) and from the stored H.264
(only the fragments that hold them are decoded), and compared on the luma plane:

- PSNR in dB, ``10 log10(255^2 / MSE)``, capped at ``PSNR_CAP`` for identical frames (JSON
  has no infinity);
- SSIM of Wang et al. (IEEE TIP 2004, Sec. III-C): 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, mean of the SSIM map (ffmpeg's ``ssim`` filter uses 8x8 blocks instead).

Measured cost: README, *What the transcode costs* (``rhovid bench ingest``).
"""

from __future__ import annotations

import io
import math
import os
import tempfile

import av
import cv2
import numpy as np

from rhovid.ingest.fragments import clip_slice
from rhovid.ingest.probe import Probe
from rhovid.ingest.transcode import TranscodeSettings, ffmpeg_args, output_size, run_ffmpeg

PSNR_CAP = 100.0
"""PSNR recorded for frames identical to the source (MSE 0)."""


def sample_frames(num_frames: int, count: int) -> list[int]:
    """``count`` output frame indices spread evenly over ``num_frames`` (centres of equal parts)."""
    count = max(0, min(count, num_frames))
    return [int((k + 0.5) * num_frames / count) for k in range(count)]


def transcode_with_reference(src: str, probe: Probe, settings: TranscodeSettings,
                             trim: tuple[float, float] | None, frames: list[int],
                             timeout_s: float | None = None, max_frames: int | None = None,
                             memory_bytes: int | None = None) -> tuple[bytes, list[int], np.ndarray]:
    """``transcode.transcode`` (same limits) that also keeps output frames ``frames`` as x264 received them.

    Returns:
        ``(mp4, kept, luma)``: the fragmented MP4 bytes, the requested frames that exist
        (a video shorter than its probe said has fewer) and their luma ``(len(kept), H, W)`` uint8.
    """
    width, height = output_size(*probe.display_size, settings.short_side)
    fd, path = tempfile.mkstemp(prefix="rhovid-quality-", suffix=".yuv")
    os.close(fd)
    try:
        args = ffmpeg_args(src, probe, settings, trim, reference=(frames, path), max_frames=max_frames)
        mp4 = run_ffmpeg(args, timeout_s, memory_bytes)
        raw = np.fromfile(path, np.uint8)
    finally:
        os.unlink(path)
    frame_bytes = width * height * 3 // 2
    n = len(raw) // frame_bytes
    planes = raw[: n * frame_bytes].reshape(n, frame_bytes)
    return mp4, frames[:n], planes[:, : width * height].reshape(n, height, width)


def stored_luma(mp4: bytes, meta: dict, frames: list[int]) -> np.ndarray:
    """Luma of global frames ``frames`` of a stored sample, ``(N, H, W)`` uint8, decoding only
    the fragment (GOP) that holds each frame."""
    out = []
    for g in frames:
        data, frame0 = clip_slice(mp4, meta, g, g)
        with av.open(io.BytesIO(data), mode="r") as container:
            for n, frame in enumerate(container.decode(container.streams.video[0])):
                if n == g - frame0:
                    out.append(_luma(frame))
                    break
        if len(out) != frames.index(g) + 1:
            raise IndexError(f"frame {g} is not decodable in {meta.get('key', 'sample')}")
    return np.stack(out)


def _luma(frame: av.VideoFrame) -> np.ndarray:
    # the Y plane as stored (no range or colour conversion), without its row padding
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : frame.width].copy()


def psnr(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape (``PSNR_CAP`` when identical)."""
    mse = float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) of two uint8 images: 11x11 Gaussian window, sigma 1.5."""
    x, y = ref.astype(np.float64), test.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(smap.mean())


def compare(reference: np.ndarray, frames: list[int], mp4: bytes, meta: dict) -> dict:
    """The ``quality`` record of one sample (ingest/FORMAT.md).

    Args:
        reference: luma of output frames ``frames`` before the encoder, ``(N, H, W)`` uint8.
        frames: their global frame indices.
        mp4: the stored bytes; meta: their sample json (``fragments``, ``init_size``, ``num_frames``).

    Returns:
        ``{"plane": "Y", "frames": [...], "psnr_db": [...], "ssim": [...], "psnr_db_mean", "ssim_mean"}``.
    """
    frames = [f for f in frames if f < int(meta["num_frames"])]
    if not frames:
        raise ValueError("no sampled frame inside the stored video")
    reference = reference[: len(frames)]
    test = stored_luma(mp4, meta, frames)
    if reference.shape != test.shape:
        raise ValueError(f"stored frames {test.shape} and reference frames {reference.shape} differ in size")
    p = [round(psnr(a, b), 3) for a, b in zip(reference, test)]
    s = [round(ssim(a, b), 5) for a, b in zip(reference, test)]
    return {"plane": "Y", "frames": frames, "psnr_db": p, "ssim": s,
            "psnr_db_mean": round(float(np.mean(p)), 3), "ssim_mean": round(float(np.mean(s)), 5)}


def summarise(records: list[dict], seconds: float = 0.0, transcode_seconds: float = 0.0) -> dict | None:
    """Run summary of samples' ``quality`` records (None when there are none): mean, min and
    median of the per-sample mean PSNR, mean and min SSIM, and what measuring cost
    (``seconds``) against what transcoding cost (``transcode_seconds``), both summed over samples."""
    if not records:
        return None
    p = np.array([r["psnr_db_mean"] for r in records])
    s = np.array([r["ssim_mean"] for r in records])
    return {"samples": len(records), "psnr_db_mean": round(float(p.mean()), 3),
            "psnr_db_min": round(float(p.min()), 3), "psnr_db_median": round(float(np.median(p)), 3),
            "ssim_mean": round(float(s.mean()), 5), "ssim_min": round(float(s.min()), 5),
            "seconds": round(seconds, 3), "transcode_seconds": round(transcode_seconds, 3)}
