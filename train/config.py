"""Training configs (small frozen dataclasses) and the papers' presets as a plain dict.

``rhovid train`` resolves: ``TrainConfig()`` defaults < ``--preset NAME`` < explicit flags <
``--set key=value``; the result is written to ``RUN/config.json`` (DINOv2-style) and is the
only thing ``--resume`` and ``load_backbone`` read back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from rhovid.errors import UnknownNameError
from rhovid.train.augment import AugmentConfig
from rhovid.train.data_config import DataConfig

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "PRESETS", "get_preset", "replace_data"]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and LR schedule (PySlowFast's SOLVER; see ``rhovid.train.optim``)."""

    name: Literal["sgd", "keras_sgd", "lars"] = "sgd"
    """"sgd" (torch momentum), "keras_sgd" (the LR inside the momentum buffer, as Keras / TF Model Garden,
    ConST-CL) or "lars" (SGD with PySlowFast's layer-wise trust ratio, ``SOLVER.LARS_ON``)."""
    lr: float = 0.1
    """Peak LR (``SOLVER.BASE_LR``) for a global batch of ``lr_batch`` videos; scaled linearly with the real batch."""
    lr_batch: int = 64
    """Batch size ``lr``, ``warmup_lr`` and ``final_lr`` are quoted for (64 = one PySlowFast 8-GPU shard:
    ``BASE_LR_SCALE_NUM_SHARDS`` multiplies all three by the number of shards, defaults.py:1281-1285)."""
    momentum: float = 0.9
    """SGD/LARS momentum (``SOLVER.MOMENTUM``)."""
    nesterov: bool = True
    """Nesterov momentum (``SOLVER.NESTEROV``, default True, defaults.py:842)."""
    weight_decay: float = 1e-4
    """Weight decay (``SOLVER.WEIGHT_DECAY``, default 1e-4) on every parameter not excluded by ``no_decay``."""
    no_decay: Literal["bn", "1d"] = "bn"
    """Parameters without decay (and LARS): "bn" = of normalisation layers (PySlowFast, ``BN.WEIGHT_DECAY: 0``);
    "1d" = every parameter with ndim <= 1 (biases too)."""
    warmup_steps: int = 0
    """Linear warm-up steps (``SOLVER.WARMUP_EPOCHS`` x iterations per epoch)."""
    warmup_lr: float = 0.001
    """LR at step 0 of the warm-up per ``lr_batch`` (``SOLVER.WARMUP_START_LR``), scaled like ``lr``."""
    final_lr: float = 0.0
    """LR at the end of the cosine per ``lr_batch`` (``SOLVER.COSINE_END_LR``), scaled like ``lr``."""
    cosine_after_warmup: bool = False
    """Start the cosine at the end of warm-up (``SOLVER.COSINE_AFTER_WARMUP``); False = over the whole run, the
    warm-up ending on its value (PySlowFast's default and TF Model Garden's LinearWarmup(CosineDecay), ConST-CL)."""
    lars_eta: float = 0.001
    """LARS trust coefficient (PySlowFast's ``trust_coefficient=0.001``, optimizer.py:142)."""
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
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    """Autocast dtype on CUDA (CPU always runs fp32); "fp16" adds a dynamic loss scaler (torch GradScaler,
    as PySlowFast's ``TRAIN.MIXED_PRECISION``)."""
    channels_last: bool = True
    """channels_last_3d memory format on CUDA (faster cuDNN 3D convs)."""
    sync_bn: bool = False
    """Convert BatchNorm to SyncBatchNorm under DDP (CUDA only in torch)."""
    sync_bn_devices: int = 0
    """Processes per SyncBatchNorm group, consecutive ranks (PySlowFast ``BN.NUM_SYNC_DEVICES``); 0 = all."""
    find_unused_parameters: bool = False
    """DDP flag for methods that leave some parameters without gradient in a step."""
    seed: int = 0
    """Seed for model init, loader sampling and every RNG."""
    progress: bool = True
    """Show a tqdm progress bar on rank 0."""


# Fields that may differ between the saved config and a --resume command line.
RESUMABLE_CHANGES = ("data.workers", "log_every", "progress", "keep_checkpoints")


# ---------------------------------------------------------------- rho-method presets
# Every value below is PySlowFast's (facebookresearch/SlowFast@287ec00, configs/contrastive_ssl/
# {BYOL,MoCo,SimCLR,SwAV}_Slow*R50_8x8.yaml over slowfast/config/defaults.py); see the README's
# Training section. Schedule: 200 epochs (MAX_EPOCH), 35 of warm-up (WARMUP_EPOCHS), on K400's
# 239,975 training videos (CONTRASTIVE.LENGTH) at 8 videos per GPU on 64 GPUs (8 shards of
# TRAIN.BATCH_SIZE 64: the paper's batch 512): ceil(239975 / 64) = 3750 videos per GPU, 468 full
# batches per epoch (drop_last) -> 93,600 steps, 16,380 warm-up steps. For another dataset set
# steps = 200 x its batches per epoch and warmup_steps = 35 x that.
_EPOCH_STEPS = 468
_STEPS, _WARMUP = 200 * _EPOCH_STEPS, 35 * _EPOCH_STEPS

# DATA.TRAIN_JITTER_SCALES[0] is the short side PySlowFast decodes to (kinetics.py:332-334): 256 for
# BYOL / MoCo, 224 for SimCLR / SwAV (TRAIN_JITTER_SCALES: [224, 224]); the blur sigma is drawn in
# its pixels. Everything else of the augmentation is AugmentConfig's defaults (the configs' values).
_AUG = {256: AugmentConfig(), 224: AugmentConfig(blur_frame_short_side=224)}


def _rho_method(method: str, rho: int, optim: OptimConfig, method_kwargs: dict, decode_short_side: int,
                sync_bn: bool, precision: str) -> TrainConfig:
    return TrainConfig(
        method=method, arch="slow_r50", method_kwargs=dict(method_kwargs),
        data=DataConfig(rho=rho, frames=8, stride=8, clip_sampling="slowfast", target_fps=30.0, crop=224,
                        augment=(_AUG[decode_short_side],)),
        optim=optim, batch_size=512, steps=_STEPS, checkpoint_every=2_000, log_every=20, device="cuda",
        precision=precision, sync_bn=sync_bn, sync_bn_devices=8)


# SOLVER: BASE_LR per 64-video shard (BASE_LR_SCALE_NUM_SHARDS: True), WARMUP_START_LR 0.001 (scaled alike),
# COSINE_END_LR 0, MOMENTUM 0.9, NESTEROV True (default), BN.WEIGHT_DECAY 0.0.
def _solver(name: str, lr: float, weight_decay: float) -> OptimConfig:
    return OptimConfig(name=name, lr=lr, lr_batch=64, weight_decay=weight_decay, no_decay="bn", nesterov=True,
                       warmup_steps=_WARMUP, warmup_lr=0.001, final_lr=0.0, cosine_after_warmup=False)


_BYOL = {"temperature": 0.5, "momentum": 0.996, "proj_dim": 256, "hidden_dim": 4096}
_MOCO = {"temperature": 0.1, "momentum": 0.994, "queue_size": 65536, "proj_dim": 128, "hidden_dim": 2048,
         "num_layers": 3, "bn_mlp": False, "freeze_while_queue_fills": True}
_SIMCLR = {"temperature": 0.1, "proj_dim": 128, "hidden_dim": 2048, "num_layers": 3, "bn_mlp": False,
           "pairs": "consecutive"}
_SWAV = {"temperature": 0.1, "epsilon": 0.05, "sinkhorn_iterations": 3, "num_prototypes": 1000,
         "freeze_prototypes_epochs": 1.0, "proj_dim": 128, "hidden_dim": 2048, "num_layers": 3, "bn_mlp": True,
         "code_clips": 2}


def _rho_presets(rho: int) -> dict[str, TrainConfig]:
    return {
        # BYOL_SlowR50_8x8.yaml: LARS, BASE_LR 0.6 ("1.2 for rho=4 clips", line 54), WEIGHT_DECAY 1e-6, SyncBN over 8
        f"rho{rho}-byol-slow-r50": _rho_method("byol", rho, _solver("lars", 0.6 if rho == 2 else 1.2, 1e-6), _BYOL,
                                               256, sync_bn=True, precision="fp32"),
        # MoCo_SlowR50_8x8.yaml: SGD, BASE_LR 0.1 (line 51 overrides 0.05), WEIGHT_DECAY default 1e-4, plain
        # per-GPU BN with shuffle BN, TRAIN.MIXED_PRECISION True
        f"rho{rho}-moco-slow-r50": _rho_method("moco", rho, _solver("sgd", 0.1, 1e-4), _MOCO, 256, sync_bn=False,
                                               precision="fp16"),
        # SimCLR_SlowR50_8x8.yaml: LARS, BASE_LR 1.2 (line 49 overrides 0.6), WEIGHT_DECAY 1e-6, SyncBN over 8
        f"rho{rho}-simclr-slow-r50": _rho_method("simclr", rho, _solver("lars", 1.2, 1e-6), _SIMCLR, 224,
                                                 sync_bn=True, precision="fp32"),
        # SwAV_Slow_R50_8x8.yaml: LARS, BASE_LR 0.6, WEIGHT_DECAY 1e-6, SyncBN over 8
        f"rho{rho}-swav-slow-r50": _rho_method("swav", rho, _solver("lars", 0.6, 1e-6), _SWAV, 224, sync_bn=True,
                                               precision="fp32"),
    }


# ConST-CL's input pipeline (tensorflow/models official/projects/video_ssl/dataloaders/video_ssl_input.py
# _process_image, is_ssl): per view random_crop_resize with aspect (0.5, 2) and area (0.3, 1)
# (sample_distorted_bounding_box), flip, then on the [0, 1] crop colour jitter p 0.8 with strength 1
# (0.8/0.8/0.8/0.2, random order) and grayscale p 0.2 (video_ssl_preprocess_ops.random_color_jitter_3d),
# blur sigma U(0.1, 2) with kernel 224 // 10 (radius 11) and 'SAME' zero padding, p 1.0 on view 1 and
# p 0.1 on view 2, solarisation p 0.2 on view 2; zero-centred input (x * 2 / 255 - 1,
# zero_centering_image=True in configs/const_cl.py). Clips: sample_ssl_sequence (linear_gap).
_CONSTCL_VIEW = AugmentConfig(crop_mode="tf_box", area=(0.3, 1.0), aspect=(0.5, 2.0), colour_p=0.8, brightness=0.8,
                              contrast=0.8, saturation=0.8, hue=0.2, grayscale_p=0.2, blur_p=1.0,
                              blur_sigma=(0.1, 2.0), blur_stage="crop", blur_window=23, solarize_p=0.0)
_CONSTCL_AUG = (_CONSTCL_VIEW, dataclasses.replace(_CONSTCL_VIEW, blur_p=0.1, solarize_p=0.2))


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
    # CPU smoke runs: tiny net, 4x64^2 clips, a few hundred steps, the presets' data and augmentation.
    # SGD at a small LR is stable on the synthetic dataset for every method but SimCLR, whose head has no
    # BN (as the authors'): it takes LARS, its preset's optimizer (SGD at 0.05 per 8 collapsed, measured).
    return TrainConfig(method=method, arch="tiny", method_kwargs=dict(_TINY_HEADS[method]),
                       data=DataConfig(rho=2, frames=4, stride=4, crop=64, boxes=boxes, max_boxes=4),
                       optim=OptimConfig(name="lars" if method == "simclr" else "sgd", lr=0.05, lr_batch=8,
                                         weight_decay=1e-5, warmup_steps=10, warmup_lr=0.0),
                       batch_size=8, steps=200, checkpoint_every=100, log_every=10, device="cpu", precision="fp32",
                       channels_last=False)


PRESETS: dict[str, TrainConfig] = {
    **{name: cfg for r in (2, 4) for name, cfg in _rho_presets(r).items()},
    # ConST-CL, as the authors' tensorflow/models official/projects/const_cl trains it
    # (configs/yaml/const_cl_pretrain_k400_200k.yaml, "200k" in their README's table: AVA 24.1):
    # R3D-50 Y structure, 2 views of 16 frames at stride 2 and 224^2 (:51-56), 8 random boxes
    # on the key frame (configs/const_cl.py:40), batch 1024 (:57), 200,000 steps (:75), SGD with
    # momentum 0.9 (vision/configs/video_classification.py `add_trainer`) without Nesterov (:71),
    # Keras' SGD (modeling/optimization/optimizer_factory.py), cosine from 40.96 over all 200k
    # steps (:67-68) after a linear warm-up from 0 over 2,500 steps (:74, add_trainer's 0 start),
    # l2 1e-6 on conv/dense kernels only (:62, tasks/const_cl.py `build_losses`: no_decay="1d"),
    # SyncBN (:8), bf16 (:3). Views and clips: _CONSTCL_AUG above, [-1, 1] input (mean = std = 0.5),
    # clip pairs from sample_ssl_sequence (linear_gap).
    # The 100k recipe is this with --set steps=100000 (its yaml differs only there).
    "constcl-r3d50": TrainConfig(
        method="constcl", arch="r3d50",
        data=DataConfig(rho=2, frames=16, stride=2, clip_sampling="linear_gap", crop=224, augment=_CONSTCL_AUG,
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), antialias=False, boxes="random", max_boxes=8),
        optim=OptimConfig(name="keras_sgd", lr=40.96, lr_batch=1024, momentum=0.9, nesterov=False, weight_decay=1e-6,
                          no_decay="1d", warmup_steps=2_500, warmup_lr=0.0, final_lr=0.0, cosine_after_warmup=False),
        batch_size=1024, steps=200_000, checkpoint_every=1_000, log_every=100, device="cuda", sync_bn=True),
    **{f"tiny-{m}": _tiny(m) for m in ("simclr", "moco", "byol", "swav")},
    "tiny-constcl": _tiny("constcl", boxes="random"),
}


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name``; KeyError listing the known names otherwise."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
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


def changes_between(a: dict, b: dict) -> list[str]:
    """Dotted keys in which two config dicts (``config.json`` contents, a checkpoint's ``config``)
    differ. Both are read back through ``TrainConfig`` first, so a field added after a run was
    written counts at its default, and provenance keys (versions, world size) are ignored."""
    from rhovid.config import from_dict, to_dict

    return config_diff(to_dict(from_dict(TrainConfig, a, strict=False)), to_dict(from_dict(TrainConfig, b, strict=False)))


def changes_from_saved(saved: dict, cfg: TrainConfig) -> list[str]:
    """Dotted keys in which ``cfg`` differs from a run's saved ``config.json`` contents, except
    the ``RESUMABLE_CHANGES``."""
    from rhovid.config import to_dict

    return [k for k in changes_between(saved, to_dict(cfg)) if k not in RESUMABLE_CHANGES]


def replace_data(cfg: TrainConfig, **changes) -> TrainConfig:
    """``cfg`` with fields of ``cfg.data`` replaced."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))
