"""Third-party decoders read the shards frame-exactly: frame i is presented at i / fps.

Real ingest of a frame-counter video (H.264 with B-frames, GOP 16), decoded by PyAV through its
demuxer and by seeking to i / fps (what torchcodec's approximate mode and decord do), by
torchcodec where it imports, and by DALI's GPU decoder where there is a GPU. DALI's CPU
decoder has no H.264 (VP8/VP9/MJPEG only), and VP9 has no B-frames, so its streams started at
0 already: its CPU frame-exactness is covered by tests/train/test_dali.py on a VP9 fixture.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest

from rhovid.benchmarks.counter_video import read_counter, write_counter_video
from rhovid.ingest.fragments import clip_slice
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import iter_shard, list_shards
from rhovid.ingest.timestamps import presentation_start, start_at_zero

FPS, GOP, SIDE, FRAMES = 30, 16, 64, 96


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    write_counter_video(root / "src" / "c" / "count.mp4", FRAMES, FPS, SIDE, SIDE)
    ingest([str(root / "src")], root / "data", IngestConfig(fps=FPS, short_side=SIDE, gop=GOP, workers=0, progress=False))
    (s,) = iter_shard(list_shards(root / "data")[0])
    return s["mp4"], s["json"]


def _decode(mp4: bytes):
    with av.open(io.BytesIO(mp4)) as c:
        s = c.streams.video[0]
        frames = [(f.pts * s.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        return s.start_time, frames


def test_frame_i_is_presented_at_i_over_fps(sample):
    mp4, meta = sample
    start, frames = _decode(mp4)
    assert start == 0
    assert [t for t, _ in frames] == [Fraction(i, FPS) for i in range(FRAMES)]
    assert read_counter(np.stack([f for _, f in frames])).tolist() == list(range(FRAMES))
    # the encoder really reorders frames (B-frames), which is what delayed the start before
    with av.open(io.BytesIO(mp4)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
    assert any(p.pts != p.dts for p in packets)


def test_seeking_to_i_over_fps_returns_frame_i(sample):
    """PyAV seek + decode to the first frame at or after t = i / fps: frame i for every i (every
    i = 15 mod 16 included, where torchcodec's approximate mode returned i + 1 before)."""
    mp4, _ = sample
    got = []
    with av.open(io.BytesIO(mp4)) as c:
        s = c.streams.video[0]
        for i in range(FRAMES):
            target = int(Fraction(i, FPS) / s.time_base)
            c.seek(target, stream=s, backward=True)
            frame = next(f for f in c.decode(s) if f.pts >= target)
            got.append(read_counter(frame.to_ndarray(format="rgb24")[None])[0])
    assert got == list(range(FRAMES))


def test_slices_keep_their_global_timestamps(sample):
    mp4, meta = sample
    for first in (0, GOP, 2 * GOP + 5):
        data, frame0 = clip_slice(mp4, meta, first, first + 8)
        _, frames = _decode(data)
        assert frames[0][0] == Fraction(frame0, FPS)
        assert read_counter(frames[0][1][None])[0] == frame0


def test_start_at_zero_changes_only_the_presentation_start(sample):
    """The edit list is the whole difference: without it (the bytes ffmpeg writes) the first frame
    is presented one frame late; the decoded frames are the same either way."""
    mp4, meta = sample
    init = mp4[: meta["init_size"]]
    # strip our edit list to get back ffmpeg's init segment
    plain = init.replace(init[init.index(b"edts") - 4 : init.index(b"edts") + 32], b"")
    plain = _fix_sizes(plain, -36) + mp4[meta["init_size"]:]
    start, frames = _decode(plain)
    assert start == 512 and frames[0][0] == Fraction(1, FPS)  # the bug: frame i at (i + 1) / fps
    assert presentation_start(plain) == 512
    fixed = start_at_zero(plain)
    assert fixed == mp4 and start_at_zero(fixed) == fixed  # idempotent
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(_decode(mp4)[1], frames))


def _fix_sizes(init: bytes, delta: int) -> bytes:
    """Shrink the moov and video trak box sizes by ``-delta`` after removing bytes from the trak."""
    import struct

    out = bytearray(init)
    for box in (b"moov", b"trak"):
        pos = out.index(box) - 4
        (size,) = struct.unpack_from(">I", out, pos)
        struct.pack_into(">I", out, pos, size + delta)
    return bytes(out)


def test_torchcodec_approximate_seek_is_frame_exact(sample):
    torchcodec = pytest.importorskip("torchcodec", reason="torchcodec does not import beside torch 2.13 (CPU) here")
    mp4, _ = sample
    approx = torchcodec.decoders.VideoDecoder(mp4, seek_mode="approximate")
    exact = torchcodec.decoders.VideoDecoder(mp4, seek_mode="exact")
    for i in range(FRAMES):
        a = approx[i].permute(1, 2, 0).numpy()
        assert read_counter(a[None])[0] == i
        assert np.array_equal(a, exact[i].permute(1, 2, 0).numpy())


@pytest.mark.gpu
def test_dali_gpu_decodes_shard_slices_frame_exactly(sample):
    import torch

    from rhovid.ingest.fragments import slice_clips
    from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD, ClipAug
    from rhovid.train.dali_pipeline import DaliClipExecutor
    from rhovid.train.sampler import ClipPlan, SamplePlan

    mp4, meta = sample
    aug = ClipAug(crop=(0, 0, SIDE, SIDE), size=SIDE)
    starts = [0, 15, 31, FRAMES - 8]
    clips = tuple(ClipPlan(frames=tuple(range(s, s + 8)), start_s=s / FPS, aug=aug) for s in starts)
    plan = SamplePlan("count", 0, clips)
    out = DaliClipExecutor(len(clips), 8, SIDE, device_id=0).run([plan], [slice_clips(mp4, meta, [c.frames for c in clips])])
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    rgb = ((out.cpu() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
    assert [read_counter(c).tolist() for c in rgb] == [list(c.frames) for c in clips]
