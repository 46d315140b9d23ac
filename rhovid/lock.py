"""An exclusive lock file held by the one process that writes a folder (a training run).

``flock`` locks belong to the open file: the kernel releases them when the holder exits in any
way, SIGKILL included, so a killed writer never leaves a stale lock behind. The file itself stays
(deleting it would race with the next holder) and records the holder's pid for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from rhovid.errors import UserError


class LockedError(UserError, BlockingIOError):
    """Another live process holds the lock."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, or fail at once.

    Args:
        path: the lock file (its folder must exist).
        what: the locked thing, for the message, e.g. "run folder runs/byol".

    Raises:
        LockedError: another process holds it (the message names its pid).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "?"
            raise LockedError(f"{what} is in use by another process (pid {holder}, lock file {path}); wait "
                              "for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
