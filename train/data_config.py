"""``DataConfig``: every knob of what the loader samples, in one frozen dataclass.

It is the single place a sampling or augmentation knob lives: ``TrainConfig.data`` is a
``DataConfig``, ``rhovid.train.data.LoaderConfig`` extends it with the run-time fields of one
loader (batch, device, rank, ...), and ``rhovid.train.sampler.plan_sample`` reads it directly.
A new knob is one field here (plus the code that uses it); nothing copies fields between
configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rhovid.train.augment import AugmentConfig


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
    timespan_s: float = 60.0
    """Maximum distance between the starts of any two clips of a video, seconds."""
    min_gap_s: float = 0.0
    """Minimum distance between the starts of any two clips of a video, seconds (clamped for short videos)."""
    crop: int = 224
    """Output crop side in pixels (square)."""
    augment: tuple[AugmentConfig, ...] = field(default_factory=lambda: (AugmentConfig(),))
    """Augmentation ranges per view: clip i uses ``augment[i % len(augment)]`` (one entry = every clip alike)."""
    boxes: str | None = None
    """Box set for ConST-CL: None, "random" (ConST-CL's generator as TF runs it), "random-independent"
    (``sampler.random_boxes``) or a set name/alias of DATA/boxes.zarr."""
    max_boxes: int = 8
    """Box slots per clip K (padded, see ``box_mask``)."""
    box_frame: str = "centre"
    """Frame of a clip whose boxes are returned: "centre" or "random"."""
    workers: int = 8
    """Decode worker processes per training process (0 = decode in the main process)."""


# Lower bounds of the numeric fields (a negative timespan, say, would otherwise surface as an epoch
# without batches). Subclasses add their own (``LoaderConfig``).
DATA_MINIMUM = {"rho": 1, "frames": 1, "stride": 1, "crop": 1, "max_boxes": 1, "workers": 0, "timespan_s": 0,
                "min_gap_s": 0}


def check_data_config(cfg: DataConfig, minimum: dict | None = None) -> None:
    """Reject settings no sampler can satisfy, naming the field."""
    name_of = type(cfg).__name__
    for name, low in {**DATA_MINIMUM, **(minimum or {})}.items():
        if getattr(cfg, name) < low:
            raise ValueError(f"{name_of}.{name} must be >= {low}, got {getattr(cfg, name)}")
    if cfg.min_gap_s > cfg.timespan_s:
        raise ValueError(f"{name_of}.min_gap_s {cfg.min_gap_s} is larger than timespan_s {cfg.timespan_s}")
    if not cfg.augment:
        raise ValueError(f"{name_of}.augment needs at least one AugmentConfig (one per view)")
    if cfg.box_frame not in ("centre", "random"):
        raise ValueError(f"{name_of}.box_frame must be 'centre' or 'random', got {cfg.box_frame!r}")
