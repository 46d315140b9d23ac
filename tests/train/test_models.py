"""Backbones (parameter/FLOP counts against published figures, shapes, Y structure) and heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rhovid.train.models import build_backbone, count_flops, count_params
from rhovid.train.models.heads import MLPHead, Prototypes, byol_head, contrastive_head


def test_slow_r50_matches_pyslowfast_published_numbers():
    """PySlowFast MODEL_ZOO, SLOW_8x8_R50: 32.45M params, 54.52 GFLOPs.

    PySlowFast counts parameters with the 400-way Kinetics classifier, and FLOPs (fvcore: one
    multiply-add = one FLOP, conv + linear) on its *test* input, 8 x 256^2 (TEST_CROP_SIZE 256).
    """
    with torch.device("meta"):  # shapes only: no weight init, no compute
        model = build_backbone("slow_r50", num_classes=400)
        bare = build_backbone("slow_r50")
    assert count_params(model) == pytest.approx(32.45e6, rel=0.02)
    assert count_flops(model, (1, 3, 8, 256, 256)) == pytest.approx(54.52e9, rel=0.02)
    # The same network on the 8 x 224^2 training view: (224/256)^2 of the above.
    assert count_flops(model, (1, 3, 8, 224, 224)) == pytest.approx(54.52e9 * (224 / 256) ** 2, rel=0.01)
    # Without the classifier (what SSL trains): 2048 * 400 weights + 400 biases fewer.
    assert count_params(bare) == count_params(model) - 2049 * 400


def test_r3d18_matches_torchvision_count():
    # torchvision r3d_18 (KINETICS400_V1 weights metadata): 33,371,472 parameters.
    with torch.device("meta"):
        assert count_params(build_backbone("r3d18", num_classes=400)) == 33_371_472


def test_r3d50_shapes_on_meta():
    with torch.device("meta"):
        model = build_backbone("r3d50", y_structure=True)
    maps = model.forward_features(torch.empty(2, 3, 16, 224, 224, device="meta"))
    assert maps["res4"].shape == (2, 1024, 8, 14, 14)  # temporal stride 2 in the stem only
    assert maps["res5"].shape == maps["res5_local"].shape == (2, 2048, 8, 7, 7)
    assert model.feature_dim == 2048


def test_count_flops_closed_form():
    conv = nn.Sequential(nn.Conv3d(3, 4, (3, 5, 5), padding=(1, 2, 2)), nn.Flatten(), nn.Linear(4 * 2 * 6 * 6, 7))
    # conv: output 4*2*6*6 elements x 3*3*5*5 MACs; linear: 7 outputs x 288 inputs; batch 2.
    assert count_flops(conv, (2, 3, 2, 6, 6)) == 2 * (4 * 2 * 6 * 6 * 3 * 3 * 5 * 5 + 7 * 288)


def test_tiny_forward_features_and_y_structure():
    torch.manual_seed(0)
    model = build_backbone("tiny", y_structure=True)
    x = torch.randn(4, 3, 8, 64, 64)
    pooled = model(x)
    assert pooled.shape == (4, model.feature_dim)
    maps = model.forward_features(x)
    assert maps["res4"].shape == (4, model.res4_dim, 8, 4, 4)
    assert maps["res5"].shape == maps["res5_local"].shape == (4, model.feature_dim, 8, 2, 2)
    torch.testing.assert_close(maps["res5"].mean(dim=(2, 3, 4)), pooled)
    # The local res5 is a separate stage: its own parameters, trained by its own loss.
    assert model.res5_local is not None
    assert not any(a is b for a, b in zip(model.res5.parameters(), model.res5_local.parameters()))
    maps["res5_local"].sum().backward()
    assert all(p.grad is None for p in model.res5.parameters())
    assert "res5_local" not in build_backbone("tiny").forward_features(x)


def test_unknown_arch():
    with pytest.raises(KeyError, match="slow_r50"):
        build_backbone("resnet9000")


def test_mlp_heads():
    head = contrastive_head(64)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 2048), (2048, 2048), (2048, 128)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == 2
    byol = byol_head(2048)
    assert [(m.in_features, m.out_features) for m in byol.modules() if isinstance(m, nn.Linear)] == [
        (2048, 4096), (4096, 256)]
    assert head(torch.randn(5, 64)).shape == (5, 128)
    with pytest.raises(ValueError):
        MLPHead(4, 4, 4, num_layers=0)


def test_prototypes_normalised():
    protos = Prototypes(16, 30)
    torch.testing.assert_close(protos.weight.norm(dim=1), torch.ones(30))
    with torch.no_grad():
        protos.weight.mul_(3.0)
    protos.normalize_()
    torch.testing.assert_close(protos.weight.norm(dim=1), torch.ones(30))
