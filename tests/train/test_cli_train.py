"""``rhovid train``: --help, config resolution, a tiny run on real shards, run-folder rules."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from rhovid.atomic import read_jsonl
from rhovid.cli import main
from rhovid.train import cli as train_cli
from rhovid.train.config import PRESETS

FLAGS = ["--data", "--method", "--arch", "--rho", "--frames", "--stride", "--crop", "--batch-size", "--steps",
         "--checkpoint-every", "--boxes", "--device", "--seed", "--out", "--resume", "--preset", "--set"]


def _parse(argv):
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    return p.parse_args(argv)


def test_help_lists_every_flag():
    proc = subprocess.run([sys.executable, "-m", "rhovid.cli", "train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for flag in FLAGS:
        assert flag in proc.stdout, flag


def test_resolution_order_preset_flags_set(tmp_path):
    args = _parse(["--preset", "rho4-byol-slow-r50", "--steps", "7", "--crop", "112", "--boxes", "none",
                   "--set", "optim.lr=0.3", "--set", "method_kwargs.momentum=0.99", "--set", "steps=9",
                   "--out", str(tmp_path / "r")])
    cfg = train_cli.resolve_config(args)
    assert cfg.method == "byol" and cfg.arch == "slow_r50" and cfg.data.rho == 4  # from the preset
    assert cfg.data.crop == 112 and cfg.data.boxes is None  # flags beat the preset
    assert cfg.steps == 9 and cfg.optim.lr == 0.3 and cfg.method_kwargs["momentum"] == 0.99  # --set beats flags
    assert cfg.method_kwargs["temperature"] == 0.5  # the preset's other method arguments stay
    assert cfg.optim.name == "lars"
    with pytest.raises(KeyError, match="known presets"):
        train_cli.resolve_config(_parse(["--preset", "nope", "--out", str(tmp_path / "r")]))
    with pytest.raises(KeyError, match="optim.lrr"):
        train_cli.resolve_config(_parse(["--set", "optim.lrr=1", "--out", str(tmp_path / "r")]))


def test_presets_cover_the_papers():
    for m in ("byol", "moco", "simclr", "swav"):
        for rho in (2, 4):
            p = PRESETS[f"rho{rho}-{m}-slow-r50"]
            assert (p.arch, p.data.rho, p.data.frames, p.data.stride) == ("slow_r50", rho, 8, 8)
    assert PRESETS["constcl-r3d50"].arch == "r3d50" and PRESETS["constcl-r3d50"].data.boxes == "random"
    assert all(PRESETS[f"tiny-{m}"].device == "cpu" for m in ("simclr", "moco", "byol", "swav", "constcl"))


def test_tiny_train_run_writes_the_run_folder(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(tiny_data), "--preset", "tiny-simclr", "--arch", "tiny", "--rho", "2",
            "--frames", "4", "--stride", "4", "--crop", "64", "--batch-size", "2", "--steps", "3",
            "--checkpoint-every", "2", "--device", "cpu", "--seed", "1", "--out", str(run),
            "--set", "data.workers=0", "--set", "log_every=1", "--set", "progress=false"]
    assert main(argv) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 1 and cfg["data"]["crop"] == 64 and cfg["data"]["data"] == str(tiny_data)
    assert "torch" in cfg["versions"]
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]
    assert list(run.glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", "step-0000002.pt",
                                                                        "step-0000003.pt"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000003.pt"
    capsys.readouterr()
    assert main(argv) == 1  # refuses to overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume"]) == 0  # saved config; already finished
    assert "had already finished all 3 steps" in capsys.readouterr().out
    assert main(["train", "--out", str(run), "--resume", "--steps", "5"]) == 0  # lengthens the schedule on purpose
    assert json.loads((run / "config.json").read_text())["steps_changes"] == [{"at_step": 3, "from": 3, "to": 5}]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000005.pt"


def test_failed_start_leaves_no_run_folder_to_block_the_rerun(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--preset", "tiny-simclr", "--arch", "tiny", "--rho", "2", "--frames", "4", "--stride", "4",
            "--crop", "64", "--batch-size", "2", "--steps", "1", "--device", "cpu", "--out", str(run),
            "--set", "data.workers=0", "--set", "progress=false"]
    (tmp_path / "empty").mkdir()
    assert main([*argv, "--data", str(tmp_path / "empty")]) == 1
    assert "no shards of split 'train'" in capsys.readouterr().err
    assert not run.exists()  # a config.json here would make the corrected command "not empty"
    assert main([*argv, "--data", str(tiny_data)]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["data"] == str(tiny_data)
