"""What a synthetic video shows: class signatures and a per-video scene rendered with numpy.

A class (``class_spec``) is a fixed "kind of event": object shape, texture, two-colour palette
and motion pattern (drift, orbit, bounce, pulse, spin, zigzag). A ``Scene`` draws all of one
video's randomness once (background, 1..N class objects, distractors, camera pan and shake);
``Scene.render(times)`` is then a pure function of time, so a video can be rendered in any
chunking and at any length (motion is closed-form, the background tiles).

The camera is the background's motion: ``"random"`` (the default scenes: a slow pan of 0-12
px/s at 120 px per segment), ``"static"`` (none) or ``"pan"`` (``pan_speed`` px/s in a random
direction per segment). Objects move in frame coordinates whatever the camera, as if the
camera followed them, so a static and a panning version of one scene differ only in the
background: the pair the box-prior benchmark compares. ``render(times, owner=...)`` also
fills an object-id map, from which ``object_boxes`` reads every visible object's box (the
ground truth ``rhovid synth --boxes`` writes).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

DRAW_BATCH = 8
"""Frames per vectorised object draw: its pixel box is the union of its positions over the batch."""
SHAPES = ("disk", "square", "triangle", "ring", "cross", "diamond", "ellipse", "star")
TEXTURES = ("stripes", "checker", "dots", "rings", "waves")
MOTIONS = ("drift", "orbit", "bounce", "pulse", "spin", "zigzag")
CAMERAS = ("random", "static", "pan")
"""Background motion: a random slow pan (default), none, or a fixed-speed pan."""


@dataclass(frozen=True)
class ClassSpec:
    """The fixed appearance + motion signature of one class."""

    index: int
    shape: str
    texture: str
    hues: tuple[float, float]
    motion: str
    direction: float = 0.0
    """Drift/zigzag heading in radians, or +-1 turning sense for orbit/spin."""
    tex_freq: float = 2.5
    tex_angle: float = 0.0

    @property
    def name(self) -> str:
        return f"c{self.index:02d}_{self.shape}_{self.motion}"


# The first eight classes are hand-picked to differ in every attribute; later ones are
# drawn from a class-indexed RNG (hues spaced by the golden ratio).
_FIXED = [
    ("disk", "stripes", (0.00, 0.14), "drift", 0.0),
    ("square", "checker", (0.58, 0.50), "orbit", 1.0),
    ("triangle", "dots", (0.33, 0.20), "bounce", 0.0),
    ("ring", "rings", (0.83, 0.75), "pulse", 0.0),
    ("cross", "waves", (0.08, 0.00), "spin", -1.0),
    ("diamond", "stripes", (0.47, 0.62), "zigzag", math.pi),
    ("ellipse", "checker", (0.92, 0.04), "drift", math.pi / 2),
    ("star", "dots", (0.70, 0.58), "orbit", -1.0),
]


def class_spec(k: int) -> ClassSpec:
    """The class definition of class index ``k`` (independent of the seed)."""
    rng = np.random.default_rng([0x5C1A55, k])
    tex_freq, tex_angle = float(rng.uniform(2.0, 3.5)), float(rng.uniform(0, math.pi))
    if k < len(_FIXED):
        shape, texture, hues, motion, direction = _FIXED[k]
        return ClassSpec(k, shape, texture, hues, motion, direction, tex_freq, tex_angle)
    h = (k * 0.61803398875) % 1.0
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    direction = float(rng.uniform(0, 2 * math.pi)) if motion in ("drift", "zigzag") else float(rng.choice([-1, 1]))
    return ClassSpec(k, SHAPES[int(rng.integers(len(SHAPES)))], TEXTURES[int(rng.integers(len(TEXTURES)))],
                     (h, (h + rng.uniform(0.06, 0.2)) % 1.0), motion, direction, tex_freq, tex_angle)


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), np.float32) * 255


def _reflect(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Triangle wave folding ``u`` into [lo, hi]: position of a ball bouncing between walls."""
    span = max(hi - lo, 1e-6)
    m = np.mod(u - lo, 2 * span)
    return lo + span - np.abs(m - span)


@dataclass
class _Object:
    shape: str
    texture: str
    colors: tuple[np.ndarray, np.ndarray]
    radius: float
    tex_freq: float
    tex_angle: float
    motion: str
    params: dict


class Scene:
    """All randomness of one video, drawn once; ``render(times)`` is then a pure function of time."""

    def __init__(self, spec: ClassSpec, seed: int, index: int, width: int, height: int,
                 max_objects: int = 3, max_distractors: int = 2, segment_s: float = 0.0,
                 camera: str = "random", pan_speed: float = 60.0):
        if camera not in CAMERAS:
            raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}")
        rng = np.random.default_rng([seed, spec.index, index])
        self.camera, self.pan_speed = camera, float(pan_speed)
        self.w, self.h = width, height
        self.unit = min(width, height) / 120.0  # sizes/speeds are defined at 120 px and scaled
        self.key, self.max_distractors, self.segment_s = (seed, spec.index, index), max_distractors, segment_s
        backdrop = self._background(rng)
        hue_jit = rng.normal(0, 0.025)
        distractors = [self._distractor(rng) for _ in range(int(rng.integers(0, max_distractors + 1)))]
        # segment -> (background canvas, tiled canvas, pan, distractors); segment 0 is drawn from the
        # video's own stream, so segment_s=0 (one segment) renders exactly the unsegmented scene.
        self._segments = {0: (*backdrop, distractors)}
        self.objects = [self._class_object(rng, spec, hue_jit) for _ in range(int(rng.integers(1, max_objects + 1)))]
        """The class objects (persist over the whole video, across segments)."""
        self.shake = (rng.uniform(0, 2 * math.pi, 2), rng.uniform(0.5, 1.5) * self.unit)

    def segment(self, k: int) -> tuple:
        """Segment ``k``'s (canvas, tiled canvas, pan, distractors); later segments have their own
        stream ``(seed, class, index, k)``, so they do not depend on which segments were rendered."""
        if k not in self._segments:
            rng = np.random.default_rng([*self.key, k])
            backdrop = self._background(rng)
            self._segments[k] = (*backdrop, [self._distractor(rng)
                                             for _ in range(int(rng.integers(0, self.max_distractors + 1)))])
        return self._segments[k]

    def segment_of(self, t: np.ndarray) -> np.ndarray:
        """Segment index of each time in ``t`` (all 0 without segments)."""
        t = np.asarray(t, np.float64)
        if not self.segment_s > 0:
            return np.zeros(t.shape, np.int64)
        return np.maximum(np.floor(t / self.segment_s), 0).astype(np.int64)

    @property
    def canvas(self) -> np.ndarray:
        """Background canvas of segment 0, (2H, 2W, 3) uint8, periodic."""
        return self._segments[0][0]

    def _background(self, rng) -> tuple[np.ndarray, np.ndarray, tuple]:
        hc, wc = 2 * self.h, 2 * self.w
        y = np.arange(hc, dtype=np.float32)[:, None] / hc
        x = np.arange(wc, dtype=np.float32)[None, :] / wc
        lum = np.zeros((hc, wc), np.float32)
        for _ in range(5):  # integer cycles per canvas: the texture tiles, so panning can wrap forever
            fy, fx = rng.integers(-8, 9, 2)
            lum += rng.uniform(0.3, 1.0) * np.sin(2 * math.pi * (fy * y + fx * x) + rng.uniform(0, 2 * math.pi))
        cell = int(rng.choice([4, 8, 16]))
        blocks = rng.uniform(-1, 1, (hc // cell + 1, wc // cell + 1)).astype(np.float32)
        lum += 1.2 * np.repeat(np.repeat(blocks, cell, 0), cell, 1)[:hc, :wc]
        lum = (lum - lum.min()) / max(float(lum.max() - lum.min()), 1e-6)
        # Low saturation: colour belongs to the objects, texture to everything.
        c0 = _rgb(rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.15, 0.4))
        c1 = _rgb(rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.6, 0.9))
        canvas = (c0 + lum[..., None] * (c1 - c0)).astype(np.uint8)  # (2H, 2W, 3), periodic
        tiled = np.tile(canvas, (2, 2, 1))  # any H x W window at offsets < (2H, 2W) is one slice
        speed = rng.uniform(0, 12) * self.unit  # camera pan, px/s (drawn in every mode: same RNG stream)
        ang = rng.uniform(0, 2 * math.pi)
        if self.camera != "random":
            speed = 0.0 if self.camera == "static" else self.pan_speed * self.unit
        return canvas, tiled, (rng.uniform(0, wc), rng.uniform(0, hc), speed * math.cos(ang), speed * math.sin(ang))

    def _class_object(self, rng, spec: ClassSpec, hue_jit: float) -> _Object:
        colors = tuple(_rgb(h + hue_jit + rng.normal(0, 0.01), rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
                       for h in spec.hues)
        r = rng.uniform(11, 18) * self.unit
        w, h, m = self.w, self.h, spec.motion
        p = {"x0": rng.uniform(r, w - r), "y0": rng.uniform(r, h - r), "phase": rng.uniform(0, 2 * math.pi),
             "speed": rng.uniform(0.75, 1.3), "angle0": rng.uniform(0, 2 * math.pi)}
        if m == "drift" or m == "zigzag":
            p["heading"] = spec.direction + rng.normal(0, 0.15)
        if m == "orbit":
            p["orbit_r"] = rng.uniform(0.2, 0.32) * min(w, h)
            p["x0"], p["y0"] = w / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
        if m == "bounce":
            p["heading"] = rng.uniform(0, 2 * math.pi)
        p["sense"] = spec.direction if m in ("orbit", "spin") else 1.0
        return _Object(spec.shape, spec.texture, colors, r, spec.tex_freq, spec.tex_angle, m, p)

    def _distractor(self, rng) -> _Object:
        colors = (_rgb(rng.uniform(), rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.9)),
                  _rgb(rng.uniform(), rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.9)))
        r = rng.uniform(6, 11) * self.unit
        p = {"x0": rng.uniform(r, self.w - r), "y0": rng.uniform(r, self.h - r),
             "amp": rng.uniform(0.1, 0.3, 4) * np.array([self.w, self.h, self.w, self.h]),
             "freq": rng.uniform(0.05, 0.3, 4), "phases": rng.uniform(0, 2 * math.pi, 4),
             "angle0": rng.uniform(0, 2 * math.pi)}
        return _Object(SHAPES[int(rng.integers(len(SHAPES)))], str(rng.choice(["solid", *TEXTURES])), colors, r,
                       float(rng.uniform(1.5, 3.5)), float(rng.uniform(0, math.pi)), "wander", p)

    def _track(self, o: _Object, t: np.ndarray):
        """Centre x, y, scale and angle of object ``o`` at times ``t`` (each shape (T,))."""
        p, u = o.params, self.unit
        one, zero = np.ones_like(t), np.zeros_like(t)
        if o.motion == "wander":  # smooth, aperiodic-looking path; no class information
            a, f, ph = p["amp"], p["freq"], p["phases"]
            x = p["x0"] + a[0] * np.sin(2 * math.pi * f[0] * t + ph[0]) + a[2] * np.sin(2 * math.pi * f[2] * t + ph[2])
            y = p["y0"] + a[1] * np.sin(2 * math.pi * f[1] * t + ph[1]) + a[3] * np.sin(2 * math.pi * f[3] * t + ph[3])
            return _reflect(x, 0, self.w), _reflect(y, 0, self.h), one, p["angle0"] + 0.3 * t
        v = 32 * u * p["speed"]  # px/s
        if o.motion in ("drift", "zigzag"):
            hx, hy = math.cos(p["heading"]), math.sin(p["heading"])
            x, y = p["x0"] + v * hx * t, p["y0"] + v * hy * t
            if o.motion == "zigzag":  # sideways oscillation across the heading
                s = 0.22 * min(self.w, self.h) * np.sin(2 * math.pi * 0.7 * p["speed"] * t + p["phase"])
                x, y = x - hy * s, y + hx * s
            m = 1.5 * o.radius  # wrap outside the frame, so the jump is never visible
            return (np.mod(x + m, self.w + 2 * m) - m, np.mod(y + m, self.h + 2 * m) - m, one,
                    p["angle0"] + zero)
        if o.motion == "orbit":
            w = p["sense"] * 2 * math.pi * 0.35 * p["speed"]
            return (p["x0"] + p["orbit_r"] * np.cos(w * t + p["phase"]),
                    p["y0"] + p["orbit_r"] * np.sin(w * t + p["phase"]), one, p["angle0"] + zero)
        if o.motion == "bounce":
            r = o.radius
            x = _reflect(p["x0"] + 1.6 * v * math.cos(p["heading"]) * t, r, self.w - r)
            y = _reflect(p["y0"] + 1.6 * v * math.sin(p["heading"]) * t, r, self.h - r)
            return x, y, one, p["angle0"] + zero
        # pulse and spin: near-stationary centre with a slow small sway
        x = p["x0"] + 4 * u * np.sin(0.5 * t + p["phase"])
        y = p["y0"] + 4 * u * np.cos(0.4 * t + p["phase"])
        if o.motion == "pulse":
            return x, y, 1.0 + 0.45 * np.sin(2 * math.pi * 0.8 * p["speed"] * t + p["phase"]), p["angle0"] + zero
        return x, y, one, p["angle0"] + p["sense"] * 2 * math.pi * 0.4 * p["speed"] * t  # spin

    def object_ids(self, k: int) -> list[tuple[int, str]]:
        """(id, kind) of every object that can appear in segment ``k``: the class objects are
        ids 0..n-1 in every segment; segment k's distractors are ``n + 1000 * k + i``."""
        n = len(self.objects)
        return [(i, "class") for i in range(n)] + [
            (n + 1000 * k + i, "distractor") for i in range(len(self.segment(k)[3]))
        ]

    def render(self, t: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
        """Frames at times ``t`` (T,) as uint8 RGB of shape (T, H, W, 3).

        Args:
            t: (T,) times in seconds.
            owner: optional (T, H, W) int32 array, overwritten with the id of the object each
                pixel shows (-1 = background); ids as in ``object_ids``.
        """
        t = np.asarray(t, np.float64)
        frames = np.empty((len(t), self.h, self.w, 3), np.uint8)
        if owner is not None:
            owner[:] = -1
        ph, amp = self.shake
        sx, sy = amp * np.sin(2.3 * t + ph[0]), amp * np.sin(1.9 * t + ph[1])  # hand-held camera shake
        seg = self.segment_of(t)
        for k in np.unique(seg):
            idx = np.flatnonzero(seg == k)
            whole = len(idx) == len(t)
            sub = frames if whole else frames[idx]
            canvas, tiled, (x0, y0, vx, vy), distractors = self.segment(int(k))
            hc, wc = canvas.shape[:2]
            ox = np.floor(x0 + vx * t[idx]).astype(np.int64)
            oy = np.floor(y0 + vy * t[idx]).astype(np.int64)
            for i, (y, x) in enumerate(zip(oy % hc, ox % wc)):  # slices of the tiled canvas: no gather
                sub[i] = tiled[y:y + self.h, x:x + self.w]
            sub_owner = None if owner is None else (owner if whole else owner[idx])
            ids = [i for i, _ in self.object_ids(int(k))[len(self.objects):]]
            self._draw_objects(sub, distractors, ids, t[idx], sx[idx], sy[idx], sub_owner)  # behind
            if not whole:
                frames[idx] = sub
                if owner is not None:
                    owner[idx] = sub_owner
        self._draw_objects(frames, self.objects, range(len(self.objects)), t, sx, sy, owner)
        return frames

    def _draw_objects(self, frames: np.ndarray, objects: list, ids, t: np.ndarray, sx: np.ndarray,
                      sy: np.ndarray, owner: np.ndarray | None = None):
        for o, oid in zip(objects, ids):
            cx, cy, sc, ang = self._track(o, t)
            for a in range(0, len(t), DRAW_BATCH):  # short batches keep a moving object's box small
                b = slice(a, a + DRAW_BATCH)
                _draw(frames[b], o, cx[b] + sx[b], cy[b] + sy[b], sc[b], ang[b],
                      None if owner is None else (owner[b], oid))


def object_boxes(owner: np.ndarray) -> list[tuple[int, int, int, int, int, int, int]]:
    """Visible box of every object in an id map from ``Scene.render(..., owner=)``.

    Args:
        owner: (T, H, W) int object ids, -1 = background.

    Returns:
        Rows ``(frame, id, x0, y0, x1, y1, pixels)``: pixel-edge box of the object's visible
        pixels in frame ``frame`` (0-based within ``owner``) and how many there are, by frame
        then id; objects hidden or outside the frame have no row.
    """
    from scipy import ndimage

    rows = []
    for f, ids in enumerate(owner):
        present, compact = np.unique(ids, return_inverse=True)  # ids are sparse (1000 per segment)
        compact = compact.reshape(ids.shape) + (1 if present[0] >= 0 else 0)  # background -> label 0
        labels = present[present >= 0]
        counts = np.bincount(compact.reshape(-1), minlength=len(labels) + 1)
        for j, sl in enumerate(ndimage.find_objects(compact, max_label=len(labels)), start=1):
            ys, xs = sl
            rows.append((f, int(labels[j - 1]), xs.start, ys.start, xs.stop, ys.stop, int(counts[j])))
    return rows


def _draw(frames: np.ndarray, o: _Object, cx, cy, scale, angle, owner=None) -> None:
    """Paint object ``o`` into ``frames`` (T, H, W, 3) in place, within its bounding box over the chunk;
    ``owner`` = ``(ids (T, H, W), id)`` also marks the painted pixels with the object's id."""
    T, H, W, _ = frames.shape
    reach = 1.25 * o.radius * float(np.max(scale))
    xa, xb = max(int(np.floor(cx.min() - reach)), 0), min(int(np.ceil(cx.max() + reach)) + 1, W)
    ya, yb = max(int(np.floor(cy.min() - reach)), 0), min(int(np.ceil(cy.max() + reach)) + 1, H)
    if xa >= xb or ya >= yb:
        return
    dx = (np.arange(xa, xb, dtype=np.float32)[None, None, :] - cx[:, None, None].astype(np.float32))
    dy = (np.arange(ya, yb, dtype=np.float32)[None, :, None] - cy[:, None, None].astype(np.float32))
    inv = (1.0 / (o.radius * scale)).astype(np.float32)[:, None, None]
    c, s = np.cos(angle).astype(np.float32)[:, None, None], np.sin(angle).astype(np.float32)[:, None, None]
    u = (dx * c + dy * s) * inv  # object coordinates: texture moves and turns with the object
    v = (dy * c - dx * s) * inv
    mask = _shape_mask(o.shape, u, v)
    if not mask.any():
        return
    pat = _texture(o.texture, u[mask], v[mask], o.tex_freq, o.tex_angle)  # only where the object is
    c0, c1 = o.colors
    region = frames[:, ya:yb, xa:xb]
    region[mask] = np.where(pat[:, None], c1, c0).astype(np.uint8)
    if owner is not None:
        ids, oid = owner
        ids[:, ya:yb, xa:xb][mask] = oid


def _shape_mask(shape: str, u, v):
    au, av_ = np.abs(u), np.abs(v)
    if shape == "disk":
        return u * u + v * v < 1
    if shape == "square":
        return np.maximum(au, av_) < 0.85
    if shape == "triangle":
        return (v < 0.6) & (0.866 * u - 0.5 * v < 0.6) & (-0.866 * u - 0.5 * v < 0.6)
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 < 1) & (r2 > 0.36)
    if shape == "cross":
        return ((au < 0.33) & (av_ < 1)) | ((av_ < 0.33) & (au < 1))
    if shape == "diamond":
        return au + av_ < 1
    if shape == "ellipse":
        return u * u + (v / 0.55) ** 2 < 1
    if shape == "star":
        return np.sqrt(u * u + v * v) < 0.5 + 0.5 * np.abs(np.cos(2.5 * np.arctan2(v, u)))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u, v, f: float, a: float):
    if texture == "solid":
        return np.zeros(u.shape, bool)
    if texture == "stripes":
        return np.sin(math.pi * f * (u * math.cos(a) + v * math.sin(a))) > 0
    if texture == "checker":
        return (np.floor(f * u) + np.floor(f * v)) % 2 == 0
    if texture == "dots":
        return (np.mod(f * u, 1) - 0.5) ** 2 + (np.mod(f * v, 1) - 0.5) ** 2 < 0.09
    if texture == "rings":
        return np.sin(math.pi * f * 1.5 * np.sqrt(u * u + v * v)) > 0
    if texture == "waves":
        return np.sin(math.pi * f * u + 1.5 * np.sin(math.pi * f * v)) > 0
    raise ValueError(f"unknown texture {texture!r}")
