"""Checkpoint readers (eval, export) never delete, and trust ``latest`` only within the run's own
checkpoints (issue 13 items 2 and 5). Real runs, real ``rhovid`` processes, real hostile files.
"""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from rhovid.train.checkpoint import load_checkpoint

EVAL = ["--views", "1x1", "--workers", "0", "--no-progress"]


@pytest.fixture
def run(trained_run, tmp_path):
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"


def test_readers_leave_the_writers_temporary_alone(run, epoch_data, rhovid_cmd, tmp_path):
    """A ``.tmp-`` checkpoint being written by ``rhovid train`` survives ``rhovid export`` and ``rhovid eval``
    (they used to sweep it, and the writer's rename then failed: the training run died)."""
    tmp = run / "checkpoints" / ".tmp-step-0000004.pt.x8k2q1"
    tmp.write_bytes(b"half a checkpoint")
    proc = rhovid_cmd("export", run, "--out", tmp_path / "backbone.pt")
    assert proc.returncode == 0, proc.stderr
    proc = rhovid_cmd("eval", "knn", "--data", epoch_data, "--run", run, "--test-split", "train", *EVAL,
                      "--features", tmp_path / "features.zarr")
    assert proc.returncode == 0, proc.stderr
    assert tmp.read_bytes() == b"half a checkpoint"


def test_the_training_run_owns_its_folder(run, epoch_data, rhovid_cmd):
    """Only the run's writer cleans up, under its lock: a resumed run sweeps its own stale temporaries,
    and a second ``rhovid train`` on a folder that is being trained is refused."""
    import fcntl

    stale = run / "checkpoints" / ".tmp-step-0000003.pt.killed"
    stale.write_bytes(b"left by a SIGKILL")
    with open(run / ".lock", "a+") as held:  # what a live `rhovid train` holds
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()}\n")
        held.flush()
        proc = rhovid_cmd("train", "--out", run, "--resume", "--steps", "4")
        assert proc.returncode == 1 and f"in use by another process (pid {os.getpid()}" in proc.stderr, proc.stderr
        assert stale.exists() and "Traceback" not in proc.stderr
    proc = rhovid_cmd("train", "--out", run, "--resume", "--steps", "4")  # the lock is free again
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and load_checkpoint(run / "checkpoints" / "step-0000004.pt")["step"] == 4


def _payload_file(path, marker):
    """A torch-loadable file whose unpickling would create ``marker`` (weights_only must refuse it)."""

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format_version": 1, "step": 3, "model": Payload()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)


SLOW = pytest.mark.slow  # the same check on more hostile files (make test-all)


@pytest.mark.parametrize("case", ["parent", pytest.param("absolute", marks=SLOW), pytest.param("symlink", marks=SLOW),
                                  "other_run", "payload", pytest.param("not_a_dict", marks=SLOW),
                                  pytest.param("wrong_types", marks=SLOW), pytest.param("garbage_latest", marks=SLOW)])
def test_latest_and_checkpoints_are_checked(case, run, other_run, epoch_data, rhovid_cmd, tmp_path):
    """The resuming writer and the readers refuse a ``latest`` or a checkpoint that is not this run's,
    with one ``rhovid X: error:`` line (they used to follow ``latest`` to any path, and another run's
    checkpoint trained on with "final loss nan", exit 0), and run nothing from the file."""
    ckpts = run / "checkpoints"
    marker = tmp_path / "payload-ran"
    latest = "step-0000009.pt"
    if case == "parent":
        latest = f"../../{other_run.parent.name}/other/checkpoints/step-0000002.pt"
        shutil.copytree(other_run, run.parent / other_run.parent.name / "other")  # where ../../ leads
    elif case == "absolute":
        latest = str(other_run / "checkpoints" / "step-0000002.pt")
    elif case == "symlink":
        (ckpts / latest).symlink_to(other_run / "checkpoints" / "step-0000002.pt")
    elif case == "other_run":  # another run's checkpoint under a valid name: its config gives it away
        shutil.copy(other_run / "checkpoints" / "step-0000002.pt", ckpts / latest)
    elif case == "payload":
        _payload_file(ckpts / latest, marker)
    elif case == "not_a_dict":
        torch.save([1, 2, 3], ckpts / latest)
    elif case == "wrong_types":
        good = load_checkpoint(ckpts / "step-0000003.pt")
        torch.save({**good, "model": [1, 2], "ranks": "all"}, ckpts / latest)
    (ckpts / "latest").write_bytes(os.urandom(4096) if case == "garbage_latest" else (latest + "\n").encode())
    commands = [["train", "--out", run, "--resume", "--steps", "12"], ["export", run, "--out", tmp_path / "b.pt"]]
    if case == "other_run":
        commands.append(["eval", "knn", "--data", epoch_data, "--run", run, "--test-split", "train", *EVAL])
    for argv in commands:
        proc = rhovid_cmd(*argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, (argv, proc.stdout, proc.stderr)
        assert lines and lines[-1].startswith(f"rhovid {argv[0]}: error: ") and "Traceback" not in proc.stderr, \
            proc.stderr
        assert "final loss" not in proc.stdout
    assert not marker.exists()  # the payload never ran
    assert not (tmp_path / "b.pt").exists()
    assert load_checkpoint(ckpts / "step-0000003.pt")["step"] == 3  # this run's own checkpoints are untouched
