"""Cut the bytes of a clip out of a sample: init segment + the fragments that cover it.

DESIGN.md decision 1: a clip at second 1 and one at second 60 cost the same because the
decoder only ever sees ``mp4[:init_size]`` plus the fragments holding the clip's frames.
Fragment table rows are ``[byte_offset, first_frame, num_frames]`` (ingest/FORMAT.md); a
fragment ends where the next one starts, the last one at the end of the bytes.
"""

from __future__ import annotations

import bisect


def fragment_range(meta: dict, first: int, last: int) -> tuple[int, int]:
    """Fragments covering global frames ``first..last`` (inclusive), as a half-open range.

    Args:
        meta: the sample json (needs ``fragments`` and ``num_frames``).
        first, last: global frame indices, ``0 <= first <= last < num_frames``.

    Returns:
        ``(i, j)`` such that ``meta["fragments"][i:j]`` holds every frame of the clip.

    Raises:
        IndexError: the frame range is empty or outside the video.
    """
    frags = meta["fragments"]
    n = int(meta["num_frames"])
    if not 0 <= first <= last < n:
        raise IndexError(f"frames {first}..{last} outside {meta.get('key', 'sample')} with {n} frames")
    starts = [f[1] for f in frags]
    i = bisect.bisect_right(starts, first) - 1
    j = bisect.bisect_right(starts, last)
    return i, j


def clip_slice(mp4: bytes, meta: dict, first: int, last: int) -> tuple[bytes, int]:
    """The bytes of a playable MP4 holding global frames ``first..last`` (inclusive).

    Returns:
        ``(data, frame0)``: ``mp4[:init_size]`` + the covering fragments, and the global
        index of ``data``'s frame 0 (the first covering fragment's ``first_frame``), so
        global frame ``g`` is local frame ``g - frame0``.
    """
    i, j = fragment_range(meta, first, last)
    frags = meta["fragments"]
    start = frags[i][0]
    end = frags[j][0] if j < len(frags) else len(mp4)
    return mp4[: int(meta["init_size"])] + mp4[start:end], int(frags[i][1])
