"""Deterministic synthetic videos: a Kinetics-style tree ``OUT/<class>/<name>.mp4``.

Each class is a fixed "kind of event": an object shape, a texture, a two-colour palette and
a motion pattern (drift, orbit, bounce, pulse, spin, zigzag). Every video of a class shows
1-3 such objects over a panning textured background, plus distractor objects whose shape,
colour and (wandering) motion carry no class information. The class is therefore learnable
from appearance *and* from motion, and it holds for the whole video: rho-methods take
positives up to 60 s apart in one video (Feichtenhofer et al. 2021, Sec. 3), so a video's
identity must persist over time, and several objects per frame give the region priors
(SLIC / FH / detectors, ConST-CL Sec. 3.3) something to find.

Class definitions depend only on the class index (not on ``seed``), so trees made with
different seeds share their classes (e.g. a train tree with seed 0 and a test tree with
seed 1). Per-video nuisances (background, positions, speeds, colour jitter, distractors,
pan) come from ``(seed, class, index)``. With ``segment_s`` there are scene cuts: background,
pan and distractors are re-drawn every ``segment_s`` seconds and only the class objects go
on, so what persists through a video is its class (as an actor and action persist over shot
changes in real video). Motion is closed-form in time and the background tiles, so any
length costs the same per frame: frames are rendered with numpy in chunks and piped as raw
RGB into ffmpeg (no shell).

``camera`` picks the background's motion (``synth_scene.CAMERAS``): the default random slow
pan, ``static`` or a fixed-speed ``pan``. ``synthesize(..., boxes=DIR)`` also writes every base
video's ground-truth object boxes to ``DIR/<class>/<name>.json`` (format: ingest/FORMAT.md,
"Synthetic ground-truth boxes"; read back with ``read_synth_boxes``).

``variants`` additionally write awkward encodings of the first ``variant_videos`` videos of
every class (same content, name suffix ``_<variant>``) to exercise ingest's input handling.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from rhovid.atomic import atomic_path, atomic_write_json
from rhovid.errors import UsageError
from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.synth_scene import CAMERAS, Scene, class_spec, object_boxes

BOXES_FORMAT = "rhovid-synth-boxes/1"
"""Format id of the ground-truth box files (ingest/FORMAT.md)."""
BOX_COLUMNS = ("frame", "id", "x0", "y0", "x1", "y1", "pixels")

TAG = "rhovid-synth v1"
"""Prefix of the ``comment`` tag written into every file; a rerun keeps files whose tag matches."""

CHUNK = 32
"""Frames rendered per numpy batch: bounds memory for minutes-long videos."""

# Base codecs: codec -> (container extension, encoder arguments).
CODECS: dict[str, tuple[str, list[str]]] = {
    "libx264": ("mp4", ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]),
    "mpeg4": ("mp4", ["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"]),
    "libvpx-vp9": ("webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                            "-crf", "32", "-b:v", "0", "-pix_fmt", "yuv420p"]),
    "mjpeg": ("avi", ["-c:v", "mjpeg", "-q:v", "4", "-pix_fmt", "yuvj420p"]),
    "ffv1": ("mkv", ["-c:v", "ffv1", "-pix_fmt", "yuv420p"]),
}

_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"]
# Awkward variants: name -> (extension, encoder arguments). "vfr", "odd" and "rotate" also
# change timing, size or input options; see write_video.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    # Irregular timestamps (setpts below); libx264 would round them to 1/fps without the
    # fine encoder time base, and ffmpeg would duplicate/drop frames without passthrough.
    "vfr": ("mp4", [*_X264, "-pix_fmt", "yuv420p", "-fps_mode", "passthrough", "-enc_time_base:v", "1/90000"]),
    # Odd width/height in 4:2:0: libx264 refuses odd sizes, MPEG-4 part 2 (Xvid-style) allows them.
    "odd": ("mkv", ["-c:v", "mpeg4", "-q:v", "3", "-pix_fmt", "yuv420p"]),
    # Stored upright, displayed rotated by 90 degrees through the display matrix side data.
    "rotate": ("mp4", [*_X264, "-pix_fmt", "yuv420p"]),
    "10bit": ("mp4", [*_X264, "-pix_fmt", "yuv420p10le"]),
    "422": ("mp4", [*_X264, "-pix_fmt", "yuv422p"]),
    "444": ("mp4", [*_X264, "-pix_fmt", "yuv444p"]),
    "vp9": CODECS["libvpx-vp9"],
    "mjpeg": CODECS["mjpeg"],
    # A second (AAC sine-tone) stream, for --keep-audio and "video stream is not stream 0"-style code paths.
    "audio": ("mp4", [*_X264, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k", "-shortest"]),
}


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Content depends on (seed, class, index) and the size/fps/length fields."""

    classes: int = 4
    """Number of classes (folders ``OUT/cNN_<shape>_<motion>/``)."""
    per_class: int = 4
    """Videos per class."""
    seconds: float = 6.0
    """Length of every video in seconds (minutes are fine: memory is bounded by ``CHUNK``)."""
    width: int = 160
    """Frame width in pixels (even for the 4:2:0 base codecs)."""
    height: int = 120
    """Frame height in pixels (even for the 4:2:0 base codecs)."""
    fps: float = 30.0
    """Frame rate; each video has ``round(seconds * fps)`` frames."""
    seed: int = 0
    """Seed of the per-video nuisances; class definitions do not depend on it."""
    codec: str = "libx264"
    """Encoder of the base videos, one of ``CODECS`` (libx264 -> H.264 4:2:0 in .mp4)."""
    variants: tuple[str, ...] = ()
    """Extra awkward encodings (keys of ``VARIANTS``), written as ``<name>_<variant>.<ext>``."""
    variant_videos: int = 1
    """How many videos per class (the first ones) also get each variant."""
    max_objects: int = 3
    """Class objects per video are drawn from 1..max_objects."""
    max_distractors: int = 2
    """Distractor objects (no class information) per video are drawn from 0..max_distractors."""
    segment_s: float = 0.0
    """Scene cuts: every ``segment_s`` seconds the background, camera pan and distractors are re-drawn
    while the class objects go on (0 = one segment). Without cuts a video's background identifies it,
    and clips of one video match on it instead of on the class (a per-video shortcut for rho-methods)."""
    camera: str = "random"
    """Background motion: random (a slow pan of 0-12 px/s at 120 px, per segment), static (none) or
    pan (``pan_speed`` in a random direction per segment). Objects move the same way in every mode."""
    pan_speed: float = 60.0
    """camera=pan: pan speed in px/s at 120 px frame height (scaled with the frame: 128 px/s at 256)."""
    workers: int = 0
    """0 = generate in this process; N = a local pool of N processes (ffmpeg runs one thread each)."""

    def __post_init__(self):
        variants = self.variants.split(",") if isinstance(self.variants, str) else self.variants
        object.__setattr__(self, "variants", tuple(v for v in variants if v))
        object.__setattr__(self, "fps", float(self.fps))  # 30 and 30.0 must give the same file tag
        object.__setattr__(self, "seconds", float(self.seconds))
        if self.classes < 1 or self.per_class < 1:
            raise UsageError(f"classes and per_class must be >= 1, got {self.classes}, {self.per_class}")
        if not self.seconds > 0 or not self.fps > 0 or round(self.seconds * self.fps) < 1:
            raise UsageError(f"seconds={self.seconds} x fps={self.fps} gives no frames")
        if self.width < 16 or self.height < 16:
            raise UsageError(f"width x height must be at least 16x16, got {self.width}x{self.height}")
        if self.codec not in CODECS:
            raise UsageError(f"unknown codec {self.codec!r}; choose from {sorted(CODECS)}")
        if self.codec != "ffv1" and (self.width % 2 or self.height % 2):
            raise UsageError(f"{self.codec} 4:2:0 needs even width/height, got {self.width}x{self.height} "
                             "(use variants=('odd',) for odd sizes)")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise UsageError(f"unknown variant(s) {unknown}; choose from {sorted(VARIANTS)}")
        if self.max_objects < 1 or self.max_distractors < 0 or self.variant_videos < 0:
            raise UsageError("max_objects must be >= 1, max_distractors and variant_videos >= 0")
        object.__setattr__(self, "segment_s", float(self.segment_s))
        if not self.segment_s >= 0:
            raise UsageError(f"segment_s must be >= 0 (0 = no scene cuts), got {self.segment_s}")
        object.__setattr__(self, "pan_speed", float(self.pan_speed))
        if self.camera not in CAMERAS:
            raise UsageError(f"unknown camera {self.camera!r}; choose from {list(CAMERAS)}")
        if not self.pan_speed >= 0:
            raise UsageError(f"pan_speed must be >= 0, got {self.pan_speed}")


@dataclass(frozen=True)
class VideoTask:
    """One file to write (picklable: it travels to worker processes)."""

    path: str
    cfg: SynthConfig
    class_index: int
    index: int
    variant: str = ""
    tag: str = field(default="", compare=False)
    boxes_path: str = ""
    """Where to write the ground-truth boxes ("" = none; base videos only)."""


def video_names(cfg: SynthConfig) -> list[VideoTask]:
    """Every file ``synthesize`` writes, in class / index / variant order (paths relative)."""
    tasks = []
    for k in range(cfg.classes):
        spec = class_spec(k)
        for i in range(cfg.per_class):
            stem = f"{spec.name}/{spec.name}_{i:04d}"
            tasks.append(VideoTask(f"{stem}.{CODECS[cfg.codec][0]}", cfg, k, i))
            if i < cfg.variant_videos:
                tasks += [VideoTask(f"{stem}_{v}.{VARIANTS[v][0]}", cfg, k, i, v) for v in cfg.variants]
    return tasks


def synthesize(out: Path, cfg: SynthConfig, progress: bool = False, boxes: Path | None = None) -> list[Path]:
    """Write the synthetic tree under ``out``; return every file path (class/index order).

    Files whose embedded tag matches this config are kept (a rerun resumes); every write
    is atomic, so an interrupted run leaves no partial video.

    Args:
        out: the tree's root folder.
        cfg: what to generate.
        progress: show a progress bar.
        boxes: also write every base video's ground-truth object boxes to
            ``boxes/<class>/<name>.json`` (outside ``out``: ingest would take any file in the
            tree for a video). A video is redone when its box file is missing or stale.

    Raises:
        RuntimeError: if ffmpeg failed for some file (after trying all of them).
    """
    from rhovid.executor import map_unordered

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    tasks = [VideoTask(str(out / t.path), t.cfg, t.class_index, t.index, t.variant, _tag(t),
                       str(Path(boxes) / Path(t.path).with_suffix(".json")) if boxes and not t.variant else "")
             for t in video_names(cfg)]
    todo = [t for t in tasks if not (_is_current(Path(t.path), t.tag) and _boxes_current(t))]
    errors = [r for r in map_unordered(write_video, todo, workers=cfg.workers, desc="synth", unit="video",
                                       progress=progress) if not r.ok]
    if errors:
        first = errors[0]
        raise RuntimeError(f"{len(errors)} of {len(todo)} synthetic videos failed; first: {first.task.path}: "
                           f"{first.error}") from first.error
    return [Path(t.path) for t in tasks]


def _tag(task: VideoTask) -> str:
    fields = {k: v for k, v in asdict(task.cfg).items() if k not in ("classes", "per_class", "workers",
                                                                       "variants", "variant_videos")}
    if not fields["segment_s"]:  # added later: files written before it existed keep their tag
        del fields["segment_s"]
    if fields["camera"] == "random":  # likewise camera and pan_speed (pan_speed only moves camera=pan)
        del fields["camera"], fields["pan_speed"]
    elif fields["camera"] == "static":
        del fields["pan_speed"]
    blob = json.dumps([fields, task.class_index, task.index, task.variant], sort_keys=True)
    return f"{TAG} {hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def _is_current(path: Path, tag: str) -> bool:
    if not path.is_file():
        return False
    import av

    try:
        with av.open(str(path)) as c:
            return c.metadata.get("comment", c.metadata.get("COMMENT")) == tag
    except (av.error.FFmpegError, OSError):
        return False


def _boxes_current(task: VideoTask) -> bool:
    if not task.boxes_path:
        return True
    try:
        return read_synth_boxes(task.boxes_path)["tag"] == task.tag
    except (OSError, ValueError, KeyError):
        return False


def read_synth_boxes(path: str | Path) -> dict:
    """A ground-truth box file written by ``synthesize(..., boxes=DIR)``.

    Returns:
        The JSON's fields, with ``boxes`` as an (M, 7) int64 array of rows
        ``frame, id, x0, y0, x1, y1, pixels`` (columns ``BOX_COLUMNS``).

    Raises:
        ValueError: not a box file of this format (names the file).
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict) or d.get("format") != BOXES_FORMAT or list(d.get("columns", [])) != list(BOX_COLUMNS):
        raise ValueError(f"{path}: not a {BOXES_FORMAT} file")
    d["boxes"] = np.asarray(d["boxes"], np.int64).reshape(-1, len(BOX_COLUMNS))
    return d


def frame_times(n: int, fps: float, vfr: bool = False) -> np.ndarray:
    """Presentation times (s) of the ``n`` frames; VFR jitters them deterministically (still increasing)."""
    idx = np.arange(n, dtype=np.float64)
    if vfr:  # delta between frames stays in [0.2, 1.8] / fps: monotone, clearly irregular
        idx = idx + 0.4 * np.sin(1.7 * idx)
    return idx / fps


def write_video(task: VideoTask) -> int:
    """Render and encode one video to ``task.path`` atomically; return its size in bytes."""
    cfg, path = task.cfg, Path(task.path)
    width, height = cfg.width, cfg.height
    if task.variant == "odd":
        width, height = width | 1, height | 1
    n = max(1, round(cfg.seconds * cfg.fps))
    times = frame_times(n, cfg.fps, vfr=task.variant == "vfr")
    scene = Scene(class_spec(task.class_index), cfg.seed, task.index, width, height, cfg.max_objects,
                  cfg.max_distractors, cfg.segment_s, cfg.camera, cfg.pan_speed)
    rows: list = []
    owner = np.empty((CHUNK, height, width), np.int32) if task.boxes_path else None
    ext, enc = VARIANTS[task.variant] if task.variant else CODECS[cfg.codec]
    rate = str(Fraction(cfg.fps).limit_denominator(1001))
    pre = ["-noautorotate", "-display_rotation", "90"] if task.variant == "rotate" else []
    filters = []
    if task.variant == "vfr":
        filters = ["-vf", f"settb=1/90000,setpts=(N+0.4*sin(1.7*N))/(({rate})*TB)"]
    audio = ["-an"]
    if task.variant == "audio":
        audio = ["-f", "lavfi", "-i", f"sine=frequency={220 * (1 + task.class_index % 4)}:sample_rate=16000:"
                 f"duration={n / cfg.fps:.3f}", "-map", "0:v", "-map", "1:a"]
    fmt = {"mp4": "mp4", "mkv": "matroska", "webm": "webm", "avi": "avi"}[ext]
    with atomic_path(path) as tmp, tempfile.TemporaryFile() as log:
        argv = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y",
                *pre, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate,
                "-i", "pipe:0", *audio, *filters, *enc, "-threads", "1",
                "-metadata", f"comment={task.tag}", "-f", fmt, str(tmp)]
        # stderr goes to a file, not a pipe: a full stderr pipe would deadlock our stdin writes.
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for s in range(0, n, CHUNK):
                chunk = times[s:s + CHUNK]
                own = None if owner is None else owner[:len(chunk)]
                proc.stdin.write(scene.render(chunk, owner=own).tobytes())
                if own is not None:
                    rows += [(f + s, *rest) for f, *rest in object_boxes(own)]
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg exited early: its exit status and log below say why
        except BaseException:
            proc.kill()  # our side failed (or Ctrl-C): no orphan ffmpeg, atomic_path drops the temp file
            proc.wait()
            raise
        rc = proc.wait()
        if rc != 0:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"ffmpeg failed (exit {rc}) writing {path}: {tail}")
    if task.boxes_path:
        _write_boxes(task, scene, path.name, width, height, n, rows)
    return path.stat().st_size


def _write_boxes(task: VideoTask, scene: Scene, video: str, width: int, height: int, n: int, rows: list) -> None:
    segments = sorted({int(k) for k in scene.segment_of(frame_times(n, task.cfg.fps))})
    objects = [{"id": i, "kind": "class", "shape": o.shape, "segment": None} for i, o in enumerate(scene.objects)]
    for k in segments:
        for (oid, _), o in zip(scene.object_ids(k)[len(scene.objects):], scene.segment(k)[3]):
            objects.append({"id": oid, "kind": "distractor", "shape": o.shape, "segment": k})
    atomic_write_json(task.boxes_path, indent=None, obj={
        "format": BOXES_FORMAT, "video": video, "tag": task.tag, "width": width, "height": height,
        "fps": task.cfg.fps, "num_frames": n, "camera": task.cfg.camera, "objects": objects,
        "columns": list(BOX_COLUMNS), "boxes": [[int(v) for v in r] for r in rows],
    })
