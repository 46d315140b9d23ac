"""Write -> read round trip of the shard format (ingest/FORMAT.md) on the shared ``tiny_data``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rhovid.ingest.decode import count_frames, decode_rgb
from rhovid.ingest.fmp4 import parse_fragments
from rhovid.ingest.fragments import clip_slice, fragment_range
from rhovid.ingest.reader import iter_shard, list_shards, read_index, shard_name

CONTRACT = {"key", "source", "split", "label", "label_name", "fps", "num_frames", "width", "height",
            "duration_s", "gop", "init_size", "fragments"}


@pytest.fixture(scope="module")
def samples(tiny_data):
    return [(p.name, s) for p in list_shards(tiny_data) for s in iter_shard(p)]


def test_shards_index_and_idx_agree(tiny_data, tiny_src, samples):
    shards = list_shards(tiny_data)
    # 6 videos, at most 3 samples per shard -> exactly two shards
    assert [p.name for p in shards] == ["train-000000.tar", "train-000001.tar"]
    assert shard_name(shards[1]) == "train-000001"
    assert all(p.with_suffix(".idx").exists() for p in shards)
    assert not list((tiny_data / "shards").glob(".tmp-*"))
    index = read_index(tiny_data)
    assert [(e["shard"], e["key"]) for e in index] == [(name, s["__key__"]) for name, s in samples]
    assert len(index) == len(list(tiny_src.rglob("*.mp4"))) == 6
    for entry, (_, s) in zip(index, samples):
        for field in ("split", "label", "label_name", "num_frames", "fps", "duration_s", "width", "height"):
            assert entry[field] == s["json"][field], field
    labels = json.loads((tiny_data / "index.json").read_text())["labels"]
    assert sorted(labels) == labels and len(labels) == 3
    assert {e["label_name"]: e["label"] for e in index} == {n: i for i, n in enumerate(labels)}
    assert not (tiny_data / "failed.jsonl").exists() or not (tiny_data / "failed.jsonl").read_text().strip()


def test_sample_json_has_the_contract_fields(samples):
    for _, s in samples:
        meta = s["json"]
        assert CONTRACT <= set(meta), CONTRACT - set(meta)
        assert meta["key"] == s["__key__"] and "." not in meta["key"]
        assert meta["gop"] == 16 and meta["fps"] == 30.0 and meta["split"] == "train"
        assert min(meta["width"], meta["height"]) == 112
        assert meta["width"] % 2 == 0 and meta["height"] % 2 == 0
        assert meta["duration_s"] == pytest.approx(meta["num_frames"] / meta["fps"])
        assert meta["bytes"] == len(s["mp4"]) and meta["codec"] == "h264"
        # fragment table: contiguous frames, one GOP each except the last, offsets increasing
        frags = meta["fragments"]
        assert frags[0][0] == meta["init_size"]
        for k, (off, first, n) in enumerate(frags):
            assert first == k * meta["gop"]
            assert n == meta["gop"] or k == len(frags) - 1
            assert s["mp4"][off + 4 : off + 8] == b"moof"
        assert sum(f[2] for f in frags) == meta["num_frames"]


def test_every_sample_decodes_with_exact_frame_count(samples):
    for _, s in samples:
        frames = decode_rgb(s["mp4"])
        meta = s["json"]
        assert frames.shape == (meta["num_frames"], meta["height"], meta["width"], 3)
        assert count_frames(s["mp4"]) == meta["num_frames"]
        assert parse_fragments(s["mp4"]).num_frames == meta["num_frames"]


def test_every_fragment_decodes_alone_pixel_identical(samples):
    for _, s in samples:
        meta, mp4 = s["json"], s["mp4"]
        full = decode_rgb(mp4)
        # 120 frames at GOP 16: the last fragment is partial (8 frames) and must be covered too
        assert meta["fragments"][-1][2] == meta["num_frames"] % meta["gop"] or meta["num_frames"] % meta["gop"] == 0
        for k, (_, first, n) in enumerate(meta["fragments"]):
            data, frame0 = clip_slice(mp4, meta, first, first + n - 1)
            assert frame0 == first
            part = decode_rgb(data)
            assert part.shape[0] == n, f"{s['__key__']} fragment {k}"
            np.testing.assert_array_equal(part, full[first : first + n], err_msg=f"fragment {k}")


def test_clip_slice_spanning_fragments(samples):
    _, s = samples[0]
    meta, mp4 = s["json"], s["mp4"]
    full = decode_rgb(mp4)
    first, last = 20, 57  # crosses fragments 1..3
    assert fragment_range(meta, first, last) == (1, 4)
    data, frame0 = clip_slice(mp4, meta, first, last)
    assert frame0 == 16
    idx = list(range(first - frame0, last - frame0 + 1, 3))
    np.testing.assert_array_equal(decode_rgb(data, idx), full[[frame0 + i for i in idx]])
    with pytest.raises(IndexError):
        fragment_range(meta, 0, meta["num_frames"])
    with pytest.raises(IndexError):
        decode_rgb(data, [10_000])


def test_idx_is_byte_for_byte_what_dali_wds2idx_writes(tiny_data, tmp_path):
    from wds2idx import IndexCreator

    for path in list_shards(tiny_data):
        theirs = tmp_path / f"{path.stem}.idx"
        with IndexCreator(str(path), str(theirs), verbose=False) as creator:
            creator.create_index()
        assert path.with_suffix(".idx").read_bytes() == theirs.read_bytes()


def test_dali_webdataset_reader_reads_shards_on_cpu(tiny_data, samples):
    from nvidia.dali import fn, pipeline_def

    paths = [str(p) for p in list_shards(tiny_data)]

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        mp4, meta = fn.readers.webdataset(
            paths=paths, index_paths=[p[: -len(".tar")] + ".idx" for p in paths], ext=["mp4", "json"],
            missing_component_behavior="error", random_shuffle=False, name="reader",
        )
        return mp4, meta

    p = pipe()
    p.build()
    assert p.epoch_size("reader") == len(samples)  # the .idx lists every sample
    for _, s in samples:
        mp4, meta = p.run()
        assert np.asarray(mp4.at(0)).tobytes() == s["mp4"]
        assert json.loads(np.asarray(meta.at(0)).tobytes()) == s["json"]
