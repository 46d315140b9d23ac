"""Advisory file locks that end with their holder: ``flock`` on an open file descriptor.

Two ``rhovid ingest`` runs into one DATA, or two ``rhovid boxes`` runs of one box set, must
not write the same shard or group (issue 13, item 3). Each writer holds a lock file for as
long as it writes: ``DATA/.ingest.lock`` for an ingest run, ``boxes.zarr/.locks/<shard>.<set>.lock``
for one box-store group, ``boxes.zarr/.sets.lock`` for the registry.

Why ``flock``: the kernel drops the lock when the last descriptor of the open file closes,
which happens when the holder dies however it dies (SIGKILL, OOM kill), so a lock never
outlives a killed holder and there is no stale lock file to clean up. Descriptors are opened
close-on-exec (Python's default), so ffmpeg and spawned workers do not inherit the lock. The
lock file itself stays (deleting it would race with a process that just opened it); it holds
the holder's pid and host, for the message a waiting process prints.

Filesystems: on a local filesystem this is exact. On NFS, Linux clients (since 2.6.12) emulate
``flock`` with NFS byte-range locks: with NFSv4, or NFSv3 with a running lock manager, the lock
holds across client machines, and a crashed client's lock is released when its lease expires on
the server (NFSv4: 90 s by default), not at once; with the ``nolock`` / ``local_lock=all`` mount
options it holds only among processes of one machine. Other network filesystems (SMB, some
FUSE filesystems) vary; keep concurrent writers on one machine there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path


def holder(path: str | os.PathLike) -> str:
    """Who holds (or last held) the lock at ``path``, as written by ``hold``: ``pid N on HOST``."""
    try:
        return Path(path).read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


@contextlib.contextmanager
def hold(path: str | os.PathLike, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, waiting for it.

    Args:
        path: the lock file.
        on_wait: called once with ``holder(path)`` when another process holds the lock, before
            this one waits for it (to say so).
    """
    fd = _open(path)
    try:
        if not _try(fd):
            if on_wait is not None:
                on_wait(holder(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        _stamp(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def try_hold(path: str | os.PathLike) -> Iterator[bool]:
    """Take the lock on ``path`` if it is free; yields whether this process holds it."""
    fd = _open(path)
    try:
        got = _try(fd)
        if got:
            _stamp(fd)
        yield got
    finally:
        os.close(fd)


def _open(path) -> int:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _stamp(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
