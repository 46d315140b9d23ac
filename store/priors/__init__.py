"""Box priors: method name -> (params dataclass, function frames -> candidate boxes).

Each function takes ``frames`` (N, H, W, 3) uint8 RGB and its params (plus the keyword
inputs named by ``params.extra_inputs()``) and returns, per frame, ``(boxes (M, 4) float32
x0 y0 x1 y1, scores (M,) float32 or None)``. Post-processing (top-K, dropping degenerate and
near-full-frame boxes) is shared: ``rhovid.store.regions.select_boxes``. Random boxes are
not here: the loader draws them on the fly (DESIGN.md decision 4).
"""

from __future__ import annotations

from rhovid.store.priors.detector_detectron2 import Detectron2Params, detectron2_boxes
from rhovid.store.priors.detector_torchvision import TorchvisionParams, torchvision_boxes
from rhovid.store.priors.fh import FhParams, fh_boxes
from rhovid.store.priors.hog import HogParams, hog_boxes
from rhovid.store.priors.motion import MotionParams, motion_boxes
from rhovid.store.priors.slic import SlicParams, slic_boxes

METHODS = {
    "slic": (SlicParams, slic_boxes),
    "fh": (FhParams, fh_boxes),
    "hog": (HogParams, hog_boxes),
    "motion": (MotionParams, motion_boxes),
    "torchvision": (TorchvisionParams, torchvision_boxes),
    "detectron2": (Detectron2Params, detectron2_boxes),
}
