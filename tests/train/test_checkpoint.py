"""Checkpoint write -> read round trip (weights_only), atomicity, pruning, RNG states, load_backbone."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from rhovid.config import save_config
from rhovid.train.checkpoint import (
    find_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_backbone,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rhovid.train.config import TrainConfig
from rhovid.train.methods import build_method
from rhovid.train.optim import build_optimizer

KW = {"hidden_dim": 32, "proj_dim": 16}


def _trained_method():
    torch.manual_seed(0)
    model = build_method("simclr", arch="tiny", **KW)
    opt = build_optimizer(model, "lars", lr=0.1, momentum=0.9, weight_decay=1e-6)
    out = model({"video": torch.randn(2, 2, 3, 4, 32, 32)})
    out["loss"].backward()
    opt.step()
    return model, opt


def test_round_trip_weights_only(tmp_path):
    model, opt = _trained_method()
    ranks = [{"rng": rng_state(), "data": {"epoch": 1, "index": 3, "loader": {"epoch": 1, "batches": 3}}}]
    path = save_checkpoint(tmp_path, 7, model, opt, {"method": "simclr"}, ranks)
    assert path.name == "step-0000007.pt"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-0000007.pt"
    raw = torch.load(path, weights_only=True)  # what users and evaluation do
    assert raw["step"] == 7 and raw["config"] == {"method": "simclr"}
    assert raw["ranks"][0]["data"] == ranks[0]["data"]
    for k, v in model.state_dict().items():
        assert torch.equal(raw["model"][k], v), k
    restored, opt2 = _trained_method()
    with torch.no_grad():
        for p in restored.parameters():
            p.zero_()
    restored.load_state_dict(raw["model"])
    opt2.load_state_dict(raw["optimizer"])
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 7


def test_rng_state_restores_every_generator():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.normal())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.normal()) == first


def test_failed_write_leaves_previous_checkpoint(tmp_path):
    model, opt = _trained_method()
    save_checkpoint(tmp_path, 1, model, opt, {}, [{"rng": rng_state(), "data": {}}])
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(Exception):  # noqa: B017 - torch.save fails to pickle a lambda (any error type)
        save_checkpoint(tmp_path, 2, model, opt, {"bad": lambda: 0}, [{}])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before  # no partial, no .tmp-
    assert latest_checkpoint(tmp_path).name == "step-0000001.pt"


def test_keep_prunes_oldest(tmp_path):
    model, opt = _trained_method()
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, step, model, opt, {}, [{}], keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000006.pt", "step-0000008.pt"]


def test_missing_checkpoints_have_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        find_checkpoint(tmp_path)
    model, opt = _trained_method()
    save_checkpoint(tmp_path, 3, model, opt, {}, [{}])
    with pytest.raises(FileNotFoundError, match="step-0000003.pt"):
        find_checkpoint(tmp_path, step=5)
    (tmp_path / "checkpoints" / "latest").write_text("step-0000009.pt\n")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        latest_checkpoint(tmp_path)
    torch.save({"hello": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a rhovid checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_truncated_checkpoint_is_named_with_the_others(tmp_path):
    model, opt = _trained_method()
    for step in (2, 4):
        save_checkpoint(tmp_path, step, model, opt, {}, [{}])
    path = tmp_path / "checkpoints" / "step-0000004.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"step-0000004.pt is damaged or truncated .*other checkpoints of this "
                                         r"run: \['step-0000002.pt'\]"):
        load_checkpoint(path)
    assert load_checkpoint(tmp_path / "checkpoints" / "step-0000002.pt")["step"] == 2


def test_load_backbone(tmp_path):
    model, opt = _trained_method()
    cfg = TrainConfig(method="simclr", arch="tiny", method_kwargs=KW)
    save_config(cfg, tmp_path / "config.json")
    save_checkpoint(tmp_path, 5, model, opt, json.loads((tmp_path / "config.json").read_text()), [{}])
    backbone, config = load_backbone(tmp_path)
    assert config["method"] == "simclr" and not backbone.training
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[k], v), k
    model.eval()
    x = torch.randn(2, 3, 4, 32, 32)
    assert torch.allclose(backbone(x), model.backbone(x))
    assert load_backbone(tmp_path, step=5)[0] is not None
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_backbone(tmp_path / "nope")
