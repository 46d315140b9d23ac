"""The demo end to end at toy size: synth -> ingest -> SLIC/FH boxes -> BYOL + ConST-CL -> probes.

The real demo (``rhovid ablation demo``) runs the same code with ``DemoConfig()``; here every
size is cut so the whole mission takes seconds, and a second call must reuse everything.
"""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from rhovid.evaluate.ablation_cli import add_arguments, demo_config
from rhovid.evaluate.demo import DemoConfig, run_demo

TOY = DemoConfig(classes=2, train_per_class=2, test_per_class=1, seconds=2.0, short_side=48, steps=2,
                 batch_size=2, frames=2, stride=2, crop=32, views="1x1", workers=0)


@pytest.mark.slow  # 60-80 s on 2 busy cores: make test-all
def test_demo_end_to_end_then_everything_reused(tmp_path):
    threads = torch.get_num_threads()
    try:
        log: list[str] = []
        assert run_demo(tmp_path, TOY, progress=False, log=log.append) == 0
        text = "\n".join(log)
        for what in ("box set slic: not stored; computing", "box set fh: not stored; computing",
                     "run byol-rho2: training", "run constcl-slic: training", "| random init |",
                     "| byol-rho2 |", "| constcl-slic |", "linear top-1", "kNN top-1"):
            assert what in text, what
        summary = json.loads((tmp_path / "demo.json").read_text())
        assert [r["label"] for r in summary["rows"]] == ["byol-rho2", "constcl-slic", "random init"]
        for r in summary["rows"]:
            assert set(r["results"]) == {"linear", "knn"}
            assert r["results"]["knn"]["num_test"] == 2 and r["results"]["linear"]["num_train"] == 4
        assert summary["rows"][1]["box_set"].startswith("slic-")
        assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
        assert "rhovid ablation demo --out" in (tmp_path / "demo.md").read_text()
        # every output the demo names exists
        run = tmp_path / "runs" / "byol" / "byol-rho2"
        assert (run / "config.json").exists() and (run / "checkpoints" / "latest").exists()
        report = json.loads((run / "eval" / "linear.json").read_text())
        assert report["evaluation"] == "linear" and report["features"] == "byol-rho2"
        assert (run / "eval" / "knn-random-init.json").exists()
        assert (tmp_path / "data" / "features.zarr").is_dir() and (tmp_path / "data" / "boxes.zarr").is_dir()
        # second call: nothing is synthesised, ingested, boxed, trained or extracted again
        log.clear()
        assert run_demo(tmp_path, TOY, progress=False, log=log.append) == 0
        text = "\n".join(log)
        assert "train: " in text and "already in" in text and "box set slic: reused (stored)" in text
        assert "run byol-rho2: finished (2 steps), skipped" in text
        assert "run constcl-slic: finished (2 steps), skipped" in text
        assert not [m for m in log if "; computing:" in m or ": computed" in m or ": training " in m]
        again = json.loads((tmp_path / "demo.json").read_text())
        assert [r["results"] for r in again["rows"]] == [r["results"] for r in summary["rows"]]
    finally:
        torch.set_num_threads(threads)


def test_demo_mode_takes_its_options_and_refuses_the_others():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert demo_config(parser.parse_args(["demo", "--out", "x"])) == DemoConfig()
    cfg = demo_config(parser.parse_args(["demo", "--out", "x", "--seed", "1", "--steps", "50", "--workers", "1"]))
    assert (cfg.seed, cfg.steps, cfg.workers) == (1, 50, 1) and cfg.batch_size == DemoConfig().batch_size
    with pytest.raises(ValueError, match="does not take --method, --arch"):
        demo_config(parser.parse_args(["demo", "--out", "x", "--method", "byol", "--arch", "r3d18"]))
