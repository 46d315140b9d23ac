"""The bad-input corpus: every file is either ingested correctly or in failed.jsonl with a clear reason."""

from __future__ import annotations

import io
import json
import random
import subprocess

import av
import numpy as np
import pytest

from rhovid.atomic import read_jsonl
from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.decode import decode_rgb
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.reader import iter_shard, list_shards, read_index

X264 = ["-c:v", "libx264", "-preset", "ultrafast"]

# file name -> expected failure (stage, words in the reason); files not listed must be ingested
EXPECTED_FAILURES = {
    "zero.mp4": ("probe", "empty file"),
    "notavideo.mp4": ("probe", "not a readable media file"),
    "truncated.mp4": ("probe", "not a readable media file"),
    "truncated_faststart.mp4": ("check", "truncated"),
    "audio_only.m4a": ("probe", "no video stream"),
    "garbage_payload.mp4": ("probe", "no decodable video frames"),
    "unknown_codec.avi": ("probe", "unsupported video codec"),
    "short.mp4": ("check", "too short"),
}
# file name -> output (width, height) at short side 112
EXPECTED_SIZES = {
    "good.mp4": (150, 112),
    "tenbit.mkv": (150, 112),
    "yuv422.mkv": (150, 112),
    "yuv444.mkv": (150, 112),
    "prores422_10bit.mov": (150, 112),
    "odd.mkv": (150, 112),  # 161x121 -> 149.02 -> even
    "huge.mp4": (150, 112),  # 4000x3000
    "vfr.mkv": (150, 112),
    "rotated.mp4": (112, 150),  # 90 degree display matrix applied
    "sar.mp4": (298, 112),  # 2:1 pixels -> 320x120 display
    "with audio.mp4": (150, 112),
    "vp9.webm": (150, 112),
    "mpeg4.avi": (150, 112),
    "mjpeg_fullrange.avi": (150, 112),  # yuvj420p (full range) -> limited-range yuv420p
    "ünïcödé 名前.mp4": (150, 112),
    "quote's \"double\".mp4": (150, 112),
    "-leading-dash.mp4": (150, 112),
    "colon:name.mp4": (150, 112),
}


def _make_corpus(src, tmp, encode):
    good = encode(src / "good.mp4")
    (src / "zero.mp4").write_bytes(b"")
    (src / "notavideo.mp4").write_text("hello, I am text\n" * 100)
    full = good.read_bytes()
    (src / "truncated.mp4").write_bytes(full[: len(full) // 2])  # moov is at the end: lost
    faststart = encode(tmp / "fs.mp4", seconds=3, codec=[*X264, "-movflags", "+faststart"])
    data = faststart.read_bytes()
    (src / "truncated_faststart.mp4").write_bytes(data[: len(data) // 3])  # index intact, 2/3 of frames gone
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=2",
                    "-c:a", "aac", "file:" + str(src / "audio_only.m4a")], check=True)
    garbage = bytearray(data)
    rnd = random.Random(0)
    for j in range(garbage.find(b"mdat") + 64, len(garbage)):
        garbage[j] = rnd.randrange(256)
    (src / "garbage_payload.mp4").write_bytes(bytes(garbage))
    mjpeg = encode(src / "mjpeg_fullrange.avi", codec=["-c:v", "mjpeg", "-q:v", "5"])
    (src / "unknown_codec.avi").write_bytes(mjpeg.read_bytes().replace(b"MJPG", b"QQQQ"))
    encode(src / "short.mp4", seconds=0.3)  # 9 frames < min_frames 16
    encode(src / "tenbit.mkv", codec=[*X264, "-pix_fmt", "yuv420p10le"])
    encode(src / "yuv422.mkv", codec=[*X264, "-pix_fmt", "yuv422p"])
    encode(src / "yuv444.mkv", codec=[*X264, "-pix_fmt", "yuv444p"])
    encode(src / "prores422_10bit.mov", seconds=1, codec=["-c:v", "prores_ks", "-profile:v", "2",
                                                          "-pix_fmt", "yuv422p10le"])
    encode(src / "odd.mkv", size="161x121", codec=["-c:v", "ffv1"])
    encode(src / "huge.mp4", size="4000x3000", seconds=0.6, codec=[*X264, "-pix_fmt", "yuv420p"])
    # 30 frames at 30 fps, then 10 fps; cut at 3 s: 50 frames of variable frame rate
    encode(src / "vfr.mkv", seconds=3, vf="setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'",
           codec=[*X264, "-pix_fmt", "yuv420p", "-fps_mode", "vfr"])
    encode(src / "rotated.mp4", extra_in=["-display_rotation:v:0", "90"])
    encode(src / "sar.mp4", vf="setsar=2")
    encode(src / "with audio.mp4", audio=True)
    encode(src / "vp9.webm", codec=["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"])
    encode(src / "mpeg4.avi", codec=["-c:v", "mpeg4"])
    for name in ("ünïcödé 名前.mp4", "quote's \"double\".mp4", "-leading-dash.mp4", "colon:name.mp4"):
        (src / name).write_bytes(full)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, encode_video):
    root = tmp_path_factory.mktemp("corpus")
    src = root / "src" / "mixed"
    src.mkdir(parents=True)
    _make_corpus(src, root / "tmp", encode_video)
    data = root / "data"
    report = ingest([str(root / "src")], data, IngestConfig(short_side=112, progress=False))
    return src, data, report


def test_every_input_is_ingested_or_failed_with_reason(corpus):
    src, data, report = corpus
    names = {p.name for p in src.iterdir()}
    assert names == set(EXPECTED_FAILURES) | set(EXPECTED_SIZES)
    failed = {r["source"].rsplit("/", 1)[-1]: r for r in read_jsonl(data / "failed.jsonl")}
    assert set(failed) == set(EXPECTED_FAILURES), failed
    for name, (stage, words) in EXPECTED_FAILURES.items():
        assert failed[name]["stage"] == stage, failed[name]
        assert words in failed[name]["reason"], failed[name]
    ingested = {e["source"].rsplit("/", 1)[-1]: e for e in read_index(data)}
    assert set(ingested) == set(EXPECTED_SIZES)
    assert (report.ingested, report.failed) == (len(EXPECTED_SIZES), len(EXPECTED_FAILURES))
    for name, size in EXPECTED_SIZES.items():
        assert (ingested[name]["width"], ingested[name]["height"]) == size, name


def test_outputs_are_8bit_420_cfr_without_rotation_or_audio(corpus):
    _, data, _ = corpus
    for shard in list_shards(data):
        for s in iter_shard(shard):
            meta = s["json"]
            with av.open(io.BytesIO(s["mp4"])) as c:
                assert [st.type for st in c.streams] == ["video"], meta["source"]
                v = c.streams.video[0]
                assert v.codec_context.name == "h264"
                durations = {p.duration for p in c.demux(v) if p.size}
            assert len(durations) == 1, (meta["source"], durations)  # constant frame rate
            with av.open(io.BytesIO(s["mp4"])) as c:
                frame = next(c.decode(video=0))
                assert frame.format.name == "yuv420p" and (frame.rotation or 0) == 0
            assert decode_rgb(s["mp4"]).shape[0] == meta["num_frames"]


def test_vfr_becomes_cfr_over_the_whole_duration(corpus):
    _, data, _ = corpus
    (vfr,) = [e for e in read_index(data) if e["source"].endswith("vfr.mkv")]
    # 50 input frames over 3 s (30 at 30 fps, 20 at 10 fps): the 30 fps CFR grid covers ~3 s
    assert 86 <= vfr["num_frames"] <= 91


def test_rotation_is_applied_to_pixels(corpus):
    _, data, _ = corpus
    frames = {}
    for shard in list_shards(data):
        for s in iter_shard(shard):
            name = s["json"]["source"].rsplit("/", 1)[-1]
            if name in ("good.mp4", "rotated.mp4"):
                frames[name] = decode_rgb(s["mp4"], [0])[0].astype(np.float32)
    # display_rotation 90 = counter-clockwise; the stored pixels are already upright
    upright = np.rot90(frames["good.mp4"], k=1)
    assert upright.shape == frames["rotated.mp4"].shape
    assert np.abs(upright - frames["rotated.mp4"]).mean() < 12
    assert np.abs(np.rot90(frames["good.mp4"], k=-1) - frames["rotated.mp4"]).mean() > 30


def test_keys_are_unique_and_dotless(corpus):
    _, data, _ = corpus
    keys = [e["key"] for e in read_index(data)]
    assert len(set(keys)) == len(keys)
    assert all("." not in k and "/" not in k and k.isascii() for k in keys)


def test_max_pixels_rejects_and_keep_audio_keeps(corpus, tmp_path):
    src, _, _ = corpus
    report = ingest([str(src / "huge.mp4"), str(src / "with audio.mp4")], tmp_path,
                    IngestConfig(short_side=112, max_pixels=4_000_000, keep_audio=True, progress=False))
    (rec,) = report.failures
    assert rec["source"].endswith("huge.mp4") and "exceeds max_pixels" in rec["reason"]
    (shard,) = list_shards(tmp_path)
    (sample,) = iter_shard(shard)
    assert sample["json"]["has_audio"]
    with av.open(io.BytesIO(sample["mp4"])) as c:
        assert sorted(st.type for st in c.streams) == ["audio", "video"]
    # audio shares the moofs; the fragment table still counts video frames only
    full = decode_rgb(sample["mp4"])
    assert len(full) == sample["json"]["num_frames"] == 60
    from rhovid.ingest.fragments import clip_slice

    data, frame0 = clip_slice(sample["mp4"], sample["json"], 40, 50)
    np.testing.assert_array_equal(decode_rgb(data), full[frame0 : frame0 + len(decode_rgb(data))])
    assert json.loads((tmp_path / "ingest.json").read_text())["keep_audio"] is True
