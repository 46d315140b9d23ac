"""torchvision detection-model boxes (ConST-CL Sec. 4.1 "person / object detector" priors).

Runs only where torchvision imports (its PyPI wheel is a CUDA build that does not import
beside the CPU torch of DESIGN.md decision 7, so typically on GPU machines), from a local
weights file: no downloads. Frames are batched and run on CUDA when present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from rhovid.errors import NotFoundError, UsageError
from rhovid.store.priors.detector import DetectorParams

COCO_PERSON = 1  # torchvision's COCO category id for "person" (0 is background)


@dataclass(frozen=True)
class TorchvisionParams(DetectorParams):
    """A torchvision.models.detection model loaded from a local state-dict file."""

    method: ClassVar[str] = "torchvision"

    weights: str = ""
    """Path of the model's state dict (torch.save of model.state_dict()); required."""
    arch: str = "fasterrcnn_resnet50_fpn"
    """Builder name in torchvision.models.detection (e.g. fasterrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn)."""

    def check_runtime(self) -> None:
        require_torchvision()
        if not self.weights:
            raise UsageError("method torchvision needs --param weights=/path/to/state_dict.pt (no downloads)")
        if not Path(self.weights).is_file():
            raise NotFoundError(f"torchvision weights {self.weights}: no such file")


def require_torchvision():
    """Import torchvision or raise ImportError saying where this prior runs."""
    try:
        import torchvision
    except (
        Exception
    ) as e:  # a CUDA wheel beside CPU torch fails with OSError/RuntimeError, not only ImportError
        raise ImportError(
            f"torchvision is not importable here ({type(e).__name__}: {e}); the 'torchvision' box prior runs "
            "where it imports (e.g. a GPU machine with a torchvision build matching torch). "
            "Use --method hog for a person prior that needs no weights."
        ) from None
    return torchvision


_MODELS: dict = {}


def _model(p: TorchvisionParams):
    import torch

    tv = require_torchvision()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if p.device == "auto" else p.device
    key = (p.arch, p.weights, device)
    if key not in _MODELS:
        builder = getattr(tv.models.detection, p.arch, None)
        if builder is None:
            raise UsageError(f"torchvision.models.detection has no model {p.arch!r}")
        model = builder(weights=None, weights_backbone=None)
        model.load_state_dict(torch.load(p.weights, map_location="cpu", weights_only=True))
        _MODELS[key] = model.eval().to(device)
    return _MODELS[key], device


def torchvision_boxes(frames: np.ndarray, p: TorchvisionParams) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate detections per frame.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        p: parameters.

    Returns:
        N pairs (boxes (M, 4) float32 x0 y0 x1 y1 in input pixels, scores (M,) float32).
    """
    import torch

    model, device = _model(p)
    out = []
    with torch.inference_mode():
        for start in range(0, len(frames), p.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + p.batch_size])).to(device)
            images = list(batch.permute(0, 3, 1, 2).float().div_(255.0))
            for det in model(images):
                keep = det["scores"] >= p.score_min
                if p.classes == "person":
                    keep &= det["labels"] == COCO_PERSON
                out.append(
                    (det["boxes"][keep].float().cpu().numpy(), det["scores"][keep].float().cpu().numpy())
                )
    return out
