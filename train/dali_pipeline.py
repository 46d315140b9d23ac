"""GPU executor of sample plans: a DALI pipeline (DESIGN.md decisions 1-3).

Graph, one DALI sample per clip (a batch holds B x rho clips); the same sequence as the CPU
executor (``train/augment_cpu.py``)::

    external_source: slice bytes, local frame indices, crop ROI, flip, colour matrices, blurs, solarise
      -> fn.decoders.video(frames=..., device="mixed")   (NVDEC; "cpu" for VP8/VP9/MJPEG)
      "frame" stage (PySlowFast), on the whole decoded frame:
      -> fn.coord_transform(M, T) -> clamp(0, 255) -> fn.gaussian_blur (mirrored borders)
      -> cast to uint8 (round half up)              (identity matrix / window 1 for "crop"-stage clips)
      -> fn.resize(roi_start/roi_end = crop window, size = S x S, bilinear, antialias as configured)
      "crop" stage (tensorflow/models video_ssl), on the output crop:
      -> fn.coord_transform(M, T) -> clamp -> zero-pad by R, fn.gaussian_blur, un-pad -> solarise
      -> fn.crop_mirror_normalize(mirror = flip, mean/std, layout CFHW)

Every per-clip number comes from the plan through ``rhovid.train.augment`` (``colour_affine``,
the drawn blur sigma and window), exactly as the CPU executor uses them, so both executors return
the same frames up to resampling rounding (checked by tests/train/test_dali.py on CPU).

The decoder only ever receives a clip's ``init + fragments`` slice: DALI's in-memory decoder
builds no frame index across the file and decodes from frame 0 to the requested one
(DESIGN.md decision 1), so handing it whole videos would cost O(video length) per clip.

Planning and fragment slicing run in the torch DataLoader's worker processes (the same
stream as the CPU path); the pipeline receives each finished batch through
``external_source`` fed from the main process, so the parallel CPU work is the DataLoader's
and the pipeline itself only decodes and augments.

``device_id=None`` builds the same graph CPU-only with the CPU decoder (VP9 in tests).
"""

from __future__ import annotations

import math

import numpy as np

from rhovid.ingest.fragments import ClipSlice
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, AugmentConfig, colour_affine, has_colour
from rhovid.train.sampler import SamplePlan

INPUTS = ("encoded", "frames", "roi_start", "roi_end", "flip", "pre_m", "pre_t", "pre_sigma", "pre_window",
          "post_m", "post_t", "post_sigma", "post_window", "solarize")


def crop_blur_radius(augment: tuple[AugmentConfig, ...]) -> int:
    """Zero padding the "crop"-stage blur needs: the largest window radius any view can draw (0 if none)."""
    radius = 0
    for a in augment:
        if a.blur_stage == "crop" and a.blur_p > 0:
            window = a.blur_window or 2 * math.ceil(3 * a.blur_sigma[1]) + 1
            radius = max(radius, window // 2)
    return radius


def build_pipeline(clips_per_batch: int, frames: int, crop: int, device_id: int | None = 0, num_threads: int = 4,
                   mean=KINETICS_MEAN, std=KINETICS_STD, antialias: bool = False, crop_blur_radius: int = 0):
    """Build (not yet run) the clip pipeline.

    Args:
        clips_per_batch: maximum clips per run (B x rho).
        frames: T.
        crop: output side S.
        device_id: CUDA device, or None for a CPU-only pipeline (CPU decoder: VP8/VP9/MJPEG).
        num_threads: DALI CPU threads.
        mean, std: normalisation per channel in [0, 1] units.
        antialias: antialiased resize when shrinking.
        crop_blur_radius: zero padding R of the "crop"-stage blur (``crop_blur_radius(augment)``).

    Returns:
        a built ``nvidia.dali.Pipeline`` with ``external_source`` inputs named as ``INPUTS`` and one
        output: (3, T, S, S) float32 per clip.
    """
    from nvidia.dali import fn, math, pipeline_def, types

    gpu = device_id is not None
    R = crop_blur_radius

    @pipeline_def(batch_size=clips_per_batch, num_threads=num_threads, device_id=device_id,
                  prefetch_queue_depth=1, exec_dynamic=True)
    def clips():
        src = {name: fn.external_source(name=name, no_copy=False) for name in INPUTS}
        video = fn.decoders.video(src["encoded"], frames=src["frames"], device="mixed" if gpu else "cpu")
        # "frame" stage on the whole decoded frame
        video = fn.coord_transform(video, M=src["pre_m"], T=src["pre_t"], dtype=types.FLOAT)
        video = math.clamp(video, 0.0, 255.0)
        video = fn.reshape(video, layout="FHWC")
        video = fn.gaussian_blur(video, sigma=src["pre_sigma"], window_size=src["pre_window"], dtype=types.FLOAT)
        video = fn.cast(video, dtype=types.UINT8)  # rounds half away from zero
        video = fn.resize(video, roi_start=src["roi_start"], roi_end=src["roi_end"], roi_relative=False,
                          size=[crop, crop], antialias=antialias, interp_type=types.INTERP_LINEAR)
        # "crop" stage on the output crop
        video = fn.coord_transform(video, M=src["post_m"], T=src["post_t"], dtype=types.FLOAT)
        video = math.clamp(video, 0.0, 255.0)
        video = fn.reshape(video, layout="FHWC")
        if R:
            video = fn.slice(video, start=[-R, -R], shape=[crop + 2 * R, crop + 2 * R], axes=[1, 2],
                             out_of_bounds_policy="pad", fill_values=0.0)
        video = fn.gaussian_blur(video, sigma=src["post_sigma"], window_size=src["post_window"], dtype=types.FLOAT)
        if R:
            video = fn.slice(video, start=[R, R], shape=[crop, crop], axes=[1, 2])
        video = video + src["solarize"] * (video >= 127.5) * (255.0 - 2.0 * video)
        return fn.crop_mirror_normalize(
            video, mirror=src["flip"], mean=[m * 255 for m in mean], std=[s * 255 for s in std],
            output_layout="CFHW", dtype=types.FLOAT,
        )

    pipe = clips()
    pipe.build()
    return pipe


def plan_inputs(plans: list[SamplePlan], slices: list[list[ClipSlice]], crop_blur_radius: int = 0
                ) -> dict[str, list[np.ndarray]]:
    """Per-clip external_source inputs of a batch (clips in sample-major order)."""
    feed: dict[str, list[np.ndarray]] = {name: [] for name in INPUTS}
    eye = np.eye(3, dtype=np.float32)
    zero = np.zeros(3, np.float32)
    for plan, sl in zip(plans, slices):
        for clip, s in zip(plan.clips, sl):
            aug = clip.aug
            x0, y0, w, h = aug.crop
            M, T = eye, zero
            if has_colour(aug):
                A = colour_affine(aug)
                M, T = np.ascontiguousarray(A[:, :3], np.float32), (A[:, 3] * 255).astype(np.float32)
            sigma = np.array(aug.blur_sigma, np.float32)
            window = np.array(aug.blur_window if aug.blur_sigma > 0 else 1, np.int32)
            frame_stage = aug.blur_stage == "frame"
            if not frame_stage and aug.blur_sigma > 0 and aug.blur_window // 2 > crop_blur_radius:
                raise ValueError(f"blur window {aug.blur_window} exceeds the pipeline's zero padding "
                                 f"{crop_blur_radius}; build it with crop_blur_radius(augment)")
            feed["encoded"].append(np.frombuffer(s.data, np.uint8))
            feed["frames"].append(np.asarray(s.indices, np.int32))
            feed["roi_start"].append(np.array([y0, x0], np.float32))  # (H, W) axis order
            feed["roi_end"].append(np.array([y0 + h, x0 + w], np.float32))
            feed["flip"].append(np.array(int(aug.flip), np.int32))
            no_blur = (np.array(0.0, np.float32), np.array(1, np.int32))
            pre, post = ((M, T), (eye, zero)) if frame_stage else ((eye, zero), (M, T))
            feed["pre_m"].append(pre[0])
            feed["pre_t"].append(pre[1])
            feed["post_m"].append(post[0])
            feed["post_t"].append(post[1])
            feed["pre_sigma"].append(sigma if frame_stage else no_blur[0])
            feed["pre_window"].append(window if frame_stage else no_blur[1])
            feed["post_sigma"].append(no_blur[0] if frame_stage else sigma)
            feed["post_window"].append(no_blur[1] if frame_stage else window)
            feed["solarize"].append(np.array(float(aug.solarize), np.float32))
    return feed


class DaliClipExecutor:
    """Runs batches of plans through the pipeline and returns torch tensors (on the GPU)."""

    def __init__(self, clips_per_batch: int, frames: int, crop: int, device_id: int | None = 0, num_threads: int = 4,
                 mean=KINETICS_MEAN, std=KINETICS_STD, antialias: bool = False, crop_blur_radius: int = 0):
        self.device_id = device_id
        self.clips_per_batch = clips_per_batch
        self.crop_blur_radius = crop_blur_radius
        self.pipe = build_pipeline(clips_per_batch, frames, crop, device_id, num_threads, mean, std, antialias,
                                   crop_blur_radius)

    def run(self, plans: list[SamplePlan], slices: list[list[ClipSlice]]):
        """Decode and augment a batch.

        Returns:
            torch.Tensor (N, 3, T, S, S) float32, N = total clips, on ``cuda:device_id`` (CPU when
            ``device_id`` is None).
        """
        import torch

        feed = plan_inputs(plans, slices, self.crop_blur_radius)
        n = len(feed["encoded"])
        if n > self.clips_per_batch:
            raise ValueError(f"{n} clips exceed the pipeline batch of {self.clips_per_batch}")
        for name, data in feed.items():
            self.pipe.feed_input(name, data)
        (out,) = self.pipe.run()
        tensor = out.as_tensor()
        if self.device_id is None:
            return torch.from_numpy(np.array(tensor))
        from nvidia.dali.plugin.pytorch import feed_ndarray

        res = torch.empty(tensor.shape(), dtype=torch.float32, device=f"cuda:{self.device_id}")
        feed_ndarray(tensor, res, cuda_stream=torch.cuda.current_stream(self.device_id))
        return res
