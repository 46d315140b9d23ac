"""PySlowFast Slow-R50 checkpoints: import for ``rhovid eval --weights``, export with ``--keys slowfast``.

Two references, both written from facebookresearch/SlowFast and not from rhovid's mapping:

- everywhere: the names and shapes of a PySlowFast ``ResNet`` (``MODEL.ARCH: slow``, depth 50) as
  their source builds them (``SLOWFAST_TRUNK`` below), in a file written the way their
  ``utils/checkpoint.py save_checkpoint`` writes one;
- where PySlowFast's model code imports (``RHOVID_PYSLOWFAST`` = a SlowFast checkout; needs
  ``fvcore``, ``iopath``, ``simplejson``, ``pytorchvideo``): their real ``ResNet`` built from their
  ``configs/contrastive_ssl`` YAML files, random weights and BN statistics, features compared.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from rhovid.cli import main
from rhovid.config import save_config
from rhovid.train.checkpoint import save_checkpoint
from rhovid.train.config import TrainConfig
from rhovid.train.methods import build_method
from rhovid.train.models import build_backbone
from rhovid.train.slowfast_checkpoint import (
    load_slowfast_backbone,
    read_slowfast,
    rhovid_key,
    slowfast_key,
    to_slowfast,
)


def _bn(name: str, dim: int) -> dict[str, tuple]:
    return {f"{name}.{t}": (dim,) for t in ("weight", "bias", "running_mean", "running_var")} | \
        {f"{name}.num_batches_tracked": ()}


def slowfast_trunk() -> dict[str, tuple]:
    """Name -> shape of PySlowFast's Slow-R50 trunk, from their source: ``ResNet._construct_network``
    (video_model_builder.py: stem 1x7x7 to WIDTH_PER_GROUP 64; s2..s5 with (3, 4, 6, 3) blocks,
    inner width 64 * 2^i, output 4x that; ``_TEMPORAL_KERNEL_BASIS["slow"]``: temporal kernel 1 in
    s2/s3, 3 in s4/s5), ``ResBlock`` (resnet_helper.py: ``branch1`` 1x1x1 + ``branch1_bn`` when the
    width or stride changes, i.e. block 0) and ``BottleneckTransform`` (``a`` Tx1x1, ``b`` 1x3x3,
    ``c`` 1x1x1, each followed by its BN)."""
    spec = {"s1.pathway0_stem.conv.weight": (64, 3, 1, 7, 7), **_bn("s1.pathway0_stem.bn", 64)}
    dim_in = 64
    for stage, (depth, inner, tk) in enumerate(((3, 64, 1), (4, 128, 1), (6, 256, 3), (3, 512, 3)), start=2):
        out = inner * 4
        for i in range(depth):
            p = f"s{stage}.pathway0_res{i}"
            cin = dim_in if i == 0 else out
            if i == 0:
                spec |= {f"{p}.branch1.weight": (out, cin, 1, 1, 1), **_bn(f"{p}.branch1_bn", out)}
            spec |= {f"{p}.branch2.a.weight": (inner, cin, tk, 1, 1), **_bn(f"{p}.branch2.a_bn", inner),
                     f"{p}.branch2.b.weight": (inner, inner, 1, 3, 3), **_bn(f"{p}.branch2.b_bn", inner),
                     f"{p}.branch2.c.weight": (out, inner, 1, 1, 1), **_bn(f"{p}.branch2.c_bn", out)}
        dim_in = out
    return spec


def _random(shape) -> torch.Tensor:
    if shape == ():
        return torch.tensor(7)
    return torch.rand(shape) + 0.5 if len(shape) == 1 else torch.randn(shape) * 0.05


def _save_like_pyslowfast(path: Path, model_state: dict) -> None:
    """What ``save_checkpoint`` writes: epoch, model_state, optimizer_state, cfg.dump() (YAML), scaler_state."""
    optimizer_state = {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                       "param_groups": [{"lr": 0.6, "momentum": 0.9, "weight_decay": 1e-6, "nesterov": True,
                                         "apply_LARS": True, "params": [0]}]}
    torch.save({"epoch": 199, "model_state": model_state, "optimizer_state": optimizer_state,
                "cfg": "CONTRASTIVE:\n  TYPE: byol\nMODEL:\n  ARCH: slow\n", "scaler_state": {"scale": 65536.0}}, path)


def test_trunk_names_map_both_ways_and_cover_pyslowfast():
    trunk = slowfast_trunk()
    ours = build_backbone("slow_r50").state_dict()
    assert sorted(slowfast_key(k) for k in ours) == sorted(trunk)
    for k, v in ours.items():
        assert tuple(v.shape) == trunk[slowfast_key(k)] and rhovid_key(slowfast_key(k)) == k
    for bad in ("res2.0.branch.2.weight", "fc.weight", "res5_local.0.branch.0.weight"):
        with pytest.raises(ValueError, match="no PySlowFast"):
            slowfast_key(bad)


def test_released_contrastive_checkpoint_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    trunk = {k: _random(s) for k, s in slowfast_trunk().items()}
    # ContrastiveModel (contrastive.py): trunk under backbone., BYOL's momentum copy under
    # backbone_hist., projection MLP + predictor under backbone.head.
    state = {f"backbone.{k}": v for k, v in trunk.items()}
    state |= {f"backbone_hist.{k}": v * 2 for k, v in trunk.items()}
    state |= {"backbone.head.projection.projection.0.weight": torch.randn(4096, 2048),
              "backbone.head.predictors.0.projection.0.weight": torch.randn(4096, 256)}
    path = tmp_path / "BYOL_SlowR50_8x8_T2_epoch_00200.pyth"
    _save_like_pyslowfast(path, state)
    backbone, info = load_slowfast_backbone(path)
    assert info["prefix"] == "backbone." and info["epoch"] == 199
    assert {k for k in info["ignored"]} == set(state) - {f"backbone.{k}" for k in trunk}
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, trunk[slowfast_key(k)]), k  # the online network, not backbone_hist
    # a plain ResNet state dict (their linear / fine-tune models) reads the same
    torch.save({**trunk, "head.projection.weight": torch.randn(400, 2048)}, tmp_path / "plain.pyth")
    plain, info = read_slowfast(tmp_path / "plain.pyth")
    assert info["prefix"] == "" and info["ignored"] == ["head.projection.weight"] and set(plain) == set(
        backbone.state_dict())


def test_not_a_slow_r50_is_refused_with_the_names(tmp_path):
    torch.save({"model_state": {"blocks.0.weight": torch.zeros(1)}}, tmp_path / "mvit.pyth")
    with pytest.raises(ValueError, match="no PySlowFast ResNet trunk"):
        load_slowfast_backbone(tmp_path / "mvit.pyth")
    trunk = {k: _random(s) for k, s in slowfast_trunk().items()}
    trunk["s4.pathway0_res0.branch2.a.weight"] = torch.zeros(256, 512, 1, 1, 1)  # a C2D / I3D-like kernel
    del trunk["s5.pathway0_res2.branch2.c_bn.weight"]
    torch.save({"model_state": trunk}, tmp_path / "c2d.pyth")
    with pytest.raises(ValueError, match=r"s5\.pathway0_res2\.branch2\.c_bn\.weight.*s4\.0\.branch\.0\.weight"):
        load_slowfast_backbone(tmp_path / "c2d.pyth")


def _slow_run(tmp_path: Path) -> torch.nn.Module:
    torch.manual_seed(1)
    model = build_method("byol", arch="slow_r50", hidden_dim=32, proj_dim=16)
    with torch.no_grad():
        for name, t in model.backbone.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.05)
    cfg = TrainConfig(method="byol", arch="slow_r50", method_kwargs={"hidden_dim": 32, "proj_dim": 16})
    save_config(cfg, tmp_path / "config.json")
    save_checkpoint(tmp_path, 5, model, torch.optim.SGD(model.parameters(), lr=0.1),
                    json.loads((tmp_path / "config.json").read_text()), [{}])
    return model.eval()


def test_export_keys_slowfast_round_trips_through_the_import(tmp_path, capsys):
    model = _slow_run(tmp_path / "run")
    out = tmp_path / "byol-slowfast.pyth"
    assert main(["export", str(tmp_path / "run"), "--out", str(out), "--keys", "slowfast"]) == 0
    assert "slowfast keys" in capsys.readouterr().out
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"model_state"}  # no epoch: their load_checkpoint then skips optimizer and epoch
    assert {k: tuple(v.shape) for k, v in saved["model_state"].items()} == slowfast_trunk()
    back, _ = load_slowfast_backbone(out)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x), model.backbone(x))
    assert json.loads(Path(f"{out}.json").read_text())["keys"] == "slowfast"
    with pytest.raises(ValueError, match="slow_r50 only"):
        from rhovid.train.export import export

        run = tmp_path / "tiny"
        tiny = build_method("simclr", arch="tiny", hidden_dim=8, proj_dim=4)
        save_config(TrainConfig(method="simclr", arch="tiny", method_kwargs={"hidden_dim": 8, "proj_dim": 4}),
                    run / "config.json")
        save_checkpoint(run, 1, tiny, torch.optim.SGD(tiny.parameters(), lr=0.1),
                        json.loads((run / "config.json").read_text()), [{}])
        export(run, tmp_path / "x.pyth", keys="slowfast")


# ---- against PySlowFast's own model code, where it imports ----------------------------------------------------

def _pyslowfast():
    root = os.environ.get("RHOVID_PYSLOWFAST")
    if not root or not (Path(root) / "slowfast" / "models" / "video_model_builder.py").exists():
        pytest.skip("set RHOVID_PYSLOWFAST to a facebookresearch/SlowFast checkout to compare with their ResNet")
    for dep in ("fvcore", "iopath", "simplejson", "pytorchvideo"):
        pytest.importorskip(dep, reason=f"PySlowFast's model code needs {dep}")
    import pytorchvideo.layers.distributed as pvd

    # Only what building a Slow ResNet on CPU does not run is stood in for: collective helpers that
    # newer pytorchvideo has (slowfast/utils/distributed.py imports them), detectron2's ROIAlign
    # (head_helper.py imports it for the AVA head), and the package __init__s (they import MViT losses).
    for name in ("cat_all_gather", "get_local_process_group", "get_local_rank", "get_local_size",
                 "init_distributed_training"):
        if not hasattr(pvd, name):
            setattr(pvd, name, None)
    if "detectron2.layers" not in sys.modules:
        d2, layers = types.ModuleType("detectron2"), types.ModuleType("detectron2.layers")
        layers.ROIAlign, d2.layers = None, layers
        sys.modules |= {"detectron2": d2, "detectron2.layers": layers}
    sys.path.insert(0, root)
    for pkg in ("slowfast", "slowfast.models"):
        if pkg not in sys.modules:
            m = types.ModuleType(pkg)
            m.__path__ = [str(Path(root, *pkg.split(".")))]
            sys.modules[pkg] = m
    from slowfast.config.defaults import get_cfg
    from slowfast.models.video_model_builder import ResNet

    def build(config: str):
        cfg = get_cfg()
        cfg.merge_from_file(str(Path(root) / "configs" / "contrastive_ssl" / config))
        # SyncBN (NaiveSyncBatchNorm) has BatchNorm's parameter and buffer names; plain BN runs on one CPU
        cfg.BN.NORM_TYPE, cfg.CONTRASTIVE.BN_SYNC_MLP = "batchnorm", False
        torch.manual_seed(3)
        model = ResNet(cfg)
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if t.is_floating_point():
                    t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.05)
        return model.eval()

    return build


def _their_features(model, x: torch.Tensor) -> torch.Tensor:
    # ResNet.forward up to the head, then the head's AdaptiveAvgPool3d (ContrastiveModel: pool_size None)
    y = model.s2(model.s1([x]))
    y = model.s5(model.s4(model.s3([model.pathway0_pool(y[0])])))
    return y[0].mean(dim=(2, 3, 4))


def test_their_resnet_and_rhovid_agree_after_import_and_export(tmp_path):
    build = _pyslowfast()
    theirs = build("BYOL_SlowR50_8x8.yaml")
    trunk = {k: v for k, v in theirs.state_dict().items() if not k.startswith("head.")}
    assert {k: tuple(v.shape) for k, v in trunk.items()} == slowfast_trunk()  # the derived table is theirs
    path = tmp_path / "byol.pyth"
    _save_like_pyslowfast(path, {f"backbone.{k}": v for k, v in theirs.state_dict().items()})
    ours, _ = load_slowfast_backbone(path)
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        a, b = _their_features(theirs, x), ours(x)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()
    # export: rhovid's backbone into their linear-probe model (MODEL_NAME ResNet, 400 classes)
    from slowfast.utils.checkpoint import load_checkpoint

    linear = build("linear_k400_Slow_8x8_R50_syn0.yaml")
    mine = build_backbone("slow_r50")
    with torch.no_grad():
        for name, t in mine.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.05)
    torch.save(to_slowfast(mine.eval().state_dict()), tmp_path / "export.pyth")
    load_checkpoint(str(tmp_path / "export.pyth"), linear, data_parallel=False, epoch_reset=True,
                    clear_name_pattern=("backbone.",))
    with torch.no_grad():
        assert torch.allclose(_their_features(linear.eval(), x), mine(x), rtol=1e-5, atol=1e-6)
