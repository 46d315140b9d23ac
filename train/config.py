"""Training configs (small frozen dataclasses) and the papers' presets as a plain dict.

``rhovid train`` resolves: ``TrainConfig()`` defaults < ``--preset NAME`` < explicit flags <
``--set key=value``; the result is written to ``RUN/config.json`` (DINOv2-style) and is the
only thing ``--resume`` and ``load_backbone`` read back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from rhovid.train.augment import AugmentConfig
from rhovid.train.data_config import DataConfig

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "PRESETS", "get_preset", "replace_data"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and LR schedule."""

    name: Literal["sgd", "keras_sgd", "lars"] = "sgd"
    """"sgd" (torch momentum), "keras_sgd" (the LR inside the momentum buffer, as Keras / TF Model
    Garden) or "lars"; all exclude BN and biases from decay/adaptation."""
    lr: float = 0.1
    """Peak LR for a global batch of ``lr_batch`` clips-sets; scaled linearly with the real batch."""
    lr_batch: int = 64
    """Batch size ``lr`` is quoted for (64 = one PySlowFast 8-GPU shard, ``BASE_LR_SCALE_NUM_SHARDS``)."""
    momentum: float = 0.9
    """SGD/LARS momentum."""
    weight_decay: float = 1e-6
    """Weight decay on conv/linear weights (never on BN or biases)."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    warmup_lr: float = 0.001
    """LR at step 0 of the warm-up (absolute, not scaled)."""
    final_lr: float = 0.0
    """LR at the end of the half-cosine."""
    cosine_over_warmup: bool = False
    """True: the half-cosine spans the whole run from step 0 and the warm-up ends on its value
    (TF Model Garden, ConST-CL); False: the cosine starts at ``lr`` when the warm-up ends."""
    lars_eta: float = 0.001
    """LARS trust coefficient."""
    clip_grad: float | None = None
    """Clip the global gradient norm to this value (None = no clipping)."""


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run."""

    method: Literal["simclr", "moco", "byol", "swav", "constcl"] = "simclr"
    """Method from ``rhovid.train.methods.METHODS``."""
    arch: Literal["tiny", "r3d18", "r3d50", "slow_r50"] = "tiny"
    """Backbone from ``rhovid.train.models.build_backbone``."""
    method_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments for ``build_method`` (temperatures, momentum, head sizes, ...)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Loader settings."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    batch_size: int = 16
    """Global batch (videos, each giving rho clips), split evenly over the processes."""
    steps: int = 1000
    """Optimizer updates in the whole run (the schedule's length)."""
    checkpoint_every: int = 500
    """Write a checkpoint every K steps (and at the end)."""
    keep_checkpoints: int = 0
    """Keep only the newest N checkpoints (0 = keep all)."""
    log_every: int = 10
    """Write a metrics record every N steps."""
    device: Literal["cpu", "cuda"] = "cpu"
    """Where to train; under torchrun each process uses cuda:LOCAL_RANK."""
    precision: Literal["fp32", "bf16"] = "bf16"
    """Autocast dtype on CUDA (CPU always runs fp32)."""
    channels_last: bool = True
    """channels_last_3d memory format on CUDA (faster cuDNN 3D convs)."""
    sync_bn: bool = False
    """Convert BatchNorm to SyncBatchNorm under DDP (CUDA only in torch)."""
    find_unused_parameters: bool = False
    """DDP flag for methods that leave some parameters without gradient in a step."""
    seed: int = 0
    """Seed for model init, loader sampling and every RNG."""
    progress: bool = True
    """Show a tqdm progress bar on rank 0."""


# Fields that may differ between the saved config and a --resume command line.
RESUMABLE_CHANGES = ("data.workers", "log_every", "progress", "keep_checkpoints")


def _rho_method(method: str, rho: int, optim: OptimConfig, method_kwargs: dict | None = None) -> TrainConfig:
    # Feichtenhofer et al. 2021, App. A / PySlowFast configs/contrastive_ssl: Slow-R50 8x8, 224 crops,
    # 200 epochs of K400 (240k videos) at a global batch of 512 (64 GPUs x 8) = 93,750 steps, 35 warm-up
    # epochs = 16,400 steps, cosine to 0, SyncBN, clips up to 60 s apart.
    return TrainConfig(method=method, arch="slow_r50", method_kwargs=dict(method_kwargs or {}),
                       data=DataConfig(rho=rho, frames=8, stride=8, timespan_s=60.0, crop=224, workers=8),
                       optim=optim, batch_size=512, steps=93_750, checkpoint_every=2_000, log_every=20,
                       device="cuda", sync_bn=True)


# PySlowFast SOLVER values; lr is BASE_LR per 64-clip shard (BASE_LR_SCALE_NUM_SHARDS: True).
_BYOL_OPT = OptimConfig(name="lars", lr=0.6, lr_batch=64, weight_decay=1e-6, warmup_steps=16_400, warmup_lr=0.001)
_SIMCLR_OPT = OptimConfig(name="lars", lr=1.2, lr_batch=64, weight_decay=1e-6, warmup_steps=16_400, warmup_lr=0.001)
_MOCO_OPT = OptimConfig(name="sgd", lr=0.1, lr_batch=64, weight_decay=1e-4, warmup_steps=16_400, warmup_lr=0.001)
_SWAV_OPT = OptimConfig(name="lars", lr=0.6, lr_batch=64, weight_decay=1e-6, warmup_steps=16_400, warmup_lr=0.001)


# Small heads for the tiny debug net (feature dim 64): the papers' 2048/4096-wide MLPs would dominate
# its cost. Queue and prototype counts shrink with the batch.
_TINY_HEADS: dict[str, dict] = {
    "simclr": {"hidden_dim": 128, "proj_dim": 32},
    "moco": {"hidden_dim": 128, "proj_dim": 32, "queue_size": 256},
    "byol": {"hidden_dim": 128, "proj_dim": 32},
    "swav": {"hidden_dim": 128, "proj_dim": 32, "num_prototypes": 32},
    "constcl": {"hidden_dim": 128, "proj_dim": 32, "tx_channels": 16, "tx_layers": 1, "context_level": 3},
}


def _tiny(method: str, boxes: str | None = None) -> TrainConfig:
    # CPU smoke runs: tiny net, 4x64^2 clips, a few hundred steps; SGD at a small LR is stable on
    # the synthetic dataset for every method.
    return TrainConfig(method=method, arch="tiny", method_kwargs=dict(_TINY_HEADS[method]),
                       data=DataConfig(rho=2, frames=4, stride=4, timespan_s=4.0, crop=64, boxes=boxes,
                                       max_boxes=4, workers=2),
                       optim=OptimConfig(name="sgd", lr=0.05, lr_batch=8, weight_decay=1e-5, warmup_steps=10,
                                         warmup_lr=0.0),
                       batch_size=8, steps=200, checkpoint_every=100, log_every=10, device="cpu", precision="fp32",
                       channels_last=False)


_CONSTCL_VIEW = AugmentConfig(area=(0.3, 1.0), aspect=(0.5, 2.0), flip_p=0.5, colour_p=0.8, brightness=0.8,
                              contrast=0.8, saturation=0.8, hue=0.2, grayscale_p=0.2, blur_sigma=(0.1, 2.0))
_CONSTCL_VIEWS = (dataclasses.replace(_CONSTCL_VIEW, blur_p=1.0), dataclasses.replace(_CONSTCL_VIEW, blur_p=0.1))


PRESETS: dict[str, TrainConfig] = {
    **{f"rho{r}-byol-slow-r50": _rho_method("byol", r, _BYOL_OPT) for r in (2, 4)},
    **{f"rho{r}-moco-slow-r50": _rho_method("moco", r, _MOCO_OPT) for r in (2, 4)},
    **{f"rho{r}-simclr-slow-r50": _rho_method("simclr", r, _SIMCLR_OPT) for r in (2, 4)},
    **{f"rho{r}-swav-slow-r50": _rho_method("swav", r, _SWAV_OPT) for r in (2, 4)},
    # ConST-CL, as the authors' tensorflow/models official/projects/const_cl trains it
    # (configs/yaml/const_cl_pretrain_k400_200k.yaml, "200k" in their README's table: AVA 24.1):
    # R3D-50 Y structure, 2 views of 16 frames at stride 2 and 224^2 (:51-56), 8 random boxes
    # on the key frame (configs/const_cl.py:40), batch 1024 (:57), 200,000 steps (:75), SGD with
    # momentum 0.9 (vision/configs/video_classification.py `add_trainer`) without Nesterov (:71),
    # Keras' SGD (modeling/optimization/optimizer_factory.py), cosine from 40.96 over all 200k
    # steps (:67-68) after a linear warm-up from 0 over 2,500 steps (:74, add_trainer's 0 start),
    # l2 1e-6 on conv/dense kernels only (:62, tasks/const_cl.py `build_losses`: the set rhovid
    # decays), SyncBN (:8), bf16 (:3).
    # Per view (projects/video_ssl/dataloaders/video_ssl_input.py:103-107, :135-142 and
    # ops/video_ssl_preprocess_ops.py:77-80, :196-198, :261-263 in tf-models-official 2.20.0): crop
    # area 0.3-1 and aspect 0.5-2, flip 0.5, colour jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale
    # p 0.2, blur sigma U(0.1, 2) with p 1.0 on view 1 and 0.1 on view 2 (view 2's solarisation
    # p 0.2 and the [-1, 1] input scaling are not AugmentConfig fields).
    # The 100k recipe is this with --set steps=100000 (its yaml differs only there).
    "constcl-r3d50": TrainConfig(
        method="constcl", arch="r3d50",
        data=DataConfig(rho=2, frames=16, stride=2, timespan_s=60.0, crop=224, boxes="random", max_boxes=8,
                        augment=_CONSTCL_VIEWS),
        optim=OptimConfig(name="keras_sgd", lr=40.96, lr_batch=1024, momentum=0.9, weight_decay=1e-6,
                          warmup_steps=2_500, warmup_lr=0.0, final_lr=0.0, cosine_over_warmup=True),
        batch_size=1024, steps=200_000, checkpoint_every=1_000, log_every=100, device="cuda", sync_bn=True),
    **{f"tiny-{m}": _tiny(m) for m in ("simclr", "moco", "byol", "swav")},
    "tiny-constcl": _tiny("constcl", boxes="random"),
}


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name``; KeyError listing the known names otherwise."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two (nested) config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and k != "method_kwargs":
            out += config_diff(va, vb, key + ".")
        elif va != vb:
            out.append(key)
    return out


def changes_from_saved(saved: dict, cfg: TrainConfig) -> list[str]:
    """Dotted keys in which ``cfg`` differs from a run's saved ``config.json`` contents, except
    the ``RESUMABLE_CHANGES``. The saved dict is read back through ``TrainConfig`` first, so a
    field added after the run was written counts at its default, and provenance keys
    (versions, world size) are ignored."""
    from rhovid.config import from_dict, to_dict

    old = to_dict(from_dict(TrainConfig, saved, strict=False))
    return [k for k in config_diff(old, to_dict(cfg)) if k not in RESUMABLE_CHANGES]


def replace_data(cfg: TrainConfig, **changes) -> TrainConfig:
    """``cfg`` with fields of ``cfg.data`` replaced."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))
