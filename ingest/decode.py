"""Decode fragmented-MP4 bytes (a whole sample or a ``clip_slice``) to RGB with PyAV.

The CPU reference decoder (DESIGN.md decision 3): the loader's CPU path and the tests use
it; the GPU path decodes the same bytes with DALI.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import numpy as np


def decode_rgb(data: bytes, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode frames of ``data`` to RGB.

    Args:
        data: an MP4 (init segment + fragments) in memory.
        indices: frame indices local to ``data`` (0 = its first frame), any order, repeats
            allowed; None = every frame.

    Returns:
        ``(N, H, W, 3)`` uint8, N = ``len(indices)`` (or the frame count), in ``indices`` order.

    Raises:
        IndexError: an index is negative or past the last decodable frame.
    """
    wanted = None if indices is None else [int(i) for i in indices]
    if wanted is not None and any(i < 0 for i in wanted):
        raise IndexError(f"negative frame index in {wanted}")
    stop = None if wanted is None else (max(wanted) + 1 if wanted else 0)
    frames: dict[int, np.ndarray] = {}
    order: list[np.ndarray] = []
    if stop != 0:
        keep = None if wanted is None else set(wanted)
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if keep is None:
                    order.append(frame.to_ndarray(format="rgb24"))
                elif n in keep:
                    frames[n] = frame.to_ndarray(format="rgb24")
                if stop is not None and n + 1 >= stop:
                    break
    if wanted is None:
        return np.stack(order) if order else np.zeros((0, 0, 0, 3), np.uint8)
    missing = sorted(set(wanted) - set(frames))
    if missing:
        raise IndexError(f"frames {missing[:5]} are past the end of the data ({len(frames)} decoded)")
    if not wanted:
        return np.zeros((0, 0, 0, 3), np.uint8)
    return np.stack([frames[i] for i in wanted])


def count_frames(data: bytes) -> int:
    """Number of decodable video frames in ``data`` (decoded, not read from headers)."""
    n = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            n += 1
    return n
