"""Bounded ranged reads with many requests in flight, retries and counters.

A clip needs a few KB to a few hundred KB of a shard (its covering fragments). Fetched one
after another, each such read costs a round trip, so a loader worker would spend its time
waiting: with 20 ms RTT and 2 reads per sample, 40 ms per sample before any decoding.
``RangeFetcher`` keeps ``inflight`` reads going at once (a thread pool over fsspec's
reads), so throughput follows bandwidth and decode speed rather than latency, and
``prefetch`` runs that many samples ahead of the decoder, in order (plans and results
stay deterministic).

Failures: timeouts, 5xx answers, connection resets and short bodies are retried with
exponential backoff (``attempts`` tries in all); what still fails raises ``FetchError``,
which the loader counts as a skipped sample. A missing object or a refused permission is
not retried (it will not heal). Every read, retry and byte is counted in ``FetchStats``.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields

from rhovid import storage

# Errors that will not heal by asking again.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class FetchError(OSError):
    """A ranged read still failing after every retry."""


@dataclass
class FetchStats:
    """Counters of one fetcher (or the sum of several)."""

    bytes: int = 0
    """Payload bytes received by successful reads."""
    requests: int = 0
    """Read requests sent, retries included."""
    retries: int = 0
    """Requests that were repeats of a failed one."""
    failed: int = 0
    """Reads given up after every retry."""
    wait_us: int = 0
    """Microseconds the consumer spent blocked waiting for reads (storage latency not hidden)."""

    def add(self, other: FetchStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        return (f"fetched {self.bytes / 1e6:.2f} MB in {self.requests} requests, {self.retries} retries, "
                f"{self.failed} failed reads, {self.wait_us / 1e6:.1f} s waiting for reads")


def data_summary(stats: FetchStats, skipped: int | None) -> str:
    """The one-line summary every command that reads a DATA prints at the end of its run:
    ``data: fetched ... MB in N requests, R retries, ...; S skipped samples`` (``skipped`` None:
    a command that skips nothing, e.g. ``rhovid ingest --verify``, which reports problems instead)."""
    tail = "" if skipped is None else f"; {skipped} skipped samples"
    return f"data: {stats.summary()}{tail}"


def coalesce(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted union of half-open byte ranges: overlapping or touching ranges become one read."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


class RangeFetcher:
    """A pool of ``inflight`` threads doing ranged reads of paths or URLs, with retries.

    Args:
        inflight: reads in flight at once (threads).
        attempts: tries per read (1 = no retry).
        backoff_s: wait before the first retry; doubled per retry (with jitter), capped at 2 s.
    """

    def __init__(self, inflight: int = 16, attempts: int = 6, backoff_s: float = 0.05):
        if inflight < 1 or attempts < 1:
            raise ValueError(f"inflight and attempts must be >= 1, got {inflight}, {attempts}")
        self.inflight, self.attempts, self.backoff_s = inflight, attempts, backoff_s
        self.stats = FetchStats()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def count(self, **delta: int) -> None:
        """Add to the counters (thread-safe); the consumer adds its ``wait_us``."""
        self._count(**delta)

    def _count(self, **delta: int) -> None:
        with self._lock:
            for k, v in delta.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def get(self, url: str, start: int, end: int) -> bytes:
        """Bytes ``start..end-1`` of ``url`` (blocking), retried on transient errors.

        Raises:
            FetchError: still failing after ``attempts`` tries (the last error chained).
            FileNotFoundError, PermissionError: at once, not retried.
        """
        return self._retried(lambda: storage.read_range(url, start, end), end - start, f"{url} bytes {start}..{end}",
                             storage.is_remote(url))

    def get_all(self, url: str) -> bytes:
        """The whole file or object at ``url`` (manifests, indexes), retried like ``get``."""
        return self._retried(lambda: storage.read_bytes(url), None, url, storage.is_remote(url))

    def download(self, url: str, dest: str | os.PathLike) -> int:
        """Copy the whole object at ``url`` into local file ``dest`` (streamed to disk, not held in
        memory), retried like ``get``; returns its size."""

        def read() -> int:
            fs, path = storage.filesystem(url)
            fs.get_file(path, os.fspath(dest))
            return os.path.getsize(dest)

        return self._retried(read, None, url, storage.is_remote(url), size=int)

    def _retried(self, read: Callable, expect: int | None, what: str, remote: bool, size: Callable = len):
        """``read()`` with retries; a local read is tried once (a short local file stays short).
        ``size(result)``: the bytes it counts."""
        delay = self.backoff_s
        attempts = self.attempts if remote else 1
        for attempt in range(attempts):
            self._count(requests=1, retries=int(attempt > 0))
            try:
                data = read()
                if expect is not None and size(data) != expect:
                    raise EOFError(f"short read: {size(data)} of {expect} bytes")
                self._count(bytes=size(data))
                return data
            except _PERMANENT:
                self._count(failed=1)
                raise
            except Exception as e:  # noqa: BLE001 - 5xx, resets, timeouts: backends raise many types
                last = e
            if attempt + 1 < attempts:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(2 * delay, 2.0)
        self._count(failed=1)
        if not remote:
            raise last
        raise FetchError(f"{what}: failed {attempts} times, last {type(last).__name__}: {last}") from last

    def submit(self, url: str, ranges: list[tuple[int, int]]) -> Future:
        """Start reading ``ranges`` of ``url`` concurrently; the future gives ``{range: bytes}``."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.inflight, thread_name_prefix="rhovid-fetch")
        parts = {r: self._pool.submit(self.get, url, *r) for r in ranges}
        out: Future = Future()
        left = [len(parts)]
        lock = threading.Lock()

        def done(_f) -> None:
            with lock:
                left[0] -= 1
                if left[0]:
                    return
            errors = [f.exception() for f in parts.values() if f.exception() is not None]
            if errors:
                out.set_exception(errors[0])
            else:
                out.set_result({r: f.result() for r, f in parts.items()})

        if not parts:
            out.set_result({})
        for f in parts.values():
            f.add_done_callback(done)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def prefetch(items: Iterable, start: Callable, depth: int) -> Iterator[tuple]:
    """``(item, future)`` for each item in order, with up to ``depth`` futures started ahead.

    ``start(item)`` begins the item's reads and returns a future (or raises: then the
    exception takes the future's place). Memory is bounded by ``depth`` items' bytes.
    """
    window: collections.deque = collections.deque()
    for item in items:
        try:
            fut = start(item)
        except Exception as e:  # noqa: BLE001 - reported with the item, never ends the stream
            fut = Future()
            fut.set_exception(e)
        window.append((item, fut))
        if len(window) > depth:
            yield window.popleft()
    while window:
        yield window.popleft()
