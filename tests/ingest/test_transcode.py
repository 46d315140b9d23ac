"""Transcode argv, output geometry and the fMP4 box parser on real ffmpeg output."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rhovid.ingest.decode import decode_rgb
from rhovid.ingest.fmp4 import parse_fragments
from rhovid.ingest.fragments import clip_slice
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.probe import ProbeError, probe
from rhovid.ingest.reader import iter_shard, list_shards
from rhovid.ingest.transcode import TranscodeSettings, ffmpeg_args, output_size, run_ffmpeg


@pytest.mark.parametrize(
    ("display", "short", "expected"),
    [((160, 120), 112, (150, 112)), ((120, 160), 112, (112, 150)), ((161, 121), 112, (150, 112)),
     ((4000, 3000), 256, (342, 256)), ((100, 100), 255, (256, 256)), ((1920, 1080), 256, (456, 256))],
)
def test_output_size_keeps_aspect_with_even_sides(display, short, expected):
    assert output_size(*display, short) == expected


def test_argv_is_a_list_with_fixed_gop_and_safe_input_url(tmp_path, encode_video):
    src = encode_video(tmp_path / "-x y.mp4", seconds=1.0)
    args = ffmpeg_args(str(src), probe(src), TranscodeSettings(short_side=64, gop=12))
    assert f"file:{src}" in args  # absolute file: URL, never an option or protocol
    assert not any(a.startswith("-x y") or a == str(src) for a in args)
    for flag, value in (("-g", "12"), ("-keyint_min", "12"), ("-sc_threshold", "0")):
        assert args[args.index(flag) + 1] == value
    assert "scenecut=0" in args[args.index("-x264-params") + 1]
    assert "+frag_keyframe+empty_moov+default_base_moof" in args[args.index("-movflags") + 1]


def test_fragment_table_of_real_output(tmp_path, encode_video):
    src = encode_video(tmp_path / "v.mkv", seconds=2.0)
    out = run_ffmpeg(ffmpeg_args(str(src), probe(src), TranscodeSettings(short_side=64, gop=12)))
    table = parse_fragments(out)
    assert table.data_end == len(out)  # skip_trailer: no mfra after the last fragment
    assert [f.num_frames for f in table.fragments] == [12] * 5
    assert all(f.starts_with_sync for f in table.fragments)
    assert [f.first_frame for f in table.fragments] == [0, 12, 24, 36, 48]
    assert all(a.byte_end == b.byte_offset for a, b in zip(table.fragments, table.fragments[1:]))
    with pytest.raises(ValueError):
        parse_fragments(out[: len(out) - 100])  # last mdat cut short
    with pytest.raises(ValueError):
        parse_fragments(b"definitely not an mp4 file")
    with pytest.raises(ValueError, match="moov"):
        parse_fragments(out[table.init_size :])


def test_probe_reports_problems_by_name(tmp_path):
    with pytest.raises(ProbeError, match="file not found"):
        probe(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ProbeError, match="empty"):
        probe(tmp_path / "empty.mp4")


def _x264_options(mp4: bytes) -> str:
    """The option string x264 writes into its SEI (``... cabac=1 ... deblock=1:0:0 ...``)."""
    start = mp4.index(b"x264 - core")
    return mp4[start : mp4.index(b"\0", start)].decode("ascii", "replace")


def test_tune_fastdecode_turns_off_cabac_and_deblocking_and_keeps_fragments_decodable(tmp_path, encode_video):
    src = encode_video(tmp_path / "src" / "v.mp4", seconds=2.0)
    for tune, cabac, deblock in ((None, "cabac=1", "deblock=1"), ("fastdecode", "cabac=0", "deblock=0")):
        data = tmp_path / f"data-{tune}"
        ingest([str(src)], data, IngestConfig(short_side=64, gop=12, tune=tune, workers=0, progress=False))
        (s,) = [x for p in list_shards(data) for x in iter_shard(p)]
        options = _x264_options(s["mp4"])
        assert cabac in options.split() and f" {deblock}:" in options, options
        assert s["json"]["encoder"]["tune"] == tune
        assert json.loads((data / "ingest.json").read_text())["tune"] == tune
        full = decode_rgb(s["mp4"])
        for _, first, n in s["json"]["fragments"]:  # every fragment still decodes on its own
            part, frame0 = clip_slice(s["mp4"], s["json"], first, first + n - 1)
            np.testing.assert_array_equal(decode_rgb(part), full[first : first + n])
    # the run's tune is pinned: another one into the same DATA is refused, nothing rewritten
    before = (tmp_path / "data-fastdecode" / "index.json").read_bytes()
    with pytest.raises(ValueError, match="tune: 'fastdecode' -> None"):
        ingest([str(src)], tmp_path / "data-fastdecode", IngestConfig(short_side=64, gop=12, progress=False))
    assert (tmp_path / "data-fastdecode" / "index.json").read_bytes() == before


def _longest_b_run(mp4: bytes) -> tuple[int, int]:
    """(B-frames, longest run of consecutive B-frames in display order) of a whole decode."""
    import av
    from av.video.frame import PictureType

    with av.open(io.BytesIO(mp4)) as c:
        is_b = [f.pict_type == PictureType.B for f in c.decode(video=0)]
    runs, run = [0], 0
    for b in is_b:
        run = run + 1 if b else 0
        runs.append(run)
    return sum(is_b), max(runs)


def test_bframes_fixes_the_b_run_and_the_loader_still_returns_exact_frames(tmp_path, encode_video):
    from rhovid.train.decode_pyav import decode_frames

    src = encode_video(tmp_path / "src" / "v.mp4", seconds=2.0)
    runs = {}
    for bframes in (0, 7):
        data = tmp_path / f"data-b{bframes}"
        ingest([str(src)], data, IngestConfig(short_side=64, gop=16, bframes=bframes, workers=0, progress=False))
        (s,) = [x for p in list_shards(data) for x in iter_shard(p)]
        options = _x264_options(s["mp4"]).split()
        assert f"bframes={bframes}" in options, options
        if bframes:  # x264 lists its B-frame options only when there are B-frames
            assert "b_pyramid=0" in options and "b_adapt=0" in options, options
        assert s["json"]["encoder"]["bframes"] == bframes
        assert json.loads((data / "ingest.json").read_text())["bframes"] == bframes
        runs[bframes] = _longest_b_run(s["mp4"])
        # every frame decoded (threaded demuxer path), same YUV->RGB as the loader's skipping decoder
        full = decode_frames(s["mp4"], range(s["json"]["num_frames"]), thread_type="AUTO")
        for _, first, n in s["json"]["fragments"]:  # each fragment alone; strided frames as the loader asks
            part, frame0 = clip_slice(s["mp4"], s["json"], first, first + n - 1)
            local = list(range(first - frame0 + 1, first - frame0 + n, 3))
            np.testing.assert_array_equal(decode_frames(part, local), full[[frame0 + i for i in local]])
    assert runs[0] == (0, 0)
    assert runs[7][0] > 0 and runs[7][1] == 7, runs  # GOP 16 = I + 7 B + P + 6 B + P (closed GOP)
    with pytest.raises(ValueError, match="bframes: 7 -> None"):  # pinned like every output setting
        ingest([str(src)], tmp_path / "data-b7", IngestConfig(short_side=64, gop=16, progress=False))


@pytest.mark.parametrize("field, value, message", [
    ("tune", "fast", "'fast' is not an x264 tune"),
    ("bframes", 17, "bframes must be in 0..16"),
    ("bframes", -1, "bframes must be in 0..16"),
    ("preset", "quick", "'quick' is not an x264 preset"),
    ("gop", 0, "gop must be > 0, got 0"),
    ("fps", 0.0, "fps must be > 0, got 0.0"),
    ("short_side", 1, "short_side must be > 1, got 1"),
    ("crf", 60, "crf must be in 0..51"),
    ("shard_count", 0, "shard_count must be >= 1"),
    ("min_coverage", 0.0, "min_coverage must be in"),
])
def test_impossible_settings_are_refused_before_anything_is_written(tmp_path, encode_video, field, value, message):
    src = encode_video(tmp_path / "v.mp4", seconds=1.0)
    with pytest.raises(ValueError, match=message):
        ingest([str(src)], tmp_path / "data", IngestConfig(progress=False, **{field: value}))
    assert not (tmp_path / "data").exists()


def test_out_that_is_a_file_is_refused_and_left_alone(tmp_path, encode_video):
    src = encode_video(tmp_path / "v.mp4", seconds=1.0)
    (tmp_path / "data").write_text("keep me")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        ingest([str(src)], tmp_path / "data", IngestConfig(progress=False))
    assert (tmp_path / "data").read_text() == "keep me"


def test_missing_source_pins_no_settings_for_the_corrected_rerun(tmp_path, encode_video):
    src = encode_video(tmp_path / "v.mp4", seconds=1.0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest([str(tmp_path / "typo.mp4")], tmp_path / "data", IngestConfig(short_side=64, progress=False))
    assert not (tmp_path / "data").exists()
    rep = ingest([str(src)], tmp_path / "data", IngestConfig(short_side=96, progress=False, workers=0))
    assert rep.ingested == 1
    assert json.loads((tmp_path / "data" / "ingest.json").read_text())["short_side"] == 96


def test_video_samples_match_the_demuxer_with_audio_in_the_fragments(tmp_path, encode_video):
    import io

    import av

    from rhovid.ingest.fmp4 import video_samples

    src = encode_video(tmp_path / "v.mp4", seconds=2.0, audio=True,
                       codec=["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", "3"])
    out = run_ffmpeg(ffmpeg_args(str(src), probe(src), TranscodeSettings(short_side=64, gop=12, keep_audio=True)))
    table = video_samples(out)
    with av.open(io.BytesIO(out)) as c:
        assert len(c.streams.audio) == 1  # audio samples share the fragments: the table must skip them
        stream = c.streams.video[0]
        assert table.codec == b"avc1" and table.config == stream.codec_context.extradata
        assert table.timescale == stream.time_base.denominator
        packets = [p for p in c.demux(stream) if p.size]
    assert len(table.samples) == len(packets) == 60
    for s, p in zip(table.samples, packets):
        assert (s.cts, s.dts, s.duration, s.sync, s.size) == (p.pts, p.dts, p.duration, p.is_keyframe, p.size)
        assert out[s.offset : s.offset + s.size] == bytes(p)
    assert [k for k, s in enumerate(table.samples) if s.sync] == [0, 12, 24, 36, 48]
    assert any(s.cts != s.dts for s in table.samples)  # B-frames: composition offsets were read
    with pytest.raises(ValueError, match="runs past the end"):
        video_samples(out[: table.samples[-1].offset + 1] + b"\0" * 7)  # last sample cut short
