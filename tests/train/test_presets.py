"""The rho-method presets against the values of the authors' configs (facebookresearch/SlowFast@287ec00).

Cited as ``<config>:<line>`` for configs/contrastive_ssl/*.yaml and ``defaults.py:<line>`` for
slowfast/config/defaults.py (the value a config leaves unset).
"""

from __future__ import annotations

import pytest
import torch

from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD
from rhovid.train.config import get_preset
from rhovid.train.methods import build_method

AUTHORS = {
    # method: (optimizer, BASE_LR per 64 at rho 2 / rho 4, WEIGHT_DECAY, decode short side, SyncBN, precision)
    "byol": ("lars", (0.6, 1.2), 1e-6, 256, True, "fp32"),  # BYOL_SlowR50_8x8.yaml:54-61, 41, 50-51, (no MIXED_PRECISION)
    "moco": ("sgd", (0.1, 0.1), 1e-4, 256, False, "fp16"),  # MoCo_SlowR50_8x8.yaml:51, defaults.py:845, :37, :108, :8
    "simclr": ("lars", (1.2, 1.2), 1e-6, 224, True, "fp32"),  # SimCLR_SlowR50_8x8.yaml:49-56, 35, 44-45
    "swav": ("lars", (0.6, 0.6), 1e-6, 224, True, "fp32"),  # SwAV_Slow_R50_8x8.yaml:46-52, 34, 43-44
}

METHOD_ARGS = {
    # CONTRASTIVE.* (and the model's hard-coded values)
    "byol": {"loss.temperature": 0.5, "base_momentum": 0.996},  # BYOL_SlowR50_8x8.yaml:16, 23
    "moco": {"loss.temperature": 0.1, "base_momentum": 0.994, "queue.keys.shape": (65536, 128)},  # MoCo:18, 22; defaults.py:33
    "simclr": {"loss.temperature": 0.1, "loss.pairs": "consecutive"},  # SimCLR:16, 22 (SEQUENTIAL)
    "swav": {"loss.temperature": 0.1, "loss.epsilon": 0.05, "loss.sinkhorn_iterations": 3, "loss.code_clips": 2,
             "prototypes.weight.shape": (1000, 128), "freeze_prototypes_epochs": 1.0},  # SwAV:16; contrastive.py:98-105, 605, 1036
}

HEADS = {  # (attribute, Linear shapes, BatchNorm1d count): head_helper.py:147-195 with NUM_MLP_LAYERS / MLP_DIM / BN_MLP
    "byol": ("projector", [(2048, 4096), (4096, 256)], 1),  # BYOL:17-21 (DIM 256, 2 layers, 4096, BN_MLP)
    "moco": ("head", [(2048, 2048), (2048, 2048), (2048, 128)], 0),  # MoCo:19 (3 layers; BN_MLP default False)
    "simclr": ("head", [(2048, 2048), (2048, 2048), (2048, 128)], 0),  # SimCLR:17-19
    "swav": ("head", [(2048, 2048), (2048, 2048), (2048, 128)], 2),  # SwAV:17-20 (BN_MLP True)
}


def _get(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return tuple(obj) if isinstance(obj, torch.Size) else obj


@pytest.mark.parametrize("rho", [2, 4])
@pytest.mark.parametrize("method", sorted(AUTHORS))
def test_rho_preset_is_the_authors_config(method, rho):
    cfg = get_preset(f"rho{rho}-{method}-slow-r50")
    name, lrs, wd, short, sync, precision = AUTHORS[method]
    # MODEL.ARCH slow, DATA.NUM_FRAMES 8, SAMPLING_RATE 8, TRAIN_CROP_SIZE 224, TRAIN_CROP_NUM_TEMPORAL rho
    assert (cfg.method, cfg.arch, cfg.data.rho, cfg.data.frames, cfg.data.stride, cfg.data.crop) == (
        method, "slow_r50", rho, 8, 8, 224)
    # decoder.py: i.i.d. uniform starts (DELTA_CLIPS_MIN/MAX -inf/inf, defaults.py:72-75), linspace frames, TARGET_FPS 30
    d = cfg.data
    assert (d.clip_sampling, d.target_fps, d.delta_min_s, d.delta_max_s) == ("slowfast", 30.0, None, None)
    assert d.mean == KINETICS_MEAN and d.std == KINETICS_STD and not d.antialias  # defaults.py:687-693; F.interpolate
    (a,) = d.augment
    assert (a.crop_mode, a.area, a.aspect, a.flip_p) == ("rrc", (0.2, 0.766), (0.75, 1.3333), 0.5)  # *:TRAIN_JITTER_*_RELATIVE
    assert (a.colour_p, a.brightness, a.contrast, a.saturation, a.hue) == (0.8, 0.6, 0.6, 0.6, 0.15)  # SSL_COLOR_*
    assert (a.grayscale_p, a.blur_p, a.blur_sigma, a.blur_stage, a.blur_frame_short_side) == (
        0.2, 0.5, (0.1, 2.0), "frame", short)  # COLOR_RND_GRAYSCALE; transform.py:1086-1100; TRAIN_JITTER_SCALES[0]
    assert a.solarize_p == 0
    o = cfg.optim
    assert (o.name, o.lr, o.lr_batch, o.weight_decay) == (name, lrs[rho == 4], 64, wd)
    assert (o.momentum, o.nesterov, o.no_decay, o.lars_eta) == (0.9, True, "bn", 0.001)  # defaults.py:836-842; optimizer.py
    assert (o.warmup_lr, o.final_lr, o.cosine_after_warmup) == (0.001, 0.0, False)  # WARMUP_START_LR; defaults.py:818, 863
    # 200 epochs, 35 warm-up, 468 iterations per epoch at 8 per GPU on 64 GPUs (batch 512)
    assert (cfg.batch_size, cfg.steps, o.warmup_steps) == (512, 200 * 468, 35 * 468)
    assert (cfg.sync_bn, cfg.sync_bn_devices, cfg.precision) == (sync, 8, precision)  # BN.NUM_SYNC_DEVICES 8


@pytest.mark.parametrize("method", sorted(AUTHORS))
def test_rho_preset_builds_the_authors_heads_and_loss(method):
    cfg = get_preset(f"rho2-{method}-slow-r50")
    model = build_method(method, arch="tiny", **cfg.method_kwargs)
    for attr, want in METHOD_ARGS[method].items():
        assert _get(model, attr) == want, attr
    attr, shapes, bns = HEADS[method]
    head = getattr(model, attr)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears][1:] == shapes[1:]  # the tiny net feeds 64, not 2048
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules()) == bns
    if method == "byol":  # PREDICTOR_DEPTHS [2]: a 2-layer MLP with BN on the 256-d projection
        assert [(m.in_features, m.out_features) for m in model.predictor.net if isinstance(m, torch.nn.Linear)] == [
            (256, 4096), (4096, 256)]
