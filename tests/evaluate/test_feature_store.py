"""Feature store: write -> read round trip, reuse, block-wise resume after a crash."""

from __future__ import annotations

import numpy as np
import pytest

from rhovid.evaluate.feature_store import is_complete, list_features, read_features, write_features

ATTRS = {"run": "runs/byol", "step": 200, "views": "2x3", "config": {"frames": 4, "stride": 4, "crop": 64}}


class Encoder:
    """Deterministic 'features' per row, counting the rows it was asked for."""

    def __init__(self, table: np.ndarray, fail_at: int | None = None):
        self.table, self.fail_at, self.rows = table, fail_at, 0

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        if self.fail_at is not None and lo >= self.fail_at:
            raise RuntimeError("killed")
        self.rows += hi - lo
        return self.table[lo:hi]


def _data(n=10, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), [f"vid_{i:03d}" for i in range(n)], rng.integers(0, 3, n)


def test_round_trip_and_reuse(tmp_path):
    table, keys, labels = _data()
    enc = Encoder(table)
    st = write_features(tmp_path, "byol", "train", keys, labels, 6, enc, ATTRS, block=4)
    assert (st.computed_rows, st.reused_rows, enc.rows) == (10, 0, 10)
    f = read_features(tmp_path, "byol", "train")
    np.testing.assert_array_equal(f.features, table)
    np.testing.assert_array_equal(f.labels, labels)
    assert f.keys == keys and f.features.dtype == np.float32
    assert f.attrs["step"] == 200 and f.attrs["views"] == "2x3" and f.attrs["config"]["crop"] == 64
    assert f.attrs["complete"] is True and f.attrs["num_rows"] == 10
    # second extraction: nothing is computed
    enc2 = Encoder(table)
    st2 = write_features(tmp_path, "byol", "train", keys, labels, 6, enc2, ATTRS, block=4)
    assert (st2.computed_rows, st2.reused_rows, enc2.rows, st2.recreated) == (0, 10, 0, False)
    assert [(e["name"], e["split"]) for e in list_features(tmp_path)] == [("byol", "train")]


def test_resume_after_crash_computes_only_missing_blocks(tmp_path):
    table, keys, labels = _data(n=11)
    with pytest.raises(RuntimeError):
        write_features(tmp_path, "r", "test", keys, labels, 6, Encoder(table, fail_at=8), ATTRS, block=4)
    assert not is_complete(tmp_path, "r", "test")
    with pytest.raises(ValueError, match="partial"):
        read_features(tmp_path, "r", "test")
    enc = Encoder(table)
    st = write_features(tmp_path, "r", "test", keys, labels, 6, enc, ATTRS, block=4)
    assert enc.rows == 3 and st.computed_rows == 3 and st.reused_rows == 8  # only block [8, 11)
    np.testing.assert_array_equal(read_features(tmp_path, "r", "test").features, table)


def test_changed_checkpoint_or_videos_recompute(tmp_path):
    table, keys, labels = _data()
    write_features(tmp_path, "byol", "train", keys, labels, 6, Encoder(table), ATTRS, block=4)
    enc = Encoder(table * 2)
    st = write_features(tmp_path, "byol", "train", keys, labels, 6, enc, {**ATTRS, "step": 300}, block=4)
    assert st.recreated and enc.rows == 10
    f = read_features(tmp_path, "byol", "train")
    assert f.attrs["step"] == 300
    np.testing.assert_array_equal(f.features, table * 2)
    enc = Encoder(table[:9])
    st = write_features(tmp_path, "byol", "train", keys[:9], labels[:9], 6, enc, {**ATTRS, "step": 300}, block=4)
    assert st.recreated and enc.rows == 9 and len(read_features(tmp_path, "byol", "train").keys) == 9


def test_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="features.zarr"):
        read_features(tmp_path, "byol", "train")
    table, keys, labels = _data()
    write_features(tmp_path, "byol", "train", keys, labels, 6, Encoder(table), ATTRS)
    with pytest.raises(KeyError, match="byol/train"):
        read_features(tmp_path, "moco", "train")
    with pytest.raises(ValueError, match="shape"):
        write_features(tmp_path, "bad", "train", keys, labels, 5, Encoder(table), ATTRS)
    with pytest.raises(ValueError, match="without '/'"):
        write_features(tmp_path, "a/b", "train", keys, labels, 6, Encoder(table), ATTRS)


def test_damaged_chunk_names_the_group_to_delete(tmp_path):
    table, keys, labels = _data()
    write_features(tmp_path, "byol", "train", keys, labels, 6, Encoder(table), ATTRS, block=4)
    chunk = sorted((tmp_path / "features.zarr" / "byol" / "train" / "features").rglob("c/*/*"))[0]
    chunk.write_bytes(chunk.read_bytes()[:7])
    with pytest.raises(ValueError, match=r"features 'byol/train' in .* are damaged .*delete .*byol/train and rerun"):
        read_features(tmp_path, "byol", "train")
