"""Run-folder messages say what happened and what to do (issue 13 item 14); real ``rhovid`` processes."""

from __future__ import annotations

import json
import shutil

from rhovid.atomic import read_jsonl
from rhovid.train.checkpoint import load_checkpoint

TINY = ["--preset", "tiny-simclr", "--frames", "4", "--stride", "2", "--crop", "32", "--batch-size", "2",
        "--set", "data.timespan_s=1.0", "--set", "progress=false", "--set", "data.workers=0", "--set", "log_every=1"]


def test_a_start_that_failed_before_its_first_checkpoint_can_be_corrected(epoch_data, rhovid_cmd, tmp_path):
    """A run that stops before its first checkpoint (here: the loss overflows at step 1) leaves a folder
    that the corrected command reuses, with or without --resume (before: "not empty; pass --resume",
    and --resume then refused the corrected config)."""
    run = tmp_path / "run"
    # plain SGD without warm-up: tiny-simclr's LARS bounds each update by its trust ratio, and its 10
    # warm-up steps end on the cosine's value at step 10 of this 3-step run, 0: no LR would overflow
    args = ["train", "--data", epoch_data, *TINY, "--set", "optim.name=sgd", "--set", "optim.warmup_steps=0",
            "--steps", "3", "--checkpoint-every", "3", "--out", run]
    proc = rhovid_cmd(*args, "--set", "optim.lr=1e30")
    assert proc.returncode == 3 and "non-finite loss at step" in proc.stderr, proc.stderr
    assert (run / "config.json").exists() and not (run / "checkpoints" / "latest").exists()
    proc = rhovid_cmd(*args, "--resume", "--set", "optim.lr=0.05")  # corrected, with --resume
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "config.json").read_text())["optim"]["lr"] == 0.05
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]  # one trajectory
    shutil.rmtree(run)
    assert rhovid_cmd(*args, "--set", "optim.lr=1e30").returncode == 3
    proc = rhovid_cmd(*args)  # corrected, without --resume: starts over
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(run / "checkpoints" / "step-0000003.pt")["step"] == 3


def test_finished_missing_and_extended_runs(trained_run, epoch_data, rhovid_cmd, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = (run / "checkpoints" / "step-0000003.pt").read_bytes()
    proc = rhovid_cmd("train", "--out", run, "--resume")
    assert proc.returncode == 0 and "nan" not in proc.stdout, proc.stdout
    loss = read_jsonl(run / "metrics.jsonl")[-1]["loss"]
    assert f"had already finished all 3 steps (loss at step 3: {loss:.4f}" in proc.stdout
    assert "--resume --steps N" in proc.stdout
    assert (run / "checkpoints" / "step-0000003.pt").read_bytes() == before  # nothing rewritten
    proc = rhovid_cmd("train", "--out", tmp_path / "nope", "--resume")
    assert proc.returncode == 1 and "no --data" not in proc.stderr
    assert f"run folder {tmp_path / 'nope'} does not exist, so there is nothing to continue; start the run " \
           "without --resume" in proc.stderr
    assert not (tmp_path / "nope").exists()
    (tmp_path / "notarun").mkdir()
    proc = rhovid_cmd("train", "--out", tmp_path / "notarun", "--resume")
    assert proc.returncode == 1 and "is not a training run (it has no config.json)" in proc.stderr
    # --resume --steps N lengthens the run on purpose; the change is recorded
    proc = rhovid_cmd("train", "--out", run, "--resume", "--steps", "5")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["steps"] == 5 and cfg["steps_changes"] == [{"at_step": 3, "from": 3, "to": 5}]
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    proc = rhovid_cmd("train", "--out", run, "--resume", "--steps", "4")
    assert proc.returncode == 1 and "already at step 5" in proc.stderr
    proc = rhovid_cmd("train", "--data", epoch_data, *TINY, "--steps", "3", "--out", run)
    assert proc.returncode == 1 and "already holds a run (last checkpoint step-0000005.pt)" in proc.stderr
    assert f"rhovid train --out {run} --resume" in proc.stderr


def test_a_failed_ablation_leaves_no_empty_out(epoch_data, rhovid_cmd, tmp_path):
    out = tmp_path / "ablation"
    proc = rhovid_cmd("ablation", "--data", epoch_data, "--method", "constcl", "--boxes", "no-such-set",
                      "--steps", "1", "--out", out, "--no-progress")
    assert proc.returncode == 1 and "no-such-set" in proc.stderr.splitlines()[-1], proc.stderr
    assert not out.exists()
