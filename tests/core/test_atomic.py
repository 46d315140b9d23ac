import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rhovid.atomic import append_jsonl, atomic_path, atomic_write_json, read_jsonl, sweep_temporaries


def test_atomic_write_json_round_trip(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": 1, "path": tmp_path})
    assert json.loads(p.read_text()) == {"x": 1, "path": str(tmp_path)}
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_file_gets_the_mode_open_would_give(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {})  # not mkstemp's 0600: others may need to read checkpoints
        with open(tmp_path / "b.json", "w") as f:  # the reference: a plain open() under the same umask
            f.write("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode == (tmp_path / "b.json").stat().st_mode & 0o777


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("writer crashed")
    assert p.read_bytes() == b"old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.bin"]


def test_sigkill_mid_write_leaves_old_file_and_sweepable_temporary(tmp_path):
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    script = textwrap.dedent(f"""
        import sys, time
        from rhovid.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x" * 1000); f.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"old"
    leftovers = sweep_temporaries(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-big.bin")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["big.bin"]


def test_jsonl_skips_torn_last_line_only(tmp_path):
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"a": 1})
    append_jsonl(p, {"a": 2})
    with open(p, "a") as f:
        f.write('{"a": 3')  # a writer killed mid-line
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}]
    p.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(p)
