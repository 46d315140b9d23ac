"""A first run as a new user would make it (issue 13 items 12 and 13): loader workers that fit the
machine and the data, sensible defaults without a preset, ``--help`` that shows them, and missing
box sets found before training. Real ``rhovid`` processes on real shards.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from rhovid.errors import UsageError
from rhovid.ingest.reader import list_shards, read_index_file
from rhovid.ingest.shards import write_index
from rhovid.train.data import ClipLoader, LoaderConfig

CLIP = ["--frames", "4", "--stride", "2", "--crop", "32", "--set", "data.timespan_s=1.0", "--set", "progress=false"]


@pytest.fixture(scope="module")
def four_videos(epoch_data, tmp_path_factory):
    """``epoch_data`` without its last shard: 4 videos."""
    data = tmp_path_factory.mktemp("four") / "data"
    shutil.copytree(epoch_data, data)
    last = list_shards(data, "train")[-1]
    last.unlink()
    last.with_suffix(".idx").unlink()
    doc = read_index_file(data)
    write_index(data, [e for e in doc["samples"] if e["shard"] != last.name], doc["labels"])
    return data


def test_four_videos_at_batch_four_train_with_the_default_workers(four_videos, rhovid_cmd, tmp_path):
    """Before: 8 workers by default, batches formed per worker, so no worker ever had 4 videos and the
    run failed with "no batches in epoch" after the workers had started. Now the default is one worker
    per available core, no more than can each form a batch (here 1), and it trains."""
    run = tmp_path / "run"
    proc = rhovid_cmd("train", "--data", four_videos, "--batch-size", "4", "--steps", "2", *CLIP, "--out", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run / "config.json").read_text())["data"]["workers"] == 1  # resolved and recorded
    proc = rhovid_cmd("train", "--data", four_videos, "--batch-size", "4", "--steps", "2", *CLIP,
                      "--set", "data.workers=2", "--out", tmp_path / "two")
    assert proc.returncode == 1 and "--set data.workers=1" in proc.stderr.splitlines()[-1], proc.stderr
    assert not (tmp_path / "two").exists()  # refused before anything was written


def test_default_workers_follow_the_cpu_affinity(epoch_data, rhovid_cmd, tmp_path):
    """One worker per core this process may use: pinned to one core it gets one; 6 videos at batch 2
    allow at most 3."""
    cores = len(os.sched_getaffinity(0))
    for pin, expected in (({min(os.sched_getaffinity(0))}, 1), (None, min(cores, 3))):
        run = tmp_path / f"run-{expected}-{pin is None}"
        proc = rhovid_cmd("train", "--data", epoch_data, "--batch-size", "2", "--steps", "1", *CLIP, "--out", run,
                          preexec_fn=(lambda p=pin: os.sched_setaffinity(0, p)) if pin else None)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads((run / "config.json").read_text())["data"]["workers"] == expected


@pytest.mark.parametrize("batch, workers, message", [
    (4, 8, "8 worker(s) [0, 1, 2, 3, 4, 5, 6, 7] cannot form a batch of 4: use at most 1 workers"),
    (8, 2, "has 6 videos, fewer than one batch of 8: lower the batch size"),
])
def test_the_loader_alone_says_which_knob_to_change(epoch_data, batch, workers, message):
    """Before: iterating such a ClipLoader ended with a bare StopIteration."""
    with pytest.raises(UsageError, match=re.escape(message)):
        ClipLoader(LoaderConfig(data=str(epoch_data), batch_size=batch, workers=workers))


def test_no_preset_tiny_arch_gets_the_tiny_settings(rhovid_cmd):
    proc = rhovid_cmd("train", "--arch", "tiny", "--method", "byol", "--print-config")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    assert (cfg["arch"], cfg["method"], cfg["data"]["crop"], cfg["data"]["frames"]) == ("tiny", "byol", 64, 4)
    assert cfg["batch_size"] == 8 and cfg["device"] == "cpu"
    proc = rhovid_cmd("train", "--preset", "constcl-r3d50", "--steps", "7", "--print-config")
    cfg = json.loads(proc.stdout)
    assert (cfg["arch"], cfg["data"]["frames"], cfg["data"]["boxes"], cfg["steps"]) == ("r3d50", 16, "random", 7)


def _option_help(text: str, flag: str) -> str:
    """The help of one option (its lines in the options section, joined)."""
    lines = text.split("options:", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(flag))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  -")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def test_help_shows_the_defaults_of_the_preset(rhovid_cmd):
    plain = rhovid_cmd("train", "--help").stdout
    paper = rhovid_cmd("train", "--preset", "rho2-byol-slow-r50", "--help").stdout
    assert "Defaults shown: preset rho2-byol-slow-r50" in " ".join(paper.split())
    from rhovid.train.config import get_preset

    steps = get_preset("rho2-byol-slow-r50").steps  # 93,600: the preset's own value, whatever it is
    for flag, value in (("--arch", "slow_r50"), ("--batch-size", "512"), ("--steps", str(steps)), ("--crop", "224"),
                        ("--device", "cuda")):
        assert f"(default: {value})" in _option_help(paper, flag), (flag, _option_help(paper, flag))
    for flag, value in (("--arch", "tiny"), ("--batch-size", "8"), ("--crop", "64"), ("--method", "simclr")):
        assert f"(default: {value})" in _option_help(plain, flag), (flag, _option_help(plain, flag))
    # the choices are the dicts that build methods and backbones (a method added there is offered here)
    from rhovid.train.methods import METHODS
    from rhovid.train.models import SPECS

    for flag, names in (("--method", METHODS), ("--arch", SPECS)):
        assert _option_help(plain, flag).startswith(f"{flag} {{{','.join(names)}}}"), _option_help(plain, flag)


def test_a_box_set_missing_on_one_shard_is_refused_up_front(epoch_data, rhovid_cmd, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(epoch_data, data)
    proc = rhovid_cmd("boxes", data, "--method", "slic", "--workers", "0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    src = tmp_path / "more"
    (src / "c00").mkdir(parents=True)
    shutil.copy(next((epoch_data.parent / "src").glob("*/*.mp4")), src / "c00" / "extra.mp4")
    proc = rhovid_cmd("ingest", src, "--out", data, "--short-side", "48", "--gop", "8", "--fps", "15",
                      "--workers", "0", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    new = list_shards(data, "train")[-1].stem
    run = tmp_path / "run"
    proc = rhovid_cmd("train", "--data", data, "--preset", "tiny-constcl", "--boxes", "slic", "--batch-size", "2",
                      "--steps", "2", *CLIP, "--out", run)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "1 of 4 shards lack a complete box set slic-" in last and new in last and "rhovid boxes " in last, last
    assert not run.exists()
