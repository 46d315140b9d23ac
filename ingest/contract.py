"""The checks a reader applies to a sample json before it trusts it (ingest/FORMAT.md, ``<key>.json``).

Readers size arrays, loops and tensors from these fields: ``num_frames`` and ``fps`` give the
frames the box store decodes, ``fragments`` and ``init_size`` the bytes the loader slices,
``label`` a tensor element. A copied, hand-edited or hostile shard can hold anything there:
``fps`` 0 or infinite, a label of 2**70, a billion frames in a 30 KB video, a list where a
number belongs. ``sample_problems`` names every such field (an empty list means the json can be
trusted as far as its own bytes and its mp4's size can tell); ``rhovid ingest --verify`` reports
them and ``rhovid boxes`` skips and counts the samples that have any (issue 13, items 8 and 9).
Whether the fragment table matches the mp4's boxes is ``rhovid.ingest.fmp4``'s to say.
"""

from __future__ import annotations

import math
import re

CONTRACT_FIELDS = ("key", "split", "label", "num_frames", "fps", "width", "height", "init_size", "fragments")
"""Sample json fields the loader and the box store read."""
MAX_FPS = 1000.0
"""Highest frame rate a sample may state (ingest writes ``--fps``, 30 by default)."""
MAX_SIDE = 16384
"""Largest width or height a sample may state (ingest's ``max_pixels`` is 8K)."""
MAX_LABEL = 2**31 - 1
"""Largest class index (an int32 tensor element; ``index.json`` has far fewer labels)."""
_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def sample_problems(meta, mp4_size: int) -> list[str]:
    """What in sample json ``meta`` a reader must not trust, given its mp4 of ``mp4_size`` bytes.

    Returns:
        One line per problem, naming the field and its value (cut to 60 characters).
    """
    if not isinstance(meta, dict):
        return [f"json is a {type(meta).__name__}, not an object"]
    missing = [f for f in CONTRACT_FIELDS if f not in meta]
    if missing:
        return [f"json lacks {missing}"]
    out = []

    def bad(field: str, why: str) -> None:
        out.append(f"{field} {_short(meta[field])}: {why}")

    if not isinstance(meta["key"], str) or not _KEY.fullmatch(meta["key"]):
        bad("key", "not a key of [A-Za-z0-9_-]")
    if not isinstance(meta["split"], str):
        bad("split", "not a string")
    label = meta["label"]
    if label is not None and not (_is_int(label) and 0 <= label <= MAX_LABEL):
        bad("label", f"not null or an int in 0..{MAX_LABEL}")
    fps = meta["fps"]
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        bad("fps", f"not a finite number in (0, {MAX_FPS:g}]")
    for side in ("width", "height"):
        if not (_is_int(meta[side]) and 2 <= meta[side] <= MAX_SIDE):
            bad(side, f"not an int in 2..{MAX_SIDE}")
    n = meta["num_frames"]
    if not (_is_int(n) and 1 <= n <= mp4_size):  # every frame takes at least a byte
        bad("num_frames", f"not an int in 1..{mp4_size} (the mp4's bytes)")
    init = meta["init_size"]
    if not (_is_int(init) and 8 <= init < mp4_size):
        bad("init_size", f"not an int in 8..{mp4_size - 1}")
    table = _fragment_problem(meta["fragments"], init if _is_int(init) else 0, mp4_size, n if _is_int(n) else None)
    if table:
        bad("fragments", table)
    return out


def _fragment_problem(rows, init_size: int, mp4_size: int, num_frames: int | None) -> str | None:
    """Why ``rows`` is not a fragment table of an mp4 of ``mp4_size`` bytes, or None."""
    if not isinstance(rows, list) or not rows:
        return "not a non-empty list"
    if len(rows) > mp4_size // 8:  # every fragment is at least a moof header
        return f"{len(rows)} rows for {mp4_size} bytes"
    offset, frame = init_size - 1, 0
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 3 and all(_is_int(x) for x in row)):
            return f"row {i} is not [byte_offset, first_frame, num_frames] ints"
        if not offset < row[0] < mp4_size:
            return f"row {i} starts at byte {row[0]}, not after byte {offset} and inside the mp4"
        if row[1] != frame or row[2] < 1:
            return f"row {i} covers frames {row[1]}+{row[2]}, expected to start at {frame} with >= 1 frame"
        offset, frame = row[0], frame + row[2]
    if num_frames is not None and frame != num_frames:
        return f"rows hold {frame} frames, num_frames says {num_frames}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
