"""``DataConfig``: every knob of what the loader samples, in one frozen dataclass.

It is the single place a sampling or augmentation knob lives: ``TrainConfig.data`` is a
``DataConfig``, ``rhovid.train.data.LoaderConfig`` extends it with the run-time fields of one
loader (batch, device, rank, ...), and ``rhovid.train.sampler.plan_sample`` reads it directly.
A new knob is one field here (plus the code that uses it); nothing copies fields between
configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rhovid.errors import UsageError
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, AugmentConfig


@dataclass(frozen=True)
class DataConfig:
    """What the loader samples: clips, their augmentation and their boxes."""

    data: str = ""
    """Dataset folder or URL (s3://, gs://, http(s)://) written by ``rhovid ingest`` (holds shards/ and index.json)."""
    split: str = "train"
    """Shard split to read."""
    rho: int = 2
    """Clips per video (rho >= 2 positives; Feichtenhofer et al. 2021, Sec. 3)."""
    frames: int = 8
    """Frames per clip T."""
    stride: int = 8
    """Temporal stride tau between sampled frames, in frames of the stored video."""
    clip_sampling: Literal["slowfast", "window", "linear_gap"] = "slowfast"
    """Where the rho clips start and which frames they take (``rhovid.train.temporal``): "slowfast" =
    PySlowFast's decoder (i.i.d. uniform starts, DELTA_CLIPS rejection, frames by linspace over
    T x tau frames at ``target_fps``); "window" = every pair of starts within ``timespan_s`` and at
    least ``min_gap_s`` apart, frames start + i tau; "linear_gap" = ConST-CL/CVRL (rho = 2, gap
    from a linearly decreasing density, frames start + i tau looping over the video)."""
    target_fps: float = 30.0
    """"slowfast": a clip spans T x tau frames at this rate (``DATA.TARGET_FPS``), i.e. T x tau x fps / target_fps stored frames."""
    delta_min_s: float | None = None
    """"slowfast": minimum gap from the end of a clip to the start of the next, seconds (``DELTA_CLIPS_MIN``; None = -inf)."""
    delta_max_s: float | None = None
    """"slowfast": maximum gap from the end of a clip to the start of the next, seconds (``DELTA_CLIPS_MAX``; None = inf)."""
    timespan_s: float = 60.0
    """"window": maximum distance between the starts of any two clips of a video, seconds."""
    min_gap_s: float = 0.0
    """"window": minimum distance between the starts of any two clips, seconds (clamped for short videos)."""
    crop: int = 224
    """Output crop side in pixels (square)."""
    augment: tuple[AugmentConfig, ...] = field(default_factory=lambda: (AugmentConfig(),))
    """Augmentation ranges per view: clip i uses ``augment[i % len(augment)]`` (one entry = every clip alike)."""
    antialias: bool = False
    """Antialiased resize when shrinking (both papers' bilinear resize has none)."""
    mean: tuple[float, float, float] = KINETICS_MEAN
    """Per-channel mean subtracted from RGB in [0, 1] (PySlowFast ``DATA.MEAN``; ConST-CL 0.5: [-1, 1] input)."""
    std: tuple[float, float, float] = KINETICS_STD
    """Per-channel std the result is divided by (PySlowFast ``DATA.STD``; ConST-CL 0.5)."""
    boxes: str | None = None
    """Box set for ConST-CL: None, "random" (ConST-CL's generator as TF runs it), "random-independent"
    (``sampler.random_boxes``) or a set name/alias of DATA/boxes.zarr."""
    max_boxes: int = 8
    """Box slots per clip K (padded, see ``box_mask``)."""
    box_frame: str = "centre"
    """Frame of a clip whose boxes are returned: "centre" or "random"."""
    workers: int | None = None
    """Decode worker processes per training process (0 = decode in the main process; None = one per core
    this process may use, ``os.sched_getaffinity``, no more than can each form a batch; ``rhovid train``
    writes the resolved number to config.json)."""


# Lower bounds of the numeric fields (a negative timespan, say, would otherwise surface as an epoch
# without batches). Subclasses add their own (``LoaderConfig``).
DATA_MINIMUM = {"rho": 1, "frames": 1, "stride": 1, "crop": 1, "max_boxes": 1, "workers": 0, "timespan_s": 0,
                "min_gap_s": 0}


def check_data_config(cfg: DataConfig, minimum: dict | None = None) -> None:
    """Reject settings no sampler can satisfy, naming the field."""
    name_of = type(cfg).__name__
    for name, low in {**DATA_MINIMUM, **(minimum or {})}.items():
        if getattr(cfg, name) is not None and getattr(cfg, name) < low:
            raise UsageError(f"{name_of}.{name} must be >= {low}, got {getattr(cfg, name)}")
    if cfg.min_gap_s > cfg.timespan_s:
        raise UsageError(f"{name_of}.min_gap_s {cfg.min_gap_s} is larger than timespan_s {cfg.timespan_s}")
    if not cfg.augment:
        raise UsageError(f"{name_of}.augment needs at least one AugmentConfig (one per view)")
    if cfg.clip_sampling not in ("slowfast", "window", "linear_gap"):
        raise UsageError(f"{name_of}.clip_sampling must be 'slowfast', 'window' or 'linear_gap', "
                         f"got {cfg.clip_sampling!r}")
    if cfg.clip_sampling == "linear_gap" and cfg.rho != 2:
        raise UsageError(f"{name_of}.clip_sampling='linear_gap' (ConST-CL) samples exactly 2 clips, got rho={cfg.rho}")
    if cfg.target_fps <= 0:
        raise UsageError(f"{name_of}.target_fps must be > 0, got {cfg.target_fps}")
    if cfg.box_frame not in ("centre", "random"):
        raise UsageError(f"{name_of}.box_frame must be 'centre' or 'random', got {cfg.box_frame!r}")
