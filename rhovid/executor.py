"""Run independent tasks on a local process pool or a Dask cluster, with a progress bar.

DESIGN.md decision 6: ingest and box computation use the same executor. ``workers=0`` runs
inline (debugging, deterministic tests); ``workers>=1`` uses a spawn-context process pool
(fork is unsafe once torch/threads are loaded) whose workers die with this process
(``rhovid.lifetime``: a SIGKILLed run leaves no worker behind); ``scheduler="tcp://host:port"``
submits the same tasks to a running Dask distributed scheduler.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from rhovid.lifetime import die_with_parent


@dataclass(frozen=True)
class TaskResult:
    """One finished task: its input, and either its value or the exception it raised."""

    task: Any
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def map_unordered(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    *,
    workers: int = 0,
    scheduler: str | None = None,
    desc: str = "tasks",
    unit: str = "task",
    nbytes: Callable[[Any], float] | None = None,
    progress: bool = True,
    max_in_flight: int | None = None,
) -> Iterator[TaskResult]:
    """Apply ``fn`` to every task, yielding ``TaskResult`` in completion order.

    Args:
        fn: a picklable module-level function of one argument.
        tasks: the inputs.
        workers: 0 = inline in this process; N >= 1 = local process pool of N.
        scheduler: address of a Dask distributed scheduler; overrides ``workers``.
        desc, unit: progress-bar labels.
        nbytes: maps a successful result to a byte count, shown as MB/s.
        progress: show the progress bar (tqdm; ETA and rate are tqdm's).
        max_in_flight: bound on submitted-but-unfinished tasks (default 2 x workers), so
            a huge task list does not hold every result in memory at once.

    Task exceptions never stop the map: they come back as ``TaskResult.error``.
    """
    tasks = list(tasks)
    bar = tqdm(total=len(tasks), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    stats = _Throughput(bar, nbytes)
    try:
        if scheduler:
            source = _run_dask(fn, tasks, scheduler)
        elif workers <= 0:
            source = _run_inline(fn, tasks)
        else:
            source = _run_pool(fn, tasks, workers, max_in_flight or 2 * workers)
        for result in source:
            stats.update(result)
            yield result
    finally:
        bar.close()


class _Throughput:
    def __init__(self, bar, nbytes):
        self.bar, self.nbytes = bar, nbytes
        self.t0 = time.perf_counter()
        self.bytes = 0.0
        self.failed = 0

    def update(self, result: TaskResult) -> None:
        if result.ok and self.nbytes is not None:
            self.bytes += float(self.nbytes(result.value) or 0)
        self.failed += not result.ok
        dt = max(time.perf_counter() - self.t0, 1e-9)
        post = {}
        if self.nbytes is not None:
            post["MB/s"] = f"{self.bytes / 1e6 / dt:.1f}"
        if self.failed:
            post["failed"] = self.failed
        if post:
            self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)


def _call(fn, task) -> TaskResult:
    try:
        return TaskResult(task, fn(task))
    except Exception as e:  # noqa: BLE001 - reported to the caller, never swallowed
        return TaskResult(task, error=e)


def _run_inline(fn, tasks):
    for t in tasks:
        yield _call(fn, t)


def _run_pool(fn, tasks, workers: int, max_in_flight: int):
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent) as pool:
        pending: dict[Future, Any] = {}
        it = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < max_in_flight:
                try:
                    t = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(_call, fn, t)] = t
            if not pending:
                break
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                try:
                    yield fut.result()
                except Exception as e:  # worker died (e.g. OOM-killed): report, go on
                    yield TaskResult(task, error=e)


def _run_dask(fn, tasks, scheduler: str):
    from distributed import Client, as_completed

    try:
        client = Client(scheduler)
    except OSError as e:  # distributed raises OSError("Timed out trying to connect ...")
        raise ConnectionError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from e
    with client:
        futures = [client.submit(_call, fn, t, pure=False) for t in tasks]
        index = {f.key: t for f, t in zip(futures, tasks)}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as e:
                yield TaskResult(index[fut.key], error=e)
