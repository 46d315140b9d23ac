import subprocess
import sys

import pytest

from rhovid.cli import COMMANDS, main


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_subcommand_has_help(command):
    cmd = [sys.executable, "-m", "rhovid.cli", command, "--help"]
    if command == "bench":
        cmd = [sys.executable, "-m", "rhovid.cli", "bench", "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["bench", "ingest", "--videos", "0"], "--videos must be > 0, got 0"),
    (["bench", "loader", "--repeats", "-1"], "--repeats must be > 0, got -1"),
    (["bench", "train", "--steps", "0"], "--steps must be > 0, got 0"),
    (["bench", "loader", "--bframes", "-1"], "--bframes must be >= 0, got -1"),  # 0 is allowed: no B-frames
])
def test_bench_refuses_non_positive_counts_before_writing_results(tmp_path, capsys, argv, message):
    out = tmp_path / "result.md"
    assert main([*argv, "--out", str(out)]) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_output_path_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep")
    assert main(["synth", str(target), "--classes", "1", "--per-class", "1", "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rhovid synth: error: ") and str(target) in err and "Traceback" not in err
    assert target.read_text() == "keep"


def test_run_folder_that_is_a_file_is_a_one_line_error(tiny_data, tmp_path, capsys):
    target = tmp_path / "run"
    target.write_text("keep")
    rc = main(["train", "--data", str(tiny_data), "--method", "simclr", "--arch", "tiny", "--steps", "1",
               "--out", str(target), "--set", "data.workers=0"])
    err = capsys.readouterr().err
    assert rc == 1 and err.splitlines()[-1].startswith(f"rhovid train: error: {target}: not a directory"), err
    assert target.read_text() == "keep"
