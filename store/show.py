"""``rhovid boxes DATA --show KEY --set NAME -o F.png``: a contact sheet of one video's boxes.

People check box priors by looking at them: each tile is a stored frame with its boxes
drawn (brighter = larger / higher-scoring, the order they are stored in), the frame index and
its box count; detector boxes carry their score. A legend above the tiles names the set, its
method and parameters, and the boxes per frame over every stored frame of the video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rhovid.atomic import atomic_write_bytes
from rhovid.errors import UnknownNameError

COLUMNS = 4
LEGEND_LINE = 16
"""Pixel height of one legend line above the tiles."""


def contact_sheet(data: str | Path, key: str, set_name: str, out: str | Path, max_frames: int = 16) -> int:
    """Draw video ``key``'s stored boxes on its frames and write a PNG grid.

    Args:
        data: dataset folder.
        key: sample key.
        set_name: box set name, alias or method name.
        out: output .png path (written atomically).
        max_frames: at most this many evenly spaced stored frames.

    Returns:
        The number of frames drawn.

    Raises:
        KeyError: unknown key or set; shard without the set (names the command).
    """
    import cv2

    from rhovid.ingest.decode import decode_rgb
    from rhovid.ingest.reader import ShardReader, read_index, shard_url
    from rhovid.store.zarr_store import BoxStore

    entry = next((e for e in read_index(data) if e["key"] == key), None)
    if entry is None:
        raise UnknownNameError(f"video key {key!r} is not in {data}/index.json")
    shard = Path(entry["shard"]).name.removesuffix(".tar")
    boxes = BoxStore(data).load(shard, set_name)
    stored = boxes.stored_frames(key)
    pick = np.unique(np.linspace(0, len(stored) - 1, min(max_frames, len(stored))).round().astype(int))
    reader = ShardReader()
    url = shard_url(data, entry["shard"])
    sample = next(s for s in reader.manifest(url).samples if s.key == key)
    mp4 = reader.read_member(url, sample)
    reader.close()
    frames = decode_rgb(mp4, stored[pick])
    b, count, score = boxes.lookup(key, stored[pick])
    tiles = [
        _draw(cv2, f, b[i, : count[i]], int(stored[pick][i]), None if score is None else score[i, : count[i]])
        for i, f in enumerate(frames)
    ]
    _, all_counts, _ = boxes.lookup(key, stored)
    legend = legend_lines(boxes.set_name, boxes.attrs, key, float(np.mean(all_counts)), len(stored),
                          score is not None)
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // COLUMNS)
    top = LEGEND_LINE * len(legend) + 6
    sheet = np.full((top + rows * h, max(min(COLUMNS, len(tiles)) * w, 480), 3), 255, np.uint8)
    for j, text in enumerate(legend):
        cv2.putText(sheet, text, (4, LEGEND_LINE * (j + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    for i, t in enumerate(tiles):
        r, c = divmod(i, COLUMNS)
        sheet[top + r * h : top + (r + 1) * h, c * w : (c + 1) * w] = t
    ok, png = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{out}: PNG encoding failed")
    atomic_write_bytes(out, png.tobytes())
    return len(tiles)


def legend_lines(set_name: str, attrs: dict, key: str, per_frame: float, frames: int, scored: bool) -> list[str]:
    """The sheet's legend: set and method, parameters (wrapped), boxes per stored frame."""
    from rhovid.store.boxsets import param_text

    params = [f"{k}={param_text(v)}" for k, v in attrs.get("params_hashed", attrs.get("params", {})).items()]
    lines = [f"set {set_name}   method {attrs.get('method', '?')}   box fps {attrs.get('box_fps', '?')}   "
             f"K {attrs.get('max_boxes', '?')}"]
    line = ""
    for p in params:
        if line and len(line) + len(p) > 90:
            lines.append(line)
            line = ""
        line = f"{line} {p}".strip()
    if line:
        lines.append(line)
    note = "; detector score at each box" if scored else ""
    lines.append(f"video {key}: {per_frame:.1f} boxes per frame over {frames} stored frames{note}")
    return lines


def _draw(cv2, frame: np.ndarray, boxes: np.ndarray, index: int, scores: np.ndarray | None = None) -> np.ndarray:
    """Frame (H, W, 3) RGB upscaled to >= 240 px tall, boxes in a colour ramp (scores beside
    detector boxes), 1-px border."""
    scale = max(1, round(240 / frame.shape[0]))
    img = np.ascontiguousarray(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST))
    for j, (x0, y0, x1, y1) in enumerate(boxes):
        t = j / max(1, len(boxes) - 1)
        colour = (255, int(255 * (1 - t)), int(64 + 128 * t))
        cv2.rectangle(
            img, (int(x0 * scale), int(y0 * scale)), (int(x1 * scale) - 1, int(y1 * scale) - 1), colour, 1
        )
        if scores is not None:
            cv2.putText(img, f"{scores[j]:.2f}", (int(x0 * scale) + 1, max(10, int(y0 * scale) - 2)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    cv2.putText(img, f"f{index} n={len(boxes)}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
    img[0, :] = img[-1, :] = img[:, 0] = img[:, -1] = 255
    return img
