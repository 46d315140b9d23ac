"""Process lifetime: a worker or ffmpeg child ends when the process that started it dies.

A SIGKILLed ``rhovid ingest`` or ``rhovid boxes`` used to leave its pool workers running (blocked
on their task queue, whose write end they hold themselves, so for good), still transcoding or
decoding beside the rerun; a ``rhovid train`` killed while its DataLoader workers were starting
left them too: torch's worker watchdog records ``os.getppid()`` only after start-up, and by then
the parent is init (issue 13, item 4). This module is the one owner of the remedy; every place
that starts a long-lived child calls it:

- pool workers (``rhovid.executor``, ingest and boxes): ``die_with_parent`` as the pool initializer;
- DataLoader workers (``rhovid.train.data._worker_init``): ``die_with_parent`` first thing;
- ffmpeg (``rhovid.ingest.transcode``): started with ``run_tied``.

How: on Linux the child asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), which holds however the parent ends, SIGKILL and OOM kills included.
The parent may already be gone when the child asks, so the child then checks (multiprocessing's
parent sentinel; for ffmpeg, its parent pid) and exits at once if it has died. The sentinel holds
for ``spawn`` and ``forkserver`` (what rhovid uses); under ``fork`` a sibling forked later keeps
the parent's end of the pipe open, so there only the kernel signal is reliable. Elsewhere (no
prctl) a daemon thread polls ``os.getppid()`` every ``POLL_S`` seconds. Caveat of prctl: the
signal follows the *thread* that started the child; rhovid starts pools, DataLoader workers and ffmpeg from the thread
that also waits for them, so that thread lives as long as the children are needed.

Dask workers are not children of rhovid (``--scheduler`` connects to a cluster someone else
started), so they are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): signal to deliver when the parent dies."""
POLL_S = 1.0
"""Parent check interval of the watchdog thread where prctl is unavailable."""

_prctl = _sigmask = None
SIG_UNBLOCK = 1
"""``how`` of ``pthread_sigmask`` (Linux)."""
_SIGINT_SET = ctypes.create_string_buffer(128)
"""A ``sigset_t`` (1024 bits on Linux) holding SIGINT alone."""
if sys.platform.startswith("linux"):
    # Resolved once at import: a ``preexec_fn`` runs between fork and exec, where loading a
    # library (and taking its locks) is unsafe.
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _prctl = _libc.prctl
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _prctl.restype = ctypes.c_int
    _sigmask = _libc.pthread_sigmask
    _libc.sigemptyset(_SIGINT_SET)
    _libc.sigaddset(_SIGINT_SET, signal.SIGINT)


def die_with_parent() -> None:
    """End this worker process (SIGKILL) when its parent dies; exit now if it already has.

    Call it first thing in a ``multiprocessing`` child (a pool initializer, a DataLoader
    ``worker_init_fn``). The signal follows the kernel parent: the process that started this
    one, or for ``forkserver`` children the fork server, which itself ends with that process.
    Whether the starting process is already gone is read from multiprocessing's parent
    sentinel (a pipe that reaches end-of-file when it dies), not from pids, which the
    re-parenting to init (or a subreaper) changes and which get reused.
    """
    if _prctl is not None:
        if _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch, args=(os.getppid(),), name="rhovid-parent-watch", daemon=True).start()
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():  # died before the request above took effect
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGKILL)


def run_tied(args: list[str], timeout: float | None = None, memory_bytes: int | None = None
             ) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True, timeout=timeout)`` for a child that dies with
    this process (Linux) and gets at most ``memory_bytes`` of data segment (``RLIMIT_DATA``:
    heap, anonymous mappings, thread stacks), so a hostile input fails it with ENOMEM instead of
    taking the machine's memory.

    The settings are made between fork and exec (``preexec_fn``), where Python code runs in
    the child; a Ctrl-C arriving just then would print a spurious traceback from that code, so
    SIGINT is blocked in this thread while the child is created and unblocked in the child
    right before exec (by libc, without running Python signal handlers). Where prctl is
    unavailable the child is not tied to this process; the timeout still bounds it.

    Raises:
        subprocess.TimeoutExpired: after killing the child, as ``subprocess.run`` does.
    """
    blocking = _sigmask is not None
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if blocking else set()
    setup = _child_setup(memory_bytes, unblock_sigint=blocking and signal.SIGINT not in before)
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=setup)
    finally:
        if blocking:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
    with proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # timeout, Ctrl-C: the child goes too
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _child_setup(memory_bytes: int | None, unblock_sigint: bool):
    """The ``preexec_fn`` of ``run_tied``."""
    import resource

    parent = os.getpid()
    limit = None
    if memory_bytes is not None:
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        limit = int(memory_bytes) if hard == resource.RLIM_INFINITY else min(int(memory_bytes), hard)

    def setup() -> None:  # in the child between fork and exec: keep it small
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        if unblock_sigint:
            _sigmask(SIG_UNBLOCK, _SIGINT_SET, None)

    return setup

