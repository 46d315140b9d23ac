"""Hostile sources become failed.jsonl entries with a reason, in bounded time and memory
(issue 13, items 7, 10, 11). Every file is made here with the real ffmpeg plus byte edits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from hostile_media import gap_video, hls_playlist, timescale_zero_video
from process_tree import finish, rhovid

from rhovid.atomic import read_jsonl
from rhovid.ingest.pipeline import IngestConfig, ingest
from rhovid.ingest.probe import probe
from rhovid.ingest.reader import read_index
from rhovid.ingest.transcode import TranscodeError, TranscodeSettings, ffmpeg_args, run_ffmpeg

CFG = IngestConfig(short_side=64, gop=8, workers=0, progress=False)


def _failures(data) -> dict[str, dict]:
    return {os.path.basename(r["source"]): r for r in read_jsonl(data / "failed.jsonl")}


def test_one_hour_timestamp_gap_is_rejected_not_resampled(tmp_path, encode_video):
    """Before: a 12 KB source became a 108,120-frame sample (ffmpeg at 1.6 GiB, 26 s)."""
    src = tmp_path / "src"
    gap = gap_video(src / "a" / "gap.mp4", gap_s=3600.0)
    encode_video(src / "a" / "good.mp4", size="96x64", seconds=1.0)
    assert gap.stat().st_size < 25_000
    t0 = time.monotonic()
    report = ingest([str(src)], tmp_path / "data", CFG)
    assert time.monotonic() - t0 < 30
    assert (report.ingested, report.failed) == (1, 1)
    rec = _failures(tmp_path / "data")["gap.mp4"]
    assert rec["stage"] == "probe" and "timestamps jump by 3600.0 s" in rec["reason"], rec
    assert max(e["num_frames"] for e in read_index(tmp_path / "data")) == 30


def test_timescale_zero_is_bounded_by_the_probed_duration(tmp_path):
    """Before: a 4 s MP4 whose mdhd timescale is 0 became a 512 s sample of 15,360 frames."""
    src = tmp_path / "src"
    timescale_zero_video(src / "a" / "ts0.mp4")
    assert probe(src / "a" / "ts0.mp4").duration_s == pytest.approx(4.0)
    report = ingest([str(src)], tmp_path / "data", CFG)
    rec = _failures(tmp_path / "data")["ts0.mp4"]
    assert report.failed == 1 and rec["stage"] == "probe" and "timestamps jump by 512.0 s" in rec["reason"], rec
    # with the gap rule out of the way, the output bound stops ffmpeg near the probed 4 s
    t0 = time.monotonic()
    report = ingest([str(src)], tmp_path / "data2", IngestConfig(short_side=64, gop=8, workers=0, progress=False,
                                                                  max_gap_s=1e6))
    rec = _failures(tmp_path / "data2")["ts0.mp4"]
    assert report.failed == 1 and rec["stage"] == "check" and "but the source is 4.00 s long" in rec["reason"], rec
    assert time.monotonic() - t0 < 20  # ffmpeg stopped at 171 frames instead of writing 15,360


def _make_atime_observable(path) -> bool:
    """Date ``path``'s atime two days back (relatime then records the next read); whether reads
    show up in atime on this filesystem at all (noatime mounts: no)."""
    old = time.time() - 2 * 86400
    canary = path.with_name(".canary")
    for p in (path, canary):
        p.touch()
        os.utime(p, (old, old - 86400))
    canary.read_bytes()
    return canary.stat().st_atime != old


def test_hls_playlist_is_refused_and_its_segment_never_read(tmp_path):
    """Before: the playlist became a sample holding the pixels of a .ts file outside the tree."""
    secret = tmp_path / "elsewhere" / "secret.ts"
    playlist = hls_playlist(tmp_path / "src" / "a" / "list.m3u8", secret)
    observable = _make_atime_observable(secret)
    before = secret.stat().st_atime
    report = ingest([str(tmp_path / "src")], tmp_path / "data", CFG)
    rec = _failures(tmp_path / "data")["list.m3u8"]
    assert (report.ingested, report.failed) == (0, 1)
    assert rec["stage"] == "probe" and "not a container format ingest reads" in rec["reason"], rec
    if observable:  # neither the probe nor ffmpeg opened the segment
        assert secret.stat().st_atime == before
    # ffmpeg itself refuses it too, should a probe ever let one through
    args = ffmpeg_args(str(playlist), probe(secret), TranscodeSettings(short_side=64, gop=8))
    assert args[args.index("-protocol_whitelist") + 1] == "file"
    with pytest.raises(TranscodeError, match="Error opening input"):
        run_ffmpeg(args, timeout_s=30)


def test_ffmpeg_runs_under_a_memory_and_a_time_limit(tmp_path, encode_video):
    src = tmp_path / "src"
    encode_video(src / "a" / "hd.mp4", size="1280x720", seconds=2.0)
    report = ingest([str(src)], tmp_path / "data", IngestConfig(short_side=256, workers=0, progress=False,
                                                                 max_memory=24 << 20))
    rec = _failures(tmp_path / "data")["hd.mp4"]
    assert report.failed == 1 and "ran out of its memory limit (24 MiB)" in rec["reason"], rec
    report = ingest([str(src)], tmp_path / "data2", IngestConfig(short_side=256, workers=0, progress=False,
                                                                  timeout_s=0.05))
    rec = _failures(tmp_path / "data2")["hd.mp4"]
    assert report.failed == 1 and "timed out after 0 s (the per-source time limit)" in rec["reason"], rec
    report = ingest([str(src)], tmp_path / "data3", IngestConfig(short_side=256, workers=0, progress=False))
    assert report.ingested == 1  # the default limits let it through


def _unprivileged() -> list[str]:
    """A command prefix under which chmod 000 stops listing a folder: none for a normal user;
    for root, ``setpriv`` dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (root stays root
    and can write its own files, but no longer reads what the modes forbid)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: no way to make a folder unlistable")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def test_symlink_loop_cycle_and_unlistable_folder_are_failures(tmp_path, encode_video):
    """Before: the self-referencing symlink ended the run with a traceback (exit 1), and the
    folder that cannot be listed vanished without a word."""
    src = tmp_path / "src"
    encode_video(src / "a" / "good.mp4", size="96x64", seconds=1.0)
    encode_video(src / "locked" / "hidden.mp4", size="96x64", seconds=1.0)
    os.symlink("loop.mp4", src / "a" / "loop.mp4")  # points at itself
    os.symlink("..", src / "a" / "up")  # a cycle back to the root
    (src / "locked").chmod(0)
    data = tmp_path / "data"
    try:
        cmd = [*_unprivileged(), sys.executable, "-m", "rhovid.cli", "ingest", str(src), "--out", str(data),
               "--short-side", "64", "--gop", "8", "--workers", "0", "--no-progress"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        (src / "locked").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    fails = _failures(data)
    assert fails["loop.mp4"]["stage"] == "probe" and "symbolic links" in fails["loop.mp4"]["reason"]
    assert fails["locked"]["stage"] == "discover" and "cannot list folder (Permission denied)" in fails["locked"]["reason"]
    assert fails["up"]["stage"] == "discover" and "already listed as" in fails["up"]["reason"]
    assert [e["label_name"] for e in read_index(data)] == ["a"]


def test_fifo_in_the_tree_does_not_hang_the_run(tmp_path, encode_video):
    """Before: the probe opened the FIFO and waited for a writer for good."""
    src = tmp_path / "src"
    encode_video(src / "a" / "good.mp4", size="96x64", seconds=1.0)
    os.mkfifo(src / "a" / "pipe.mp4")
    rc, _, err = finish(rhovid("ingest", str(src), "--out", str(tmp_path / "data"), "--short-side", "64",
                               "--gop", "8", "--workers", "0", "--no-progress"), 60)
    assert rc == 0, err
    rec = _failures(tmp_path / "data")["pipe.mp4"]
    assert rec["stage"] == "probe" and "not a regular file" in rec["reason"]
