"""Fields and checks shared by the detector priors (torchvision, detectron2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from rhovid.errors import UsageError
from rhovid.store.regions import SelectParams

RUNTIME = {"hash": False}  # field metadata: does not change the boxes, not part of the set name


@dataclass(frozen=True)
class DetectorParams(SelectParams):
    """Class filter, score threshold and batching of a detection model."""

    scored: ClassVar[bool] = True
    method: ClassVar[str] = "detector"

    classes: str = "person"
    """person (COCO person boxes only) or all (every class)."""
    score_min: float = 0.5
    """Drop detections scoring below this."""
    batch_size: int = field(default=8, metadata=RUNTIME)
    """Frames per forward pass."""
    device: str = field(default="auto", metadata=RUNTIME)
    """auto (cuda when available), cuda or cpu."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.classes not in ("person", "all"):
            raise UsageError(f"{self.method} classes must be 'person' or 'all', got {self.classes!r}")
        if self.batch_size < 1:
            raise UsageError(f"{self.method} batch_size must be >= 1")
