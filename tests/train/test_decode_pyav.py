"""The CPU decoder decodes only what the wanted frames need, and returns exactly what a full decode returns."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.fmp4 import video_samples
from rhovid.ingest.fragments import slice_clips
from rhovid.ingest.reader import iter_shard, list_shards
from rhovid.train.decode_pyav import _is_reference, decode_frames


def _index_sets(n: int, rng) -> list[list[int]]:
    """Strided clips near the start, the end and in between, single frames, repeats, any order."""
    out = [list(range(0, 57, 8)), list(range(n - 57, n, 8)), [n - 1], [0], [5, 5, 3], list(range(n))[::-1][:9]]
    for _ in range(12):
        stride = int(rng.integers(1, 9))
        a = int(rng.integers(0, n - 7 * stride))
        out.append(list(range(a, a + 8 * stride, stride)))
    return out


def _check_against_full_decode(data: bytes, rng) -> tuple[int, int]:
    n = len(video_samples(data).samples)
    direct, full = {}, {}
    for indices in _index_sets(n, rng):
        got = decode_frames(data, indices, stats=direct)
        # thread_type decodes every frame through the demuxer: the reference result
        assert np.array_equal(got, decode_frames(data, indices, thread_type="AUTO", stats=full)), indices
    return direct["decoded"], full["decoded"]


def test_shard_slices_decode_exactly_with_fewer_frames(tiny_data):
    rng = np.random.default_rng(0)
    sample = next(iter_shard(list_shards(tiny_data)[0]))
    n = sample["json"]["num_frames"]
    (whole,) = slice_clips(sample["mp4"], sample["json"], [range(n)])
    direct, full = _check_against_full_decode(whole.data, rng)
    assert direct < 0.8 * full  # unwanted B-frames, trailing references and unwanted GOPs not decoded
    with pytest.raises(IndexError, match="past the end"):
        decode_frames(whole.data, [n])


def test_b_frames_used_as_references_are_decoded(tmp_path):
    """Shards written with x264's default ``b-pyramid=normal`` have B-frames that others reference."""
    path = tmp_path / "pyramid.mp4"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "mandelbrot=size=96x64:rate=30",
                    "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "16", "-bf", "3",
                    "-x264-params", "keyint=16:min-keyint=16:scenecut=0:open-gop=0:b-pyramid=normal:b-adapt=0",
                    "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(path)], check=True)
    data = path.read_bytes()
    table = video_samples(data)
    refs = [_is_reference(data, s, 4) for s in table.samples]
    # a B-frame is shown before a frame decoded ahead of it
    b_frames = [any(e.cts > s.cts for e in table.samples[:k]) for k, s in enumerate(table.samples)]
    assert 0 < refs.count(False) < sum(b_frames)  # some B-frames are references (the pyramid's middle ones)
    assert not any(r is False and not b for r, b in zip(refs, b_frames))  # I/P frames are always references
    direct, full = _check_against_full_decode(data, np.random.default_rng(1))
    assert direct < full
