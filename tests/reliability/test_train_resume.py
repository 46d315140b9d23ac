"""Exact resume across epoch boundaries: stop after every step, resume, compare every tensor.

Issue 13 item 1: when the checkpoint fell at the end of an epoch, the loader moved on to the
next epoch by itself while the batch stream still held the old epoch number and asked for it
again, so one epoch was trained twice. Here a 9-step run spans three 3-batch epochs; the run is
resumed from the checkpoint of every step and must end bit-equal to the uninterrupted run
(model, optimizer, RNG states and loader position).
"""

from __future__ import annotations

import dataclasses
import shutil

import torch

from rhovid.train.checkpoint import checkpoint_name, load_checkpoint
from rhovid.train.config import get_preset, replace_data
from rhovid.train.loop import train

STEPS, PER_EPOCH = 9, 3


def tiny_config(data, steps=STEPS, workers=0):
    cfg = get_preset("tiny-simclr")
    cfg = dataclasses.replace(cfg, batch_size=2, steps=steps, checkpoint_every=1, log_every=1, progress=False,
                              optim=dataclasses.replace(cfg.optim, lr_batch=2, warmup_steps=2))
    return replace_data(cfg, data=str(data), crop=32, frames=4, stride=2, timespan_s=1.0, workers=workers)


def assert_bit_equal(a, b, where="checkpoint"):
    """Every tensor equal bit for bit, every other value equal, the same keys everywhere."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for k in a:
            assert_bit_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bit_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def stopped_after(full, step, run):
    """``run`` as a process killed right after checkpoint ``step`` of ``full`` would leave it."""
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "config.json", run / "config.json")
    shutil.copy(full / "checkpoints" / checkpoint_name(step), run / "checkpoints" / checkpoint_name(step))
    (run / "checkpoints" / "latest").write_text(checkpoint_name(step) + "\n")


def test_resume_from_every_step_of_three_epochs_is_bit_equal(epoch_data, tmp_path):
    cfg = tiny_config(epoch_data)
    full = tmp_path / "full"
    train(cfg, full)
    final = load_checkpoint(full / "checkpoints" / checkpoint_name(STEPS))
    epochs = [load_checkpoint(full / "checkpoints" / checkpoint_name(s))["ranks"][0]["data"]["loader"]["epoch"]
              for s in range(1, STEPS + 1)]
    assert epochs == [s // PER_EPOCH for s in range(STEPS)]  # three epochs of three batches
    for step in range(1, STEPS):
        run = tmp_path / f"stopped-{step}"
        stopped_after(full, step, run)
        train(cfg, run, resume=True)
        assert_bit_equal(final, load_checkpoint(run / "checkpoints" / checkpoint_name(STEPS)), f"from step {step}")
