"""The train benchmark's paper-model timing (its GPU section) runs the preset's real step."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from rhovid.benchmarks.train import add_arguments, run, time_paper_model
from rhovid.train.models import build_backbone
from rhovid.train.models.flops import count_flops


def test_paper_model_timing_on_cpu_with_tiny_backbone():
    r = time_paper_model("rho2-byol-slow-r50", batch_size=2, device="cpu", warmup=1, steps=2, arch="tiny", crop=32)
    assert (r["arch"], r["rho"], r["frames"], r["crop"]) == ("tiny", 2, 8, 32)
    assert math.isfinite(r["final_loss"]) and r["steps_per_s"] > 0
    macs = count_flops(build_backbone("tiny"), (1, 3, 8, 32, 32))
    assert r["gmacs_per_clip"] == pytest.approx(macs / 1e9)
    assert r["tflops"] == pytest.approx(6 * macs * 4 * r["steps_per_s"] / 1e12)  # 4 clips per step
    assert r["clips_per_s"] == pytest.approx(4 * r["steps_per_s"])


@pytest.mark.gpu
def test_paper_model_timing_slow_r50_bf16_on_gpu():
    r = time_paper_model("rho2-byol-slow-r50", batch_size=4, device="cuda", warmup=2, steps=3)
    assert r["arch"] == "slow_r50" and r["crop"] == 224
    assert math.isfinite(r["final_loss"]) and r["tflops"] > 1.0
    assert torch.cuda.max_memory_allocated() > 0


def test_paper_only_bench_writes_its_table(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "train.md"
    args = parser.parse_args(["--paper-only", "--paper-model", "tiny-byol", "--paper-batch", "2", "--warmup", "5",
                              "--steps", "5", "--out", str(out)])
    assert run(args) == 0
    r = json.loads(out.with_suffix(".json").read_text())["paper_model"]
    assert r["preset"] == "tiny-byol" and r["steps_per_s"] > 0 and math.isfinite(r["final_loss"])
    assert f"{r['steps_per_s']:.2f} steps/s" in out.read_text()
