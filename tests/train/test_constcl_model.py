"""ConST-CL's model against the authors' layer definitions (tensorflow/models const_cl).

Parameter counts are derived by hand below from the authors' files; the head's forward pass and
the RoIAlign are compared with plain float64 re-tracings of the TF ops (instance_reconstructor.py,
transformer_decoder.py, vision/ops/spatial_transform_ops.py), using the module's weights as data.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from rhovid.train.methods import build_method
from rhovid.train.models import build_backbone, count_params
from rhovid.train.models.constcl_head import ConSTCLHead, memory_frames
from rhovid.train.models.resnet3d import SPECS, ResNet3D, TFSameConv3d, TFSameMaxPool3d
from rhovid.train.roi_align import roi_align


def dense(i, o, bias=True):
    return i * o + (o if bias else 0)


def test_head_parameter_count_from_authors_layers():
    """instance_reconstructor.py + transformer_decoder.py at the config of configs/head.py:36-54.

    Positional MLPs (:92-101): temporal Dense(1->4) + Dense(4->8), spatial Dense(2->4) + Dense(4->8).
    Memory channels: 2048 features + 8 + 8 = 2064. Decoder: 3 layers x 3 units; a unit has
    Dense q (query -> 128), k and v (2064 -> 128), LayerNorm(128) (gamma, beta), ffn1, ffn2
    (128 -> 128), all with bias (use_bias True). Layer 1's query is the 2048-d region feature,
    later layers' the 3 x 128 = 384 concatenation. Projection Dense(384 -> 2048).
    """
    pos = dense(1, 4) + dense(4, 8) + dense(2, 4) + dense(4, 8)
    mem = 2048 + 16

    def unit(q):
        return dense(q, 128) + 2 * dense(mem, 128) + 2 * 128 + 2 * dense(128, 128)

    derived = pos + 3 * unit(2048) + 2 * 3 * unit(384) + dense(384, 2048)
    assert derived == 6_928_356
    with torch.device("meta"):
        assert count_params(ConSTCLHead(2048)) == derived


def test_global_mlp_parameter_count_from_authors_layers():
    """heads/simple.py:60-79 with configs/head.py:26-29: 3 x [Dense(no bias) + BN] + Dense(128)."""
    derived = dense(2048, 2048, False) + 2 * 2048 + 2 * (dense(2048, 2048, False) + 2 * 2048) + dense(2048, 128)
    with torch.device("meta"):
        method = build_method("constcl", arch="r3d50")
    assert count_params(method.head) == derived == 12_857_472


def _authors_r3dy50_params() -> int:
    """ResNet3DY-50 of const_cl_pretrain_k400_200k.yaml:12-47 (modeling/backbones/resnet_3d.py,
    nn_blocks_3d.py; RESNET_SPECS[50] = 3/4/6/3 bottleneck blocks of 64/128/256/512 filters).

    Stem: Conv3D(64, [5, 7, 7], no bias) + BN. A block of `f` filters with input `c` and temporal
    kernel `t`: temporal conv t x 1 x 1 (c -> f), spatial 1 x 3 x 3 (f -> f), expand 1 x 1 x 1
    (f -> 4f), each without bias and followed by BN (gamma, beta trainable); the projection
    shortcut Conv3D(4f, 1) + BN exists where c != 4f (the first block of every stage).
    res_5_1 repeats res_5's definition on res4's output. No self-gating, no SE (yaml :20-43).
    """
    def block(c, f, t):
        n = t * c * f + 2 * f + 9 * f * f + 2 * f + f * 4 * f + 2 * 4 * f
        return n + (c * 4 * f + 2 * 4 * f if c != 4 * f else 0)

    def stage(c, f, kernels):
        return sum(block(c if i == 0 else 4 * f, f, t) for i, t in enumerate(kernels))

    stem = 5 * 7 * 7 * 3 * 64 + 2 * 64
    trunk = stage(64, 64, [1] * 3) + stage(256, 128, [1] * 4) + stage(512, 256, [3] * 6)
    res5 = stage(1024, 512, [3] * 3)
    return stem + trunk + 2 * res5


def test_y_backbone_parameter_count_from_authors_layers():
    with torch.device("meta"):
        y = build_backbone("r3d50", y_structure=True)
        single = build_backbone("r3d50")
    assert count_params(y) == _authors_r3dy50_params() == 51_879_744
    # One res5, what the authors' README lists for downstream use: 31.7M.
    assert count_params(single) == pytest.approx(31.7e6, abs=0.05e6)


def test_y_branches_are_initialised_separately_with_keras_init():
    # r3d50's conventions on a narrow spec (building the full net with real init takes ~25 s)
    spec = dataclasses.replace(SPECS["r3d50"], widths=(8, 16, 32, 64), stem_width=8)
    assert SPECS["r3d50"].conv_init == "variance_scaling" and SPECS["r3d50"].tf_same
    torch.manual_seed(0)
    model = ResNet3D(spec, y_structure=True)
    for (ka, a), (kb, b) in zip(model.res5.named_parameters(), model.res5_local.named_parameters()):
        assert ka == kb and a.shape == b.shape
        if a.dim() > 1:
            assert not torch.equal(a, b)  # independent draws, not a copy
    w = model.res4[0].branch[0].weight.detach()  # 3x1x1 conv, 64 -> 32: fan_in 192
    std = math.sqrt(1 / 192) / 0.87962566103423978
    assert float(w.abs().max()) <= 2 * std + 1e-7  # truncated at 2 sigma
    assert float(w.std()) == pytest.approx(math.sqrt(1 / 192), rel=0.05)


def _tf_same_reference(x: np.ndarray, w: np.ndarray, stride: tuple[int, int, int]) -> np.ndarray:
    """tf.nn.conv3d(padding='SAME'): out = ceil(n / s), pad_before = total // 2, explicit loops."""
    c_out, _, *k = w.shape
    n = x.shape[1:]
    out = [math.ceil(n[d] / stride[d]) for d in range(3)]
    before = [max((out[d] - 1) * stride[d] + k[d] - n[d], 0) // 2 for d in range(3)]
    y = np.zeros([c_out] + out)
    for o in np.ndindex(*out):
        for j in np.ndindex(*k):
            src = [o[d] * stride[d] - before[d] + j[d] for d in range(3)]
            if all(0 <= src[d] < n[d] for d in range(3)):
                y[(slice(None), *o)] += w[(slice(None), slice(None), *j)] @ x[(slice(None), *src)]
    return y


@pytest.mark.parametrize("size, kernel, stride", [((16, 12, 12), (5, 7, 7), (2, 2, 2)), ((3, 8, 9), (1, 3, 3), (1, 2, 2))])
def test_tf_same_padding_matches_tf_definition(size, kernel, stride):
    torch.manual_seed(0)
    conv = TFSameConv3d(2, 3, kernel, stride, bias=False).double()
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    want = _tf_same_reference(x[0].numpy(), conv.weight.detach().numpy(), stride)
    np.testing.assert_allclose(conv(x)[0].detach().numpy(), want, rtol=1e-10, atol=1e-12)
    # max pool: padded cells never win, and the output is ceil(n / s)
    pool = TFSameMaxPool3d((1, 3, 3), (1, 2, 2))
    neg = -torch.rand(1, 1, 2, 8, 8) - 1
    out = pool(neg)
    assert out.shape == (1, 1, 2, 4, 4) and float(out.max()) < -1
    # output cell 0 covers input rows/cols 0..2 (TF pads 0 before, 1 after on an even size)
    torch.testing.assert_close(out[0, 0, :, 0, 0], neg[0, 0, :, :3, :3].amax(dim=(1, 2)))


def test_r3d50_shapes_with_tf_padding():
    with torch.device("meta"):
        model = build_backbone("r3d50", y_structure=True)
        maps = model.forward_features(torch.empty(2, 3, 16, 224, 224))
    assert maps["res4"].shape == (2, 1024, 8, 14, 14)
    assert maps["res5"].shape == maps["res5_local"].shape == (2, 2048, 8, 7, 7)


def test_memory_frames_are_the_authors():
    assert memory_frames(8, 5) == [2, 3, 4, 5, 6]  # instance_reconstructor.py:119-128
    assert memory_frames(8, 1) == [4] and memory_frames(4, 3) == [1, 2, 3]
    with pytest.raises(ValueError, match="odd"):
        memory_frames(8, 4)
    with pytest.raises(ValueError, match="odd"):
        ConSTCLHead(16, context_level=2)


# ------------------------------------------------------------------ TF RoIAlign (crop_and_resize)

def tf_crop_and_resize(fmap: np.ndarray, boxes: np.ndarray, output_size: int, sample_offset: float = 0.5):
    """spatial_transform_ops.multilevel_crop_and_resize with one level: boxes [y1, x1, y2, x2]
    in feature cells; per bin one sample at (i + sample_offset) / output_size of the box; the
    four neighbours floor / floor + 1 clamped to [0, size - 1] (`_compute_grid_positions`); the
    weights from the unclamped fraction; bilinear sum (`_feature_bilinear_interpolation`).
    fmap (H, W, C), boxes (N, 4) -> (N, S, S, C)."""
    h, w, _ = fmap.shape
    out = np.zeros((len(boxes), output_size, output_size, fmap.shape[2]))
    for n, (y1, x1, y2, x2) in enumerate(boxes):
        ys = [y1 + (i + sample_offset) * (y2 - y1) / output_size for i in range(output_size)]
        xs = [x1 + (i + sample_offset) * (x2 - x1) / output_size for i in range(output_size)]
        for a, y in enumerate(ys):
            y0 = min(max(math.floor(y), 0), h - 1)
            y_1 = min(y0 + 1, h - 1)
            ly = y - y0
            for b, x in enumerate(xs):
                x0 = min(max(math.floor(x), 0), w - 1)
                x_1 = min(x0 + 1, w - 1)
                lx = x - x0
                out[n, a, b] = ((1 - ly) * (1 - lx) * fmap[y0, x0] + (1 - ly) * lx * fmap[y0, x_1]
                                + ly * (1 - lx) * fmap[y_1, x0] + ly * lx * fmap[y_1, x_1])
    return out


def test_roi_align_at_authors_settings_matches_tf_pooling():
    rng = np.random.default_rng(0)
    fmap = rng.standard_normal((7, 7, 5))
    u = rng.uniform(0, 1, 40)
    # the authors' random boxes in normalised [y1, x1, y2, x2], including thin (< 1 cell),
    # border-clipped and inverted (start > 0.999) ones
    norm = np.stack([u, u, np.minimum(u + (0.1 + 0.4 * u) * (0.5 + 1.5 * u), 0.999),
                     np.minimum(u + 0.1 + 0.4 * u, 0.999)], 1)
    norm = np.concatenate([norm, [[0.9995, 0.2, 0.999, 0.3], [0.0, 0.0, 0.999, 0.999], [0.3, 0.4, 0.31, 0.45]]])
    want = tf_crop_and_resize(fmap, norm * 7, 4)
    # rhovid: boxes x0y0x1y1 in 224-pixel crop coordinates on a 7x7 map
    rois = torch.tensor(np.concatenate([np.zeros((len(norm), 1)), norm[:, [1, 0, 3, 2]] * 224], 1))
    got = roi_align(torch.tensor(fmap).permute(2, 0, 1)[None], rois, 4, 7 / 224, 1, aligned=False)
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), want, rtol=1e-10, atol=1e-12)
    # The torchvision convention (aligned=True) differs: the authors' settings matter.
    aligned = roi_align(torch.tensor(fmap).permute(2, 0, 1)[None], rois, 4, 7 / 224, 1, aligned=True)
    assert not np.allclose(aligned.permute(0, 2, 3, 1).numpy(), want, atol=1e-3)


# ------------------------------------------------------------------ the whole head vs its TF code

def _authors_head(head: ConSTCLHead, fmap_a, fmap_b, boxes_a, boxes_b):
    """InstanceReconstructor.call (instance_reconstructor.py:193-250) in channels-last float64,
    with `head`'s weights: returns inst_a2b, inst_b2a, inst_a, inst_b. Boxes: [y1,x1,y2,x2] normalised."""
    def dense(layer, x):
        return x @ layer.weight.t() + (layer.bias if layer.bias is not None else 0)

    outs = []
    feats = []
    for fmap in (fmap_a, fmap_b):  # (B, T, H, W, C)
        feats.append(fmap / torch.sqrt(torch.clamp((fmap**2).sum(-1, keepdim=True), min=1e-12)))
    inst = []
    for f, boxes in zip(feats, (boxes_a, boxes_b)):
        b, t, h, w, _ = f.shape
        key = f[:, t // 2]
        pooled = [tf_crop_and_resize(key[i].detach().numpy(), boxes[i].numpy() * np.array([h, w, h, w]), 4)
                  for i in range(b)]
        inst.append(torch.tensor(np.stack(pooled)).mean(dim=(2, 3)))  # (B, N, C)
    mems = []
    for f in feats:
        t = f.shape[1]
        stride, key = t // head.context_level, t // 2
        idx = [i * stride + key for i in range(-(head.context_level // 2), head.context_level // 2 + 1)]
        m = torch.stack([f[:, i] for i in idx], 1)  # (B, c, H, W, C)
        b, c, h, w, _ = m.shape
        mesh = torch.stack(torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij"), -1)
        pos = mesh.to(m.dtype)
        pos = pos - pos.mean(dim=(0, 1, 2), keepdim=True)
        tp = dense(head.temporal_mlp[2], torch.relu(dense(head.temporal_mlp[0], pos[..., :1])))
        sp = dense(head.spatial_mlp[2], torch.relu(dense(head.spatial_mlp[0], pos[..., 1:])))
        m = torch.cat([m, tp.expand(b, -1, -1, -1, -1), sp.expand(b, -1, -1, -1, -1)], -1)
        mems.append(m.reshape(b, -1, m.shape[-1]))

    def decoder(query, memory):
        hidden = query
        for layer in head.layers:
            feats_ = []
            for unit in layer.units:
                q, k, v = dense(unit.query, hidden), dense(unit.key, memory), dense(unit.value, memory)
                att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(k.shape[-1]), -1) @ v
                x = att + q
                mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
                x = (x - mu) / torch.sqrt(var + 1e-12) * unit.norm.weight + unit.norm.bias
                x = dense(unit.ffn1, x)
                x = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))  # keras gelu(approximate=False)
                feats_.append(dense(unit.ffn2, x))
            hidden = torch.cat(feats_, -1)
        return dense(head.projection, hidden)

    outs = [decoder(inst[0], mems[1]), decoder(inst[1], mems[0]), inst[0], inst[1]]
    return outs


def test_head_forward_matches_authors_code():
    torch.manual_seed(0)
    head = ConSTCLHead(in_dim=6, channels=4, num_units=3, num_layers=3, context_level=5).double()
    for p in head.parameters():  # non-trivial LayerNorm affine and biases
        torch.nn.init.normal_(p, std=0.5)
    b, t, hw, k = 2, 8, 7, 3
    fmaps = [torch.randn(b, t, hw, hw, 6, dtype=torch.float64) for _ in range(2)]
    g = np.random.default_rng(1)
    norm = []
    for _ in range(2):
        u = g.uniform(0, 1, (b, k))
        norm.append(torch.tensor(np.stack([u, u, np.minimum(u + (0.1 + 0.4 * u) * (0.5 + 1.5 * u), 0.999),
                                           np.minimum(u + 0.1 + 0.4 * u, 0.999)], -1)))
    want = _authors_head(head, fmaps[0], fmaps[1], norm[0], norm[1])
    # rhovid's layout: maps (B, C, T, H, W), boxes x0y0x1y1 in pixels of a 16 x 224 x 224 clip,
    # key frame 8 (the authors' boxes of frame T // 2 = 8 go with map frame T' // 2 = 4)
    maps = [f.permute(0, 4, 1, 2, 3) for f in fmaps]
    boxes = [n[..., [1, 0, 3, 2]] * 224 for n in norm]
    key = torch.full((b,), 8)
    inst = [head.regions(m, bx, key, (16, 224, 224)) for m, bx in zip(maps, boxes)]
    mem = [head.memory(m) for m in maps]
    got = [head(inst[0], mem[1]), head(inst[1], mem[0]), inst[0], inst[1]]
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)
    assert got[0].shape == (b, k, 6)


def test_method_defaults_are_the_authors():
    with torch.device("meta"):
        m = build_method("constcl", arch="r3d50")
    assert m.global_weight == 1.0 and m.local_weight == 0.001
    assert m.global_loss.temperature == 0.1 and m.local_loss.temperature == 0.2
    h = m.region_head
    assert (len(h.layers), len(h.layers[0].units), h.layers[0].units[0].norm.eps) == (3, 3, 1e-12)
    assert (h.context_level, h.roi_size, h.sampling_ratio, h.aligned, h.out_dim) == (5, 4, 1, False, 2048)
    linears = [x for x in m.head.net if isinstance(x, torch.nn.Linear)]
    assert [(x.in_features, x.out_features, x.bias is not None) for x in linears] == [
        (2048, 2048, False), (2048, 2048, False), (2048, 2048, False), (2048, 128, True)]


def test_method_forward_backward_tiny():
    torch.manual_seed(0)
    m = build_method("constcl", arch="tiny", hidden_dim=32, proj_dim=16, tx_channels=8, context_level=3)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3, 2, 4, 2, generator=g) * 40
    batch = {"video": torch.randn(3, 2, 3, 8, 64, 64, generator=g), "boxes": torch.cat([xy, xy + 10], -1),
             "box_mask": torch.ones(3, 2, 4, dtype=torch.bool), "box_frame": torch.full((3, 2), 4)}
    out = m(batch)
    total = m.global_weight * out["terms"]["global"] + m.local_weight * out["terms"]["local"]
    torch.testing.assert_close(out["loss"].detach(), total)
    out["loss"].backward()
    assert all(p.grad is not None for p in m.region_head.parameters())
    # the local res5 is trained by the region loss (its last BN starts at 0, so its gamma is what moves)
    assert float(m.backbone.res5_local[0].branch[-1].weight.grad.abs().sum()) > 0
