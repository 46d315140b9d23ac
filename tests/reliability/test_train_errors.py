"""Expected errors are one line, bugs a traceback, ``--debug`` always a traceback (issue 13 item 15);
hostile config types and a full disk are expected errors. Real ``rhovid`` processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from rhovid.train.checkpoint import load_checkpoint


def _with_command(tmp_path, body: str, *argv: str, env=None):
    """Run ``rhovid.cli.main`` in a fresh process with one more subcommand ``boom`` whose run() is ``body``."""
    (tmp_path / "boom_cmd.py").write_text(textwrap.dedent(f"""
        def add_arguments(p):
            pass

        def run(args):
            {body}
    """))
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import rhovid.cli as c; "
              "c.COMMANDS['boom'] = ('boom_cmd', 'a command with a bug'); sys.exit(c.main(sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", script, str(tmp_path), *argv], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("body", ["return {}['missing']", "return int('x')", "return [].pop()"])
def test_a_bug_prints_its_traceback(tmp_path, body):
    """A KeyError / ValueError / IndexError raised by a bug is not dressed up as a user error."""
    proc = _with_command(tmp_path, body, "boom")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "boom_cmd.py" in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("rhovid boom: unexpected error (a bug in rhovid")


def test_a_user_error_is_one_line_unless_debugging(tmp_path):
    import os

    body = "from rhovid.errors import UsageError; raise UsageError('--frames must be >= 1, got 0')"
    proc = _with_command(tmp_path, body, "boom")
    assert (proc.returncode, proc.stderr) == (1, "rhovid boom: error: --frames must be >= 1, got 0\n")
    for argv, env in ((["--debug", "boom"], None), (["boom", "--debug"], None),
                      (["boom"], {**os.environ, "RHOVID_DEBUG": "1"})):
        proc = _with_command(tmp_path, body, *argv, env=env)
        assert proc.returncode == 1 and "Traceback" in proc.stderr, (argv, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1] == "rhovid boom: error: --frames must be >= 1, got 0"


@pytest.mark.parametrize("field, value", [("steps", "many"), ("data", 5), ("method", "nope"), ("optim", [1])])
def test_wrong_config_types_are_one_line(trained_run, epoch_data, rhovid_cmd, tmp_path, field, value):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, field: value}))
    for argv in (["train", "--out", run, "--resume"], ["export", run, "--out", tmp_path / "b.pt"],
                 ["eval", "knn", "--data", epoch_data, "--run", run, "--views", "1x1", "--workers", "0"]):
        proc = rhovid_cmd(*argv)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, (argv, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1].startswith(f"rhovid {argv[0]}: error: "), proc.stderr
        assert f"{run / 'config.json'}" in proc.stderr


UNSHARE = shutil.which("unshare")


def _can_mount_tmpfs() -> bool:
    if not UNSHARE:
        return False
    probe = subprocess.run([UNSHARE, "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -rm and tmpfs (a user mount namespace) for a "
                                                  "small real file system")
def test_a_full_disk_is_one_line_and_the_run_resumes_exactly(epoch_data, tmp_path):
    """``rhovid train`` on a 16 MiB tmpfs: the disk fills while a checkpoint is written; the error is one
    line, the last checkpoint stays loadable, and after freeing space --resume ends bit-equal to a run
    that never saw a full disk."""
    tiny = (f"--data {epoch_data} --preset tiny-simclr --frames 4 --stride 2 --crop 32 --batch-size 2 "
            "--checkpoint-every 1 --set data.timespan_s=1.0 --set progress=false --set data.workers=0")
    rhovid = f"{sys.executable} -m rhovid.cli"
    script = textwrap.dedent(f"""
        set -u
        mount -t tmpfs -o size=16m tmpfs /mnt || exit 90
        {rhovid} train {tiny} --steps 2 --out /mnt/run > {tmp_path}/first.out 2>&1 || exit 91
        head -c 100000000 /dev/zero > /mnt/filler 2>/dev/null
        {rhovid} train --out /mnt/run --resume --steps 4 > {tmp_path}/start.out 2> {tmp_path}/start.err
        echo $? > {tmp_path}/start.rc
        rm /mnt/filler
        # leave room for config, metrics and events, not for a checkpoint
        free_kb=$(df -k /mnt | tail -1 | awk '{{print $4}}')
        ckpt_kb=$(du -k /mnt/run/checkpoints/step-0000002.pt | cut -f1)
        head -c $(( (free_kb - ckpt_kb / 2) * 1024 )) /dev/zero > /mnt/filler
        {rhovid} train --out /mnt/run --resume --steps 4 > {tmp_path}/full.out 2> {tmp_path}/full.err
        echo $? > {tmp_path}/full.rc
        cp -r /mnt/run {tmp_path}/at-full
        rm /mnt/filler
        {rhovid} train --out /mnt/run --resume --steps 4 > {tmp_path}/resumed.out 2>&1 || exit 92
        cp -r /mnt/run {tmp_path}/resumed
    """)
    proc = subprocess.run([UNSHARE, "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.returncode, proc.stderr, *(p.read_text() for p in tmp_path.glob("*.out")))
    err = (tmp_path / "start.err").read_text()  # the disk full from the start: config.json cannot be written
    assert (tmp_path / "start.rc").read_text().strip() == "1" and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("rhovid train: error: /mnt/run/"), err
    assert "no space left on device; free space, then rerun" in err
    err = (tmp_path / "full.err").read_text()  # full while the step-3 checkpoint is written
    assert (tmp_path / "full.rc").read_text().strip() == "1" and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("rhovid train: error: no space left on the disk of "), err
    assert "the last checkpoint (step-0000002.pt) is intact" in err
    at_full = tmp_path / "at-full" / "checkpoints"
    assert (at_full / "latest").read_text().strip() == "step-0000002.pt"
    assert load_checkpoint(at_full / "step-0000002.pt")["step"] == 2
    assert not list(at_full.glob(".tmp-*"))  # the failed write left no partial file
    # the reference: the same 4 steps on a disk that never filled up, in a fresh process like the runs above
    # (in this one, earlier tests may have changed torch's thread count, and with it the float sums)
    ref_run = subprocess.run([sys.executable, "-m", "rhovid.cli", "train", *tiny.split(), "--steps", "4", "--out",
                              str(tmp_path / "reference")], capture_output=True, text=True, timeout=600)
    assert ref_run.returncode == 0, ref_run.stderr[-2000:]
    ref = load_checkpoint(tmp_path / "reference" / "checkpoints" / "step-0000004.pt")
    got = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step-0000004.pt")
    for k, v in ref["model"].items():
        assert torch.equal(v, got["model"][k]), k


def test_missing_cloud_credentials_are_one_line(tmp_path):
    """The README's first object-storage command without credentials: one line saying where they come
    from, not a botocore traceback called a bug (signing fails before any request leaves the machine)."""
    import os

    pytest.importorskip("s3fs", reason="the s3 extra (s3fs) is not installed")
    (tmp_path / "videos" / "a").mkdir(parents=True)
    nowhere = str(tmp_path / "none")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=nowhere, AWS_CONFIG_FILE=nowhere, AWS_EC2_METADATA_DISABLED="true",
               AWS_ENDPOINT_URL="http://127.0.0.1:9", HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "rhovid.cli", "ingest", str(tmp_path / "videos"), "--out",
                           "s3://my-bucket/k400"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("rhovid ingest: error: s3://my-bucket/k400") and "credentials" in line, proc.stderr
