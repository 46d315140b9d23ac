"""The loader benchmark's contenders other than the loader itself (``benchmarks/loader.py``).

Each executes the same sampler plans as the loader, with the same colour conversion and
augmentation, and returns the number of frames it decoded: (b) per-clip PyAV seeks and (b2)
PySlowFast's one-range ``pyav_decode`` on the original x264 videos, (c) whole-video VP9 buffers
through the DALI graph of the GPU path, on CPU.
"""

from __future__ import annotations

import numpy as np


def _seek_and_decode(container, stream, fps: float, first: int, last: int, wanted) -> tuple[dict, int]:
    """PySlowFast's seek + decode: seek a margin before frame ``first`` (``backward=True`` lands on the
    keyframe before), decode forward up to frame ``last``; returns the ``wanted`` frames as RGB
    (``{index: array}``) and the number of frames decoded."""
    from rhovid.train.decode_pyav import to_rgb  # the same colour conversion as (a): only decoding differs

    tb = stream.time_base
    container.seek(max(0, int((first / fps - 1024 * float(tb)) / float(tb))), backward=True,
                   any_frame=False, stream=stream)
    got, decoded = {}, 0
    for frame in container.decode(stream):
        decoded += 1
        idx = round(float(frame.pts * tb) * fps)
        if idx in wanted:
            got[idx] = to_rgb(frame)
        if idx >= last:
            break
    return got, decoded


def baseline_slowfast(plans, originals) -> int:
    """(b): per clip, seek the original to the keyframe before it and decode forward (PyAV)."""
    import av

    from rhovid.train.augment import apply_clip

    decoded = 0
    for plan, meta, _ in plans:
        with av.open(str(originals[plan.key])) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # as PySlowFast's default
            for clip in plan.clips:
                got, n = _seek_and_decode(container, stream, float(meta["fps"]), min(clip.frames), max(clip.frames),
                                          set(clip.frames))
                decoded += n
                frames = [got.get(f) for f in clip.frames]
                prev = next(f for f in frames if f is not None)
                frames = [prev := (f if f is not None else prev) for f in frames]
                apply_clip(np.stack(frames), clip.aug)
    return decoded


def baseline_slowfast_span(plans, originals) -> int:
    """(b2): PySlowFast's multi-clip ``pyav_decode``: one seek before the earliest clip, then decode
    forward to the end of the latest one (every frame in between), then the same augmentation."""
    import av

    from rhovid.train.augment import apply_clip

    decoded = 0
    for plan, meta, _ in plans:
        with av.open(str(originals[plan.key])) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            got, n = _seek_and_decode(
                container, stream, float(meta["fps"]), min(min(c.frames) for c in plan.clips),
                max(max(c.frames) for c in plan.clips), {f for c in plan.clips for f in c.frames})
            decoded += n
            for clip in plan.clips:
                fallback = next(iter(got.values()))
                apply_clip(np.stack([got.get(f, fallback) for f in clip.frames]), clip.aug)
    return decoded


def dali_executor(plans, vp9, args):
    """The DALI CPU pipeline, built and warmed up outside the timed region."""
    from rhovid.ingest.fragments import ClipSlice
    from rhovid.train.dali_pipeline import DaliClipExecutor

    ex = DaliClipExecutor(args.rho, args.frames, args.crop, device_id=None, num_threads=1)
    warm = plans[0][0]
    ex.run([warm], [[ClipSlice(vp9[warm.key], (0,) * args.frames)] * len(warm.clips)])
    return ex


def baseline_dali_whole(plans, vp9, ex) -> int:
    """(c): whole-video VP9 buffers through the DALI graph on CPU (the pipeline of the GPU path)."""
    from rhovid.ingest.fragments import ClipSlice

    decoded = 0
    for plan, _, _ in plans:
        slices = [ClipSlice(vp9[plan.key], c.frames) for c in plan.clips]
        decoded += sum(max(c.frames) + 1 for c in plan.clips)
        ex.run([plan], [slices])
    return decoded
