import os

import pytest

from rhovid.executor import map_unordered


def square_or_fail(x):
    if x == 3:
        raise ValueError(f"bad task {x}")
    return x * x, os.getpid()


@pytest.mark.parametrize("workers", [0, 2])
def test_local_executor_returns_every_result_and_error(workers):
    results = list(map_unordered(square_or_fail, range(6), workers=workers, progress=False))
    assert sorted(r.task for r in results) == list(range(6))
    ok = {r.task: r.value[0] for r in results if r.ok}
    assert ok == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    (failed,) = [r for r in results if not r.ok]
    assert failed.task == 3 and "bad task 3" in str(failed.error)
    pids = {r.value[1] for r in results if r.ok}
    assert (pids == {os.getpid()}) == (workers == 0)


def test_dask_executor_on_local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        results = list(map_unordered(square_or_fail, range(6), scheduler=cluster.scheduler_address,
                                     progress=False))
    assert {r.task: r.value[0] for r in results if r.ok} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert [r.task for r in results if not r.ok] == [3]
    assert os.getpid() not in {r.value[1] for r in results if r.ok}
