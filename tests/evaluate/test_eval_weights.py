"""``rhovid eval --weights``: a backbone file instead of a run (PySlowFast ``.pyth`` or ``rhovid export``)."""

from __future__ import annotations

import json

import torch

from rhovid.cli import main
from rhovid.train.models import build_backbone
from rhovid.train.slowfast_checkpoint import to_slowfast


def test_eval_reads_a_pyslowfast_checkpoint(split_data, tmp_path, capsys):
    torch.manual_seed(1)
    backbone = build_backbone("slow_r50")
    with torch.no_grad():
        for name, t in backbone.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.05)
    # as PySlowFast's save_checkpoint writes a ContrastiveModel: trunk under backbone., cfg as YAML text
    state = {f"backbone.{k}": v for k, v in to_slowfast(backbone.state_dict())["model_state"].items()}
    weights = tmp_path / "MoCo_SlowR50_8x8_T2_epoch_00200.pyth"
    torch.save({"epoch": 199, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "MODEL:\n  ARCH: slow\n"}, weights)
    report = tmp_path / "knn.json"
    args = ["eval", "knn", "--data", str(split_data), "--weights", str(weights), "--frames", "4", "--stride", "2",
            "--crop", "32", "--views", "1x1", "--workers", "0", "--features", str(tmp_path / "f.zarr"),
            "--report", str(report), "--no-progress"]
    assert main(args) == 0
    doc = json.loads(report.read_text())
    assert doc["features"].startswith("weights-MoCo_SlowR50_8x8_T2_epoch_00200-")
    assert doc["provenance"]["config"] == {"arch": "slow_r50", "format": "slowfast", "epoch": 199}
    assert doc["provenance"]["run"] == str(weights.resolve())
    torch.save({"model_state": {"blocks.0.weight": torch.zeros(1)}}, tmp_path / "mvit.pyth")
    assert main([*args[:5], str(tmp_path / "mvit.pyth"), *args[6:]]) != 0
    assert "mvit.pyth: no PySlowFast ResNet trunk" in capsys.readouterr().err
