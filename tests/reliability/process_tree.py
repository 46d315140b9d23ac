"""Real processes for the reliability tests: start rhovid commands, find their descendants in
/proc, kill them, wait for them. Linux only (reads /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def rhovid(*args: str, **kw) -> subprocess.Popen:
    """``python -m rhovid.cli ARGS`` in its own session (so killing it reaches nothing else)."""
    return subprocess.Popen([sys.executable, "-m", "rhovid.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``, None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running (a zombie, or a process that no longer exists, is not)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> dict[int, str]:
    """Every living descendant of ``pid``: ``{pid: command line}``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] not in ("Z", "X"):
                children.setdefault(st[1], []).append(int(entry))
    out, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = cmdline(child)
            todo.append(child)
    return out


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(step)
    return pred()


def wait_gone(pids, timeout: float) -> tuple[list[int], float]:
    """Wait until none of ``pids`` is alive; returns (still alive, seconds waited)."""
    t0 = time.monotonic()
    wait_until(lambda: not any(alive(p) for p in pids), timeout, step=0.05)
    return [p for p in pids if alive(p)], time.monotonic() - t0


def kill_survivors(pids) -> None:
    """SIGKILL whatever of ``pids`` still runs (a failing test must not leave processes)."""
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for ``proc``: (exit status, stdout, stderr); SIGKILLs its session on timeout."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {timeout} s; stderr: {err.decode()[-2000:]}") from None
    return proc.returncode, out.decode(), err.decode()


def run_measured(cmd: list[str], timeout: float, preexec_fn=None) -> tuple[int, str, str, float]:
    """Run ``cmd`` to its end: (exit status, stdout, stderr, its peak RSS in GiB).

    The pipes are read on threads and the process is reaped with ``os.wait4``, whose rusage is this
    child's alone; ``getrusage(RUSAGE_CHILDREN)`` would report the largest child the whole pytest
    process ever had (an earlier training run). AssertionError past ``timeout`` seconds.
    """
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            for t in readers:
                t.join()
            raise AssertionError(f"{' '.join(map(str, cmd[:6]))} ... ran past {timeout:.0f} s")
        time.sleep(0.02)
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out["out"].decode(), out["err"].decode(), usage.ru_maxrss / 2**20
