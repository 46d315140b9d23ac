"""Cut the bytes of a clip out of a sample: init segment + the fragments that cover it.

DESIGN.md decision 1: a clip at second 1 and one at second 60 cost the same because the
decoder only ever sees ``mp4[:init_size]`` plus the fragments holding the clip's frames.
Fragment table rows are ``[byte_offset, first_frame, num_frames]`` (ingest/FORMAT.md); a
fragment ends where the next one starts, the last one at the end of the bytes.

``clip_groups`` decides which clips of a sample share a slice; ``slice_clips`` cuts them out
of the MP4's bytes in memory and ``rhovid.ingest.reader`` fetches the same byte ranges from a
shard on disk or object storage, so both paths hand the decoder identical bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


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


def fragment_bytes(meta: dict, i: int, j: int, mp4_size: int) -> tuple[int, int]:
    """Byte range ``(start, end)`` of fragments ``i..j-1`` within the MP4 of ``mp4_size`` bytes."""
    frags = meta["fragments"]
    return int(frags[i][0]), int(frags[j][0]) if j < len(frags) else mp4_size


def clip_slice(mp4: bytes, meta: dict, first: int, last: int) -> tuple[bytes, int]:
    """The bytes of a playable MP4 holding global frames ``first..last`` (inclusive).

    Returns:
        ``(data, frame0)``: ``mp4[:init_size]`` + the covering fragments, and the global
        index of ``data``'s frame 0 (the first covering fragment's ``first_frame``), so
        global frame ``g`` is local frame ``g - frame0``.
    """
    i, j = fragment_range(meta, first, last)
    start, end = fragment_bytes(meta, i, j, len(mp4))
    return mp4[: int(meta["init_size"])] + mp4[start:end], int(meta["fragments"][i][1])


@dataclass(frozen=True)
class ClipSlice:
    """The bytes a decoder needs for one clip and where the clip's frames are in them."""

    data: bytes
    """``init segment + covering fragments`` (a playable fragmented MP4)."""
    indices: tuple[int, ...]
    """The clip's frames, local to ``data`` (0 = first frame of the first covering fragment)."""


@dataclass(frozen=True)
class ClipGroup:
    """Clips of one sample that share one slice (their fragment ranges overlap)."""

    clips: tuple[int, ...]
    """Positions of the clips in the caller's list."""
    fragments: tuple[int, int]
    """Half-open range of the fragments the group's slice holds."""


def clip_groups(meta: dict, clips: list[list[int]]) -> list[ClipGroup]:
    """Group clips whose covering fragment ranges share a fragment, in fragment order.

    Clips in one group share one slice (the same ``bytes`` object), so a decoder that groups
    slices by identity (``decode_pyav.decode_clips``) decodes the shared fragments once; with
    short timespans the rho clips often overlap. Merely adjacent ranges stay apart: merging
    them would decode the tail of the earlier clip's last fragment for nothing.

    Raises:
        IndexError: a clip is empty or outside the video.
    """
    ranges = [fragment_range(meta, min(fr), max(fr)) for fr in clips]
    order = sorted(range(len(clips)), key=lambda k: ranges[k])
    groups: list[list] = []  # [clip ids, i, j]
    for k in order:
        i, j = ranges[k]
        if groups and i < groups[-1][2]:
            groups[-1][0].append(k)
            groups[-1][2] = max(groups[-1][2], j)
        else:
            groups.append([[k], i, j])
    return [ClipGroup(tuple(ks), (i, j)) for ks, i, j in groups]


def slices_of_groups(meta: dict, clips: list[list[int]], groups: list[ClipGroup], pieces: list[bytes],
                     init: bytes) -> list[ClipSlice]:
    """One ``ClipSlice`` per clip, from each group's fragment bytes ``pieces[g]`` and the init segment."""
    out: list[ClipSlice | None] = [None] * len(clips)
    for group, piece in zip(groups, pieces):
        data = init + piece
        frame0 = int(meta["fragments"][group.fragments[0]][1])
        for k in group.clips:
            out[k] = ClipSlice(data, tuple(f - frame0 for f in clips[k]))
    return out


def slice_clips(mp4, meta: dict, frames: Iterable[Iterable[int]]) -> list[ClipSlice]:
    """Cut each clip's fragments out of a sample's MP4 (DESIGN.md decision 1).

    Args:
        mp4: the sample's fragmented MP4 bytes (or anything sliceable to bytes with ``len``).
        meta: its json (``init_size``, ``fragments``, ``num_frames``).
        frames: per clip, its global frame indices.
    """
    clips = [list(fr) for fr in frames]
    groups = clip_groups(meta, clips)
    pieces = []
    for g in groups:
        a, b = fragment_bytes(meta, *g.fragments, len(mp4))
        pieces.append(mp4[a:b])
    return slices_of_groups(meta, clips, groups, pieces, mp4[: int(meta["init_size"])])
