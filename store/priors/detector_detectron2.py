"""detectron2 detection-model boxes (ConST-CL Sec. 4.1 detector priors, e.g. a COCO Faster R-CNN).

Runs only where detectron2 is installed, from a local config file and weights file: no
downloads. Frames are batched through the model directly (DefaultPredictor takes one image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from rhovid.errors import NotFoundError, UsageError
from rhovid.store.priors.detector import DetectorParams

COCO_PERSON = 0  # detectron2's contiguous COCO class id for "person"


@dataclass(frozen=True)
class Detectron2Params(DetectorParams):
    """A detectron2 model from a config file and a weights file."""

    method: ClassVar[str] = "detectron2"

    config: str = ""
    """Path of the detectron2 config (.yaml); required."""
    weights: str = ""
    """Path of the model weights (.pkl / .pth); required."""

    def check_runtime(self) -> None:
        require_detectron2()
        for name in ("config", "weights"):
            path = getattr(self, name)
            if not path:
                raise UsageError(f"method detectron2 needs --param {name}=PATH (no downloads)")
            if not Path(path).is_file():
                raise NotFoundError(f"detectron2 {name} {path}: no such file")


def require_detectron2():
    """Import detectron2 or raise ImportError saying where this prior runs."""
    try:
        import detectron2
    except Exception as e:
        raise ImportError(
            f"detectron2 is not installed here ({type(e).__name__}: {e}); the 'detectron2' box prior runs "
            "where it is installed (see https://detectron2.readthedocs.io for builds matching your torch). "
            "Use --method hog for a person prior that needs no weights."
        ) from None
    return detectron2


_MODELS: dict = {}


def _model(p: Detectron2Params):
    import torch

    require_detectron2()
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    device = ("cuda" if torch.cuda.is_available() else "cpu") if p.device == "auto" else p.device
    key = (p.config, p.weights, device)
    if key not in _MODELS:
        cfg = get_cfg()
        cfg.merge_from_file(p.config)
        cfg.MODEL.DEVICE = device
        model = build_model(cfg)
        DetectionCheckpointer(model).load(p.weights)
        _MODELS[key] = (model.eval(), cfg.INPUT.FORMAT)
    return _MODELS[key]


def detectron2_boxes(frames: np.ndarray, p: Detectron2Params) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate detections per frame.

    Args:
        frames: (N, H, W, 3) uint8 RGB.
        p: parameters.

    Returns:
        N pairs (boxes (M, 4) float32 x0 y0 x1 y1 in input pixels, scores (M,) float32).
    """
    import torch

    model, fmt = _model(p)
    out = []
    with torch.inference_mode():
        for start in range(0, len(frames), p.batch_size):
            chunk = frames[start : start + p.batch_size]
            if fmt == "BGR":
                chunk = chunk[..., ::-1]
            inputs = [
                {
                    "image": torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))),
                    "height": f.shape[0],
                    "width": f.shape[1],
                }
                for f in chunk
            ]
            for res in model(inputs):
                inst = res["instances"]
                keep = inst.scores >= p.score_min
                if p.classes == "person":
                    keep &= inst.pred_classes == COCO_PERSON
                out.append(
                    (
                        inst.pred_boxes.tensor[keep].float().cpu().numpy(),
                        inst.scores[keep].float().cpu().numpy(),
                    )
                )
    return out
