"""``rhovid export``: run -> plain state dict (+ description) -> backbone, for each key naming and branch."""

from __future__ import annotations

import json

import pytest
import torch

from rhovid.cli import main
from rhovid.config import save_config
from rhovid.train.checkpoint import load_backbone, save_checkpoint
from rhovid.train.config import TrainConfig
from rhovid.train.export import backbone_state, export, load_exported, torchvision_key
from rhovid.train.methods import build_method
from rhovid.train.models.resnet3d import build_backbone

KW = {"simclr": {"hidden_dim": 32, "proj_dim": 16}, "constcl": {"hidden_dim": 32, "proj_dim": 16, "tx_channels": 8, "context_level": 3}}


def _run(tmp_path, method: str, steps=(3,)):
    """A run folder with checkpoints of a ``tiny`` method whose weights are all non-trivial."""
    torch.manual_seed(0)
    model = build_method(method, arch="tiny", **KW[method])
    with torch.no_grad():  # random BN statistics and affine too, so a misplaced tensor shows
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = TrainConfig(method=method, arch="tiny", method_kwargs=KW[method])
    save_config(cfg, tmp_path / "config.json")
    for step in steps:
        save_checkpoint(tmp_path, step, model, opt, json.loads((tmp_path / "config.json").read_text()), [{}])
    return model.eval()


def test_rhovid_keys_round_trip_to_the_same_features(tmp_path):
    run = tmp_path / "run"
    model = _run(run, "simclr", steps=(3, 6))
    meta = export(run, tmp_path / "out" / "backbone.pt", step=3)
    state = torch.load(tmp_path / "out" / "backbone.pt", weights_only=True)  # tensors only, no wrapper
    assert set(state) == set(model.backbone.state_dict()) and meta["tensors"] == len(state)
    on_disk = json.loads((tmp_path / "out" / "backbone.pt.json").read_text())
    assert on_disk == meta
    assert (meta["arch"], meta["keys"], meta["branch"], meta["method"], meta["checkpoint"]) == \
        ("tiny", "rhovid", "global", "simclr", "step-0000003.pt")
    assert meta["input"]["mean"] == [0.45] * 3 and meta["input"]["frames"] == TrainConfig().data.frames
    backbone, _ = load_exported(tmp_path / "out" / "backbone.pt")
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone(x), load_backbone(run, step=3)[0](x))
        assert torch.equal(backbone(x), model.backbone(x))


def test_constcl_branches_export_their_own_res5(tmp_path):
    model = _run(tmp_path / "run", "constcl")
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        maps = model.backbone.forward_features(x)
        for branch, name in (("global", "res5"), ("local", "res5_local")):
            path = tmp_path / f"{branch}.pt"
            export(tmp_path / "run", path, branch=branch)
            assert not any(k.startswith("res5_local") for k in torch.load(path, weights_only=True))
            backbone, meta = load_exported(path)
            assert meta["branch"] == branch
            assert torch.equal(backbone(x), maps[name].mean(dim=(2, 3, 4)))
    assert not torch.equal(maps["res5"], maps["res5_local"])  # the two branches really differ


def test_torchvision_names_and_shapes_of_r3d18():
    backbone = build_backbone("r3d18")
    state = backbone_state(backbone)
    named = {torchvision_key(k): v for k, v in state.items()}
    assert len(named) == len(state)  # one-to-one
    # names and shapes of torchvision.models.video.r3d_18 (torchvision/models/video/resnet.py)
    expected = {
        "stem.0.weight": (64, 3, 3, 7, 7), "stem.1.running_var": (64,),
        "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3), "layer1.1.conv2.1.bias": (64,),
        "layer2.0.conv1.0.weight": (128, 64, 3, 3, 3), "layer2.0.conv2.0.weight": (128, 128, 3, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1), "layer2.0.downsample.1.weight": (128,),
        "layer4.1.conv2.1.num_batches_tracked": (), "layer4.0.downsample.0.weight": (512, 256, 1, 1, 1),
    }
    for name, shape in expected.items():
        assert tuple(named[name].shape) == shape, name
    assert not any(k.startswith("layer1.0.downsample") for k in named)  # 64 -> 64, stride 1: none
    # 2 convs + 2 BNs (5 tensors) per block, 8 blocks; 3 downsamples (conv + BN); stem conv + BN
    assert len(named) == 8 * (2 + 2 * 5) + 3 * (1 + 5) + (1 + 5)
    with pytest.raises(ValueError, match="no torchvision r3d_18 counterpart"):
        torchvision_key("res5_local.0.branch.0.weight")


def test_torchvision_r3d_18_loads_the_export_and_computes_the_same_features():
    tv = pytest.importorskip("torchvision.models.video")
    backbone = build_backbone("r3d18").eval()
    model = tv.r3d_18(num_classes=7)
    missing, unexpected = model.load_state_dict({torchvision_key(k): v for k, v in backbone_state(backbone).items()},
                                                strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    model.fc = torch.nn.Identity()
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), backbone(x))


def test_cli_writes_the_export_and_names_what_is_wrong(tmp_path, capsys):
    _run(tmp_path / "run", "simclr")
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "b.pt")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "b.pt.json").exists()
    bad = [
        (["--keys", "torchvision"], "torchvision keys exist for arch r3d18 only"),
        (["--branch", "local"], "no local branch"),
        (["--step", "9"], "no checkpoint at step 9; available: ['step-0000003.pt']"),
    ]
    for flags, message in bad:
        assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "c.pt"), *flags]) != 0
        assert message in capsys.readouterr().err
        assert not (tmp_path / "c.pt").exists()  # nothing written on a refused export
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "c.pt")]) != 0
    assert "has no checkpoints" in capsys.readouterr().err
