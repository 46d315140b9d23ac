"""Two ``rhovid boxes`` runs of one box set at once, and a SIGKILL among them (issue 13, item 3):
both succeed and the store equals a run made alone. Before, the run that finished a shard second
stopped with a spurious FileExistsError (exit 1), or deleted the other's group while it was
being written. Now each worker holds the group's flock while it computes and writes it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time

import numpy as np
import pytest
from process_tree import finish, rhovid

from rhovid.ingest.reader import list_shards, shard_name
from rhovid.store.compute import compute_box_set
from rhovid.store.zarr_store import BoxStore, group_status, store_root

ARGS = ["--method", "fh", "--box-fps", "10", "--workers", "1", "--no-progress"]
TRIALS = [0, *(pytest.param(t, marks=pytest.mark.slow) for t in range(1, 6))]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """The box set computed by one run alone: {shard: (keys, boxes, count, frame)}."""
    data = tmp_path_factory.mktemp("boxes-alone") / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    report = compute_box_set(data, "fh", box_fps=10.0, progress=False)
    return _contents(data, report.set_name)


def _contents(data, name):
    store = BoxStore(data)
    out = {}
    for path in list_shards(data):
        assert group_status(store_root(data), shard_name(path), name) == "complete"
        sb = store.load(shard_name(path), name)
        out[shard_name(path)] = (sb.keys, sb.rows.boxes, sb.rows.count, sb.rows.frame)
    return out


def _assert_same(data, reference):
    name = BoxStore(data).list_sets()[0]["name"]
    got = _contents(data, name)
    assert got.keys() == reference.keys()
    for shard, (keys, *arrays) in reference.items():
        assert got[shard][0] == keys
        for a, b in zip(got[shard][1:], arrays):
            np.testing.assert_array_equal(a, b)


def _copy(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    return data


@pytest.mark.parametrize("trial", TRIALS)
def test_two_boxes_runs_of_one_set_both_succeed(tiny_data, reference, tmp_path, trial):
    data = _copy(tiny_data, tmp_path)
    one = rhovid("boxes", str(data), *ARGS)
    time.sleep(random.Random(trial).uniform(0.0, 0.5))
    two = rhovid("boxes", str(data), *ARGS)
    results = [finish(one, 180), finish(two, 180)]
    assert [rc for rc, _, _ in results] == [0, 0], [err for _, _, err in results]
    _assert_same(data, reference)


@pytest.mark.slow  # held on main too; the lock's release at a holder's death is the ingest test's fast trial
@pytest.mark.parametrize("trial", range(6))
def test_sigkilled_boxes_run_leaves_its_groups_to_the_other(tiny_data, reference, tmp_path, trial):
    """One run is SIGKILLed at a random moment (whole command): the other, waiting on the
    killed run's group, takes it over at once and the store is the one a run alone makes."""
    data = _copy(tiny_data, tmp_path)
    one = rhovid("boxes", str(data), *ARGS)
    two = rhovid("boxes", str(data), *ARGS)
    time.sleep(random.Random(trial).uniform(1.0, 5.0))
    os.killpg(one.pid, signal.SIGKILL)
    one.communicate(timeout=30)
    rc, _, err = finish(two, 180)
    assert rc == 0, err
    _assert_same(data, reference)
