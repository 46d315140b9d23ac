"""The CPU loader end to end on real shards of frame-counter videos (real ffmpeg, real tars)."""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rhovid.benchmarks.counter_video import read_counter, write_counter_video
from rhovid.ingest.fragments import fragment_range, slice_clips
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import ShardReader, iter_shard, list_shards, read_index
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, AugmentConfig, ClipAug
from rhovid.train.data import ClipLoader, LoaderConfig, plans_and_slices
from rhovid.train.decode_pyav import decoded_frames, execute_plan
from rhovid.train.sampler import ClipPlan, SamplePlan

FPS, GOP, SIDE = 15, 16, 48
# Identity augmentation: whole (square) frame, no flip/colour/blur, so the counter stays readable.
PLAIN = AugmentConfig(area=(1.0, 1.0), aspect=(1.0, 1.0), flip_p=0, colour_p=0, grayscale_p=0, blur_p=0)


@pytest.fixture(scope="module")
def counter_data(tmp_path_factory):
    """DATA with 8 square counter videos in 3 shards: one of 70 s, six of 6 s, one of 10 frames."""
    root = tmp_path_factory.mktemp("counter")
    lengths = {"long": 70 * FPS, **{f"mid{i}": 6 * FPS for i in range(6)}, "short": 10}
    for i, (name, n) in enumerate(lengths.items()):
        write_counter_video(root / "src" / f"c{i % 2}" / f"{name}.mp4", n, FPS, SIDE, SIDE)
    rep = ingest([str(root / "src")], root / "data",
                 IngestConfig(fps=FPS, short_side=SIDE, gop=GOP, shard_count=3, workers=0, progress=False,
                              min_frames=8))
    assert rep.failed == 0 and rep.ingested == 8
    return root / "data"


def denorm_counter(video: torch.Tensor) -> np.ndarray:
    """(..., 3, T, S, S) normalised -> counter values (..., T)."""
    mean = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    lead = video.shape[:-4]
    v = (video.reshape(-1, *video.shape[-4:]) * std + mean).clamp(0, 1) * 255
    frames = v.permute(0, 2, 3, 4, 1).round().to(torch.uint8).numpy()  # (N, T, S, S, 3)
    return np.stack([read_counter(f) for f in frames]).reshape(*lead, -1)


def long_sample(data):
    entry = next(e for e in read_index(data) if e["num_frames"] == 70 * FPS)
    path = Path(data) / "shards" / entry["shard"]
    return next(s for s in iter_shard(path) if s["__key__"] == entry["key"])


def test_planned_frames_are_decoded_start_end_60s(counter_data):
    sample = long_sample(counter_data)
    n = sample["json"]["num_frames"]
    aug = ClipAug(crop=(0, 0, SIDE, SIDE), size=SIDE)
    starts = [0, 5, n - 57, 50, 50 + 60 * FPS]  # start, near start, end, two clips 60 s apart
    clips = tuple(ClipPlan(frames=tuple(s + 8 * i for i in range(8)), start_s=s / FPS, aug=aug) for s in starts)
    plan = SamplePlan(key=sample["__key__"], label=0, clips=clips)
    slices = slice_clips(sample["mp4"], sample["json"], [c.frames for c in clips])
    video = torch.from_numpy(execute_plan(plan, slices))
    assert denorm_counter(video).tolist() == [list(c.frames) for c in clips]
    # overlapping clips share one slice (decoded once); distant ones do not
    assert slices[0].data is slices[1].data and slices[3].data is not slices[4].data
    # only the clip's fragments are decoded: at most its span plus one GOP per clip
    assert decoded_frames(slices) <= sum(57 + GOP for _ in clips) - 57
    assert all(len(s.data) < len(sample["mp4"]) / 4 for s in slices)


def test_shard_reader_matches_full_reader(counter_data):
    """The manifest reader lists what the tar holds, and reads each video back whole, byte for byte."""
    reader = ShardReader()
    for path in list_shards(counter_data):
        full = list(iter_shard(path))
        read = list(reader.iter_samples(str(path)))
        assert [(s["__key__"], s["json"], s["mp4"]) for s in read] == [(s["__key__"], s["json"], s["mp4"]) for s in full]
    reader.close()


def test_slicing_a_long_video_reads_only_the_clip_fragments(counter_data):
    """A clip of the 70 s video reads its covering fragments, nothing else (the init segment comes
    with the shard's manifest, read once)."""
    entry = next(e for e in read_index(counter_data) if e["num_frames"] == 70 * FPS)
    path = str(Path(counter_data) / "shards" / entry["shard"])
    frames = [tuple(600 + 8 * i for i in range(8))]
    reader = ShardReader()
    sample = reader.manifest(path).by_key[entry["key"]]
    listed = reader.fetcher.stats.bytes  # the manifest: no video bytes yet
    (sl,) = reader.read_clips(path, sample, frames)
    meta, size = sample.meta, sample.members["mp4"][1]
    i, j = fragment_range(meta, frames[0][0], frames[0][-1])
    frags = meta["fragments"]
    covering = (frags[j][0] if j < len(frags) else size) - frags[i][0]
    assert reader.fetcher.stats.bytes - listed == covering and reader.fetcher.stats.requests == 2
    assert len(sl.data) == meta["init_size"] + covering
    assert j - i <= -(-57 // GOP) + 1 and covering < size / 8  # 5 of 66 fragments
    full = next(s for s in iter_shard(path) if s["__key__"] == entry["key"])
    assert sl == slice_clips(full["mp4"], meta, frames)[0]
    reader.close()


def test_truncated_shard_member_is_skipped_not_fatal(counter_data, tmp_path):
    """A shard cut short inside its last video: that sample is skipped with a count, the epoch goes on."""
    data = tmp_path / "data"
    shutil.copytree(counter_data, data)
    shard = list_shards(data)[0]
    with tarfile.open(shard) as tar:
        last = [m for m in tar.getmembers() if m.isfile()][-1]
    victim = last.name.partition(".")[0]
    with open(shard, "r+b") as f:
        f.truncate(last.offset_data + last.size // 2)
    cfg = LoaderConfig(data=str(data), rho=2, frames=4, stride=4, timespan_s=60, crop=SIDE, batch_size=1,
                       workers=0, augment=(PLAIN,), seed=0, drop_last=False)
    loader = ClipLoader(cfg)
    keys = [k for b in loader for k in b["key"]]
    assert victim not in keys and loader.skipped == 1
    assert sorted(keys) == sorted(e["key"] for e in read_index(data) if e["key"] != victim)


def test_batches_follow_the_contract(counter_data):
    cfg = LoaderConfig(data=str(counter_data), rho=3, frames=4, stride=5, timespan_s=60, crop=SIDE,
                       boxes="random", max_boxes=5, batch_size=2, workers=0, augment=(PLAIN,), seed=3)
    loader = ClipLoader(cfg)
    batches = list(loader)
    assert len(batches) == len(loader) == 4  # 8 samples, one worker, drop_last
    for b in batches:
        assert set(b) == {"video", "boxes", "box_mask", "box_frame", "label", "key", "clip_start_s"}
        assert b["video"].shape == (2, 3, 3, 4, SIDE, SIDE) and b["video"].dtype == torch.float32
        assert b["boxes"].shape == (2, 3, 5, 4) and b["box_mask"].dtype == torch.bool
        assert b["box_frame"].shape == (2, 3) and b["box_frame"].dtype == torch.long
        assert b["label"].dtype == torch.long and b["clip_start_s"].shape == (2, 3)
        assert len(b["key"]) == 2 and b["box_mask"].all()
        assert (b["boxes"] >= 0).all() and (b["boxes"] <= SIDE).all()
        # the frames returned are the planned ones: start * fps + stride * t (clamped at the end)
        nums = {e["key"]: e["num_frames"] for e in read_index(counter_data)}
        got = denorm_counter(b["video"])
        for i, key in enumerate(b["key"]):
            for r in range(3):
                s = round(float(b["clip_start_s"][i, r]) * FPS)
                want = [min(s + 5 * t, nums[key] - 1) for t in range(4)]
                assert got[i, r].tolist() == want
            assert np.ptp(b["clip_start_s"][i].numpy()) <= 60 + 1e-6


def _run(cfg, epochs=1):
    loader = ClipLoader(cfg)
    out = []
    for _ in range(epochs):
        out.append([(tuple(b["key"]), b["video"].clone()) for b in loader])
    return loader, out


def test_epoch_coverage_new_order_and_resume(counter_data):
    cfg = LoaderConfig(data=str(counter_data), rho=2, frames=2, stride=4, crop=16, batch_size=3, workers=0,
                       drop_last=False, seed=1)
    loader, (e0, e1) = _run(cfg, epochs=2)
    keys0 = [k for ks, _ in e0 for k in ks]
    keys1 = [k for ks, _ in e1 for k in ks]
    all_keys = {e["key"] for e in read_index(counter_data)}
    assert Counter(keys0) == Counter(all_keys) == Counter(keys1)  # every sample once per epoch
    assert keys0 != keys1  # reshuffled
    assert len(e0) == len(loader) == 3
    # resume after 2 batches of epoch 1: the rest is identical to the uninterrupted run
    part = ClipLoader(cfg)
    part.set_epoch(1)
    it = iter(part)
    next(it), next(it)
    state = part.state_dict()
    assert state == {"epoch": 1, "batches": 2, "seed": 1}
    resumed = ClipLoader(cfg)
    resumed.load_state_dict(state)
    rest = [(tuple(b["key"]), b["video"]) for b in resumed]
    assert [k for k, _ in rest] == [k for k, _ in e1[2:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, e1[2:]))
    assert resumed.state_dict()["epoch"] == 2


def test_ranks_are_disjoint_and_equal(counter_data):
    keys = []
    for rank in range(3):
        cfg = LoaderConfig(data=str(counter_data), rho=2, frames=2, stride=4, crop=16, batch_size=1, workers=0,
                           rank=rank, world_size=3, seed=5)
        loader = ClipLoader(cfg)
        ks = [k for b in loader for k in b["key"]]
        assert len(ks) == len(loader) == 8 // 3
        keys += ks
    assert len(keys) == len(set(keys)) == 6


def test_multiworker_deterministic(counter_data):
    # fork keeps this test fast; test_multiworker_resume_mid_epoch runs the default (spawn)
    cfg = LoaderConfig(data=str(counter_data), rho=2, frames=2, stride=4, crop=16, batch_size=2, workers=2,
                       drop_last=False, seed=7, start_method="fork")
    la, (a,) = _run(cfg)
    lb, (b,) = _run(cfg)
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert sorted(k for ks, _ in a for k in ks) == sorted(e["key"] for e in read_index(counter_data))
    # the same plans as in-process decoding (plans depend on seed, epoch and key only)
    single = {k: v for ks, vs in _run(LoaderConfig(**{**cfg.__dict__, "workers": 0}))[1][0] for k, v in zip(ks, vs)}
    assert all(torch.equal(single[k], v) for ks, vs in a for k, v in zip(ks, vs))


def test_multiworker_resume_mid_epoch(counter_data):
    cfg = LoaderConfig(data=str(counter_data), rho=2, frames=2, stride=4, crop=16, batch_size=1, workers=2, seed=2)
    full = ClipLoader(cfg)
    keys = [b["key"][0] for b in full]
    second = [b["key"][0] for b in full]  # persistent workers serve the next epoch
    assert sorted(second) == sorted(keys) and second != keys
    assert sorted(keys) == sorted(e["key"] for e in read_index(counter_data))
    resumed = ClipLoader(replace(cfg, start_method="fork"))  # spawn is covered above; fork is faster
    resumed.load_state_dict({"epoch": 0, "batches": 3, "seed": 2})
    assert [b["key"][0] for b in resumed] == keys[3:]


def test_eval_mode_views_and_every_sample(counter_data):
    cfg = LoaderConfig(data=str(counter_data), frames=4, stride=2, crop=SIDE, batch_size=3, workers=0,
                       evaluation=True, clips_per_video=2)
    a = list(ClipLoader(cfg))
    b = list(ClipLoader(cfg))
    assert sum(len(x["key"]) for x in a) == 8 and a[-1]["video"].shape[0] == 2  # partial last batch kept
    assert a[0]["video"].shape[1] == 2
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    got = denorm_counter(a[0]["video"])  # centre crop = whole square frame: counter readable
    for i in range(3):
        for v in range(2):
            s = round(float(a[0]["clip_start_s"][i, v]) * FPS)
            assert got[i, v, 0] == s


def test_corrupt_sample_is_skipped_and_counted(counter_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(counter_data, data)
    shard = list_shards(data)[0]
    samples = list(iter_shard(shard))
    bad = samples[0]["__key__"]
    with tarfile.open(shard, "w") as tar:  # rewrite the shard with one sample's video bytes garbled
        for s in samples:
            for ext in ("json", "mp4"):
                import io
                import json

                payload = json.dumps(s["json"]).encode() if ext == "json" else s["mp4"]
                if ext == "mp4" and s["__key__"] == bad:
                    init = s["json"]["init_size"]
                    payload = payload[:init] + bytes(len(payload) - init)
                info = tarfile.TarInfo(f"{s['__key__']}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    cfg = LoaderConfig(data=str(data), rho=2, frames=2, stride=4, crop=16, batch_size=2, workers=0, seed=0)
    loader = ClipLoader(cfg)
    batches = list(loader)
    assert loader.skipped == 1
    assert len(batches) == len(loader)  # the epoch still yields every batch
    assert bad not in {k for b in batches for k in b["key"]}


def test_bad_inputs_name_the_problem(counter_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no shards of split 'val'"):
        ClipLoader(LoaderConfig(data=str(counter_data), split="val", workers=0))
    with pytest.raises(ValueError, match="device"):
        ClipLoader(LoaderConfig(data=str(counter_data), device="tpu", workers=0))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' .* torch sees no CUDA device"):
            ClipLoader(LoaderConfig(data=str(counter_data), device="cuda", workers=0))
    with pytest.raises(ValueError, match="LoaderConfig.stride must be >= 1, got 0"):
        ClipLoader(LoaderConfig(data=str(counter_data), stride=0, workers=0))
    with pytest.raises(KeyError):
        ClipLoader(LoaderConfig(data=str(counter_data), boxes="no-such-set", workers=0))
    plan, slices, meta = plans_and_slices(counter_data, read_index(counter_data)[0]["key"],
                                          lambda m: SamplePlan(m["key"], -1, ()))
    assert slices == [] and meta["fps"] == FPS


def test_store_boxes_are_looked_up_and_mapped(counter_data, tmp_path):
    from rhovid.store.compute import compute_box_set
    from rhovid.store.zarr_store import BoxStore

    data = tmp_path / "data"
    shutil.copytree(counter_data, data)
    compute_box_set(data, "fh", box_fps=1.0, max_boxes=6, name="blocks", workers=0, progress=False)
    cfg = LoaderConfig(data=str(data), rho=2, frames=4, stride=4, crop=SIDE, boxes="blocks", max_boxes=4,
                       batch_size=2, workers=0, augment=(PLAIN,), seed=0)
    store = BoxStore(data)
    shard_of = {e["key"]: e["shard"][:-4] for e in read_index(data)}
    n_boxes = 0
    for b in ClipLoader(cfg):
        for i, key in enumerate(b["key"]):
            sb = store.load(shard_of[key], "blocks")
            for r in range(2):
                t = int(b["box_frame"][i, r])
                assert t == 2  # centre frame of T = 4
                frame = round(float(b["clip_start_s"][i, r]) * FPS) + 4 * t
                boxes, count, _ = sb.lookup(key, [frame])
                want = [bx for bx in boxes[0][: count[0]] if bx[2] - bx[0] >= 2 and bx[3] - bx[1] >= 2][:4]
                m = b["box_mask"][i, r]
                assert int(m.sum()) == len(want)  # identity crop: the stored boxes, clipped and padded
                assert torch.allclose(b["boxes"][i, r][m], torch.tensor(np.array(want, np.float32)).reshape(-1, 4))
                assert (b["boxes"][i, r][~m] == 0).all()
                n_boxes += len(want)
    assert n_boxes > 0
