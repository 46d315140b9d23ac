"""Every method end to end on a tiny batch; momentum, queue and prototype bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from rhovid.train.methods import METHODS, build_method
from rhovid.train.methods.moco import KeyQueue
from rhovid.train.methods.momentum import ema_update_, make_target, momentum_at

# Small heads keep the CPU test fast; the paper-sized defaults are checked in test_default_sizes.
SMALL = {
    "simclr": dict(hidden_dim=64, proj_dim=32),
    "moco": dict(hidden_dim=64, proj_dim=32, queue_size=40),
    "byol": dict(hidden_dim=64, proj_dim=32),
    "swav": dict(hidden_dim=64, proj_dim=32, num_prototypes=20),
    "constcl": dict(hidden_dim=64, proj_dim=32, tx_channels=16, context_level=3),
}


def _batch(b=3, rho=2, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, rho, k, 2, generator=g) * 40
    wh = torch.rand(b, rho, k, 2, generator=g) * 20 + 4
    mask = torch.rand(b, rho, k, generator=g) > 0.3
    mask[:, :, 0] = True
    return {
        "video": torch.randn(b, rho, 3, 8, 64, 64, generator=g),
        "boxes": torch.cat([xy, xy + wh], dim=-1),
        "box_mask": mask,
        "box_frame": torch.randint(0, 8, (b, rho), generator=g),
        "label": torch.full((b,), -1),
    }


@pytest.mark.parametrize("name", sorted(METHODS))
def test_forward_backward(name):
    torch.manual_seed(0)
    method = build_method(name, arch="tiny", **SMALL[name])
    out = method(_batch())
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    assert out["terms"] and all(torch.isfinite(v) and v.dim() == 0 for v in out["terms"].values())
    out["loss"].backward()
    grads = [p.grad for p in method.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    method.after_step(0, 10)


@pytest.mark.parametrize("name", ["simclr", "moco", "byol", "swav"])
def test_rho_four(name):
    method = build_method(name, **SMALL[name])
    out = method(_batch(b=2, rho=4))
    assert torch.isfinite(out["loss"])


def test_default_sizes():
    simclr = build_method("simclr")
    assert simclr.head.out_dim == 128 and simclr.loss.temperature == 0.1
    byol = build_method("byol")
    assert byol.projector.out_dim == byol.predictor.out_dim == 256
    assert byol.projector.net[0].out_features == 4096 and byol.base_momentum == 0.996
    moco = build_method("moco", queue_size=1024)
    assert moco.queue.keys.shape == (1024, 128) and moco.base_momentum == 0.994
    swav = build_method("swav")
    assert swav.prototypes.weight.shape == (1000, 128) and swav.loss.epsilon == 0.05
    assert swav.loss.sinkhorn_iterations == 3
    constcl = build_method("constcl")  # the authors' values: tests/train/test_constcl_model.py
    assert constcl.local_loss.temperature == 0.2 and constcl.global_loss.temperature == 0.1
    assert len(constcl.region_head.layers) == 3 and len(constcl.region_head.layers[0].units) == 3
    assert constcl.region_head.context_level == 5 and constcl.backbone.res5_local is not None


def test_build_method_errors():
    with pytest.raises(KeyError, match="simclr"):
        build_method("dino")
    with pytest.raises(TypeError, match="temperature"):
        build_method("simclr", temprature=0.2)
    with pytest.raises(KeyError, match="r3d50"):
        build_method("simclr", arch="r2d")


def test_constcl_input_errors():
    method = build_method("constcl", **SMALL["constcl"])
    with pytest.raises(ValueError, match="rho=2"):
        method(_batch(rho=3))
    batch = _batch()
    del batch["boxes"]
    with pytest.raises(KeyError, match="boxes"):
        method(batch)


def test_momentum_schedule():
    assert momentum_at(0, 100) == pytest.approx(0.994)
    assert momentum_at(100, 100) == pytest.approx(1.0)
    assert momentum_at(50, 100) == pytest.approx(0.997)
    assert momentum_at(25, 100) == pytest.approx(1 - 0.006 * (math.cos(math.pi / 4) + 1) / 2)
    assert momentum_at(500, 100) == pytest.approx(1.0)


def test_ema_update_math():
    online = torch.nn.Linear(3, 2)
    target = make_target(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = target.weight.detach().clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema_update_(target, online, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight.detach())


def test_key_queue_fifo():
    queue = KeyQueue(5, 2)
    queue.push(torch.arange(6.0).reshape(3, 2))
    queue.push(torch.arange(6.0, 12.0).reshape(3, 2))  # wraps: rows 0 overwritten by the 4th key
    assert int(queue.ptr) == 1
    torch.testing.assert_close(queue.keys[:, 0], torch.tensor([10.0, 2.0, 4.0, 6.0, 8.0]))
    queue.push(torch.arange(100.0, 114.0).reshape(7, 2))  # more than Q: the newest 5 remain
    assert sorted(queue.keys[:, 0].tolist()) == [104.0, 106.0, 108.0, 110.0, 112.0]


def test_moco_step_updates_key_encoder_and_queue():
    torch.manual_seed(0)
    method = build_method("moco", **SMALL["moco"])
    batch = _batch(b=3, rho=2)
    method(batch)["loss"].backward()
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.sub_(0.1 * p.grad)
    target_before = [p.detach().clone() for p in method.target_backbone.parameters()]
    with torch.no_grad():  # train-mode BN, same key-encoder weights as the forward below
        keys = torch.nn.functional.normalize(
            method.target_head(method.target_backbone(batch["video"].flatten(0, 1))), dim=-1)
    method(batch)
    method.after_step(3, 10)
    m = momentum_at(3, 10)
    for t0, t1, o in zip(target_before, method.target_backbone.parameters(), method.backbone.parameters()):
        torch.testing.assert_close(t1, m * t0 + (1 - m) * o.detach())
    # All B*rho = 6 keys of the step went in, clip-major, right after each other (FIFO).
    assert int(method.queue.ptr) == 6
    torch.testing.assert_close(method.queue.keys[:6], keys, atol=1e-5, rtol=1e-4)


def test_moco_eval_forward_leaves_queue_alone():
    method = build_method("moco", **SMALL["moco"]).eval()
    before = method.queue.keys.clone()
    with torch.no_grad():
        method(_batch())
    method.after_step(0, 10)
    torch.testing.assert_close(method.queue.keys, before)


def test_byol_target_has_no_gradient_and_moves_by_ema():
    method = build_method("byol", **SMALL["byol"])
    method(_batch())["loss"].backward()
    assert all(p.grad is None for p in method.target_backbone.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())
    with torch.no_grad():
        for p in method.projector.parameters():
            p.add_(1.0)
    before = [p.clone() for p in method.target_projector.parameters()]
    method.after_step(0, 100)
    for t0, t1, o in zip(before, method.target_projector.parameters(), method.projector.parameters()):
        torch.testing.assert_close(t1, 0.996 * t0 + 0.004 * o)


def test_swav_prototypes_normalised_and_frozen():
    method = build_method("swav", freeze_prototypes_steps=1, **SMALL["swav"])
    method(_batch())["loss"].backward()
    assert method.prototypes.weight.grad is None  # frozen during the first step
    with torch.no_grad():
        method.prototypes.weight.mul_(2.0)
    method.after_step(0, 10)
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(20))
    method(_batch())["loss"].backward()
    assert method.prototypes.weight.grad is not None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bf16_autocast_channels_last_on_cpu(name):
    """The GPU step's precision plumbing (bf16 autocast, channels_last_3d) on CPU: bf16 features
    meet fp32 boxes, queues, prototypes and EMA targets; the loss stays fp32 and the weights fp32."""
    torch.manual_seed(0)
    method = build_method(name, arch="tiny", **SMALL[name]).to(memory_format=torch.channels_last_3d)
    batch = _batch()
    for step in range(2):  # the second step uses what the first enqueued / EMA-updated
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = method(batch)
        assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
        method.zero_grad(set_to_none=True)
        out["loss"].backward()
        grads = [p.grad for p in method.backbone.parameters()]
        assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        method.after_step(step, 10)
    assert all(p.dtype == torch.float32 for p in method.parameters())
    assert all(b.dtype in (torch.float32, torch.int64, torch.bool) for b in method.buffers())


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(METHODS))
def test_slow_r50_bf16_channels_last_on_gpu(name):
    """The GPU configuration of the trainer: paper-sized model, bf16 autocast, channels_last_3d."""
    arch = "r3d50" if name == "constcl" else "slow_r50"
    kwargs = {"queue_size": 4096} if name == "moco" else {}
    method = build_method(name, arch=arch, **kwargs).cuda().to(memory_format=torch.channels_last_3d)
    batch = _batch(b=4, rho=2, k=4)
    frames = 16 if name == "constcl" else 8
    batch["video"] = torch.randn(4, 2, 3, frames, 112, 112)
    batch = {k: v.cuda() for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = method(batch)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.backbone.parameters())
    method.after_step(0, 10)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_has_the_interface_the_loop_uses(name):
    from rhovid.train.methods import Method

    m = build_method(name, **SMALL[name])
    assert isinstance(m, Method)
    assert isinstance(m.backbone, torch.nn.Module)
