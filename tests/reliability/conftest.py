"""Fixtures of the reliability suite: real shards, real runs, real processes (train / eval / checkpoint side)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def epoch_data(tmp_path_factory):
    """DATA of 6 short labelled videos (2 classes x 3, 1.5 s at 15 fps, 64x48) in 3 shards.

    Small enough that a run of a few epochs takes seconds: batch 2 with one worker is 3 batches
    per epoch, so a 9-step run crosses two epoch boundaries.
    """
    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("epoch-data")
    synthesize(root / "src", SynthConfig(classes=2, per_class=3, seconds=1.5, width=64, height=48, fps=15, seed=0))
    rep = ingest([str(root / "src")], root / "data",
                 IngestConfig(short_side=48, gop=8, fps=15, shard_count=2, workers=0, progress=False, min_frames=8))
    assert rep.ingested == 6 and rep.failed == 0
    return root / "data"


# ---------------------------------------------------------------- hostile shards (real tar files)

def _samples(shard):
    """(key, json bytes, mp4 bytes) of every sample of a finished shard."""
    import tarfile

    out = []
    with tarfile.open(shard) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for j, m in zip(members[::2], members[1::2]):
            out.append((j.name.partition(".")[0], tar.extractfile(j).read(), tar.extractfile(m).read()))
    return out


def _member(tar, name: str, payload: bytes, claimed: int | None = None) -> None:
    """Append a member; ``claimed`` writes a header that claims that many bytes (GNU base-256 size)."""
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o644, 0
    if claimed is None:
        tar.addfile(info, io.BytesIO(payload))
        return
    info.size = claimed
    tar.fileobj.write(info.tobuf(tarfile.GNU_FORMAT))
    tar.fileobj.write(payload)
    tar.offset += len(info.tobuf(tarfile.GNU_FORMAT)) + len(payload)


@pytest.fixture(scope="session")
def make_hostile_data():
    """``make(good_data, out, kinds, split="train")``: copy ``good_data`` to ``out`` (unless it exists) and
    add one hostile shard of ``split`` per kind
    (issue 13 item 9), each a real tar of one good sample then one bad one, with index rows as ingest
    writes them; returns ``{kind: (good key, bad key)}`` (keys ``<split>_<kind>_good`` / ``_bad``). Kinds: fps0, fps_inf, label_2e70,
    nested_json (100,000 deep), cut_in_json (tar cut inside the bad json member), empty_tar (0 bytes:
    both samples lost), claims_1e12 (the bad json member's header claims 10^12 bytes)."""
    return _make_hostile_data


def _make_hostile_data(good_data, out, kinds, split="train"):
    import json
    import shutil
    import tarfile

    from rhovid.ingest.reader import list_shards, read_index_file
    from rhovid.ingest.shards import index_entry, write_index

    if not out.exists():
        shutil.copytree(good_data, out)
    doc = read_index_file(out)
    rows = list(doc["samples"])
    (key0, js0, mp40), (key1, js1, mp41) = _samples(list_shards(good_data, "train")[0])[:2]
    made = {}
    for n, kind in enumerate(kinds):
        path = out / "shards" / f"{split}-{100 + n:06d}.tar"
        good, bad = f"{split}_{kind}_good", f"{split}_{kind}_bad"
        good_meta = {**json.loads(js0), "key": good, "split": split}
        bad_meta = {**json.loads(js1), "key": bad, "split": split}
        bad_json = None
        if kind == "fps0":
            bad_meta["fps"] = 0
        elif kind == "fps_inf":
            bad_meta["fps"] = float("inf")  # json.dumps writes Infinity, which json.loads reads back
        elif kind == "label_2e70":
            bad_meta["label"] = 2**70
        elif kind == "nested_json":
            bad_json = b"[" * 100_000 + b"]" * 100_000
        with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w:", format=tarfile.USTAR_FORMAT) as tar:
            _member(tar, f"{good}.json", json.dumps(good_meta).encode())
            _member(tar, f"{good}.mp4", mp40)
            payload = bad_json if bad_json is not None else json.dumps(bad_meta).encode()
            _member(tar, f"{bad}.json", payload, claimed=10**12 if kind == "claims_1e12" else None)
            if kind != "claims_1e12":
                _member(tar, f"{bad}.mp4", mp41)
        if kind == "cut_in_json":  # cut inside the bad sample's json payload
            with tarfile.open(path) as tar:
                m = tar.getmember(f"{bad}.json")
            with open(path, "r+b") as f:
                f.truncate(m.offset_data + m.size // 2)
        elif kind == "empty_tar":
            path.write_bytes(b"")
        rows += [index_entry(good_meta, path.name), index_entry({**json.loads(js1), **bad_meta, "key": bad}, path.name)]
        made[kind] = (good, bad)
    write_index(out, rows, doc["labels"])
    return made


@pytest.fixture(scope="session")
def eval_data(epoch_data, tmp_path_factory):
    """``epoch_data`` plus a test split (2 classes x 2 videos, other seed): a DATA ``rhovid eval`` scores."""
    import shutil

    from rhovid.ingest.pipeline import IngestConfig, ingest
    from rhovid.ingest.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("eval-data")
    shutil.copytree(epoch_data, root / "data")
    synthesize(root / "src", SynthConfig(classes=2, per_class=2, seconds=1.5, width=64, height=48, fps=15, seed=1))
    rep = ingest([str(root / "src")], root / "data", IngestConfig(short_side=48, gop=8, fps=15, shard_count=2,
                                                                   workers=0, progress=False, min_frames=8, split="test"))
    assert rep.ingested == 4 and rep.failed == 0
    return root / "data"


@pytest.fixture(scope="session")
def tiny_train_config():
    """``config(data, steps=9, workers=0)``: the tiny SimCLR config of these tests (batch 2, 4x32² clips,
    a checkpoint after every step, no progress bar)."""
    import dataclasses

    from rhovid.train.config import get_preset, replace_data

    def config(data, steps=9, workers=0):
        cfg = get_preset("tiny-simclr")
        cfg = dataclasses.replace(cfg, batch_size=2, steps=steps, checkpoint_every=1, log_every=1, progress=False,
                                  optim=dataclasses.replace(cfg.optim, lr_batch=2, warmup_steps=2))
        return replace_data(cfg, data=str(data), crop=32, frames=4, stride=2, timespan_s=1.0, workers=workers)

    return config


@pytest.fixture(scope="session")
def trained_run(epoch_data, tiny_train_config, tmp_path_factory):
    """A finished 3-step run (checkpoints 1, 2, 3) of the tiny config; copy it before changing it."""
    from rhovid.train.loop import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_train_config(epoch_data, steps=3), run)
    return run


@pytest.fixture(scope="session")
def other_run(epoch_data, tiny_train_config, tmp_path_factory):
    """A finished 2-step run of the tiny config with another seed: "another run" for ``trained_run``."""
    import dataclasses

    from rhovid.train.loop import train

    run = tmp_path_factory.mktemp("other") / "other"
    train(dataclasses.replace(tiny_train_config(epoch_data, steps=2), seed=7), run)
    return run


@pytest.fixture(scope="session")
def rhovid_cmd():
    """``rhovid(*args, **run_kwargs)``: run the real console entry point in a fresh process."""
    import subprocess
    import sys

    def rhovid(*args, timeout=600, **kw):
        return subprocess.run([sys.executable, "-m", "rhovid.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=timeout, **kw)

    return rhovid
