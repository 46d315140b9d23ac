"""``rhovid boxes`` end to end on real shards: compute, no-op, workers, resume, CLI, errors."""

from __future__ import annotations

import shlex
import shutil

import numpy as np
import pytest

from rhovid.cli import main
from rhovid.ingest.decode import decode_rgb
from rhovid.ingest.reader import iter_shard, list_shards, read_index, shard_name
from rhovid.store.compute import box_frame_indices, compute_box_set
from rhovid.store.priors.motion import decode_motion_vectors
from rhovid.store.zarr_store import BoxStore, group_status, store_root


@pytest.fixture
def data(tiny_data, tmp_path):
    """A private copy of tiny_data (the session fixture stays free of boxes.zarr)."""
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out, ignore=shutil.ignore_patterns("boxes.zarr"))
    return out


def shards_of(data):
    return [shard_name(p) for p in list_shards(data)]


def test_box_frame_indices():
    np.testing.assert_array_equal(box_frame_indices(120, 30.0, 2.0), np.arange(0, 120, 15))
    np.testing.assert_array_equal(box_frame_indices(10, 25.0, 2.0), [0])  # round(12.5) past the end
    np.testing.assert_array_equal(box_frame_indices(30, 25.0, 2.0), [0, 13, 25])  # half rounds up
    np.testing.assert_array_equal(box_frame_indices(5, 30.0, 60.0), [0, 1, 2, 3, 4])  # no repeats
    assert len(box_frame_indices(0, 30.0, 2.0)) == 0


def test_compute_round_trip_then_noop(data, capsys):
    report = compute_box_set(data, "slic", {"segments": "30"}, box_fps=2.0, max_boxes=8, progress=False)
    assert not report.failed and sorted(report.computed) == shards_of(data) and report.frames > 0
    store = BoxStore(data)
    index = read_index(data)
    rows = 0
    for shard in shards_of(data):
        sb = store.load(shard, report.set_name)
        entries = [e for e in index if e["shard"] == f"{shard}.tar"]
        assert sb.keys == [e["key"] for e in entries]
        assert sb.attrs["method"] == "slic" and sb.attrs["params"]["segments"] == 30
        assert sb.attrs["box_fps"] == 2.0 and sb.attrs["max_boxes"] == 8 and sb.attrs["code_version"]
        assert sb.rows.boxes.shape[1:] == (8, 4) and sb.rows.score is None
        for e in entries:
            want = box_frame_indices(e["num_frames"], e["fps"], 2.0)
            np.testing.assert_array_equal(sb.stored_frames(e["key"]), want)
            boxes, count, _ = sb.lookup(e["key"], want)
            assert (count >= 1).all() and (count <= 8).all()
            valid = np.arange(8)[None, :] < count[:, None]
            b = boxes[valid]
            assert (b[:, 0] >= 0).all() and (b[:, 2] <= e["width"]).all() and (b[:, 3] <= e["height"]).all()
            assert ((b[:, 2] - b[:, 0]) >= 4).all() and ((b[:, 3] - b[:, 1]) >= 4).all()
            assert (boxes[~valid] == 0).all()
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            assert (area <= 0.9 * e["width"] * e["height"]).all()
        rows += len(sb.rows.count)
    assert rows == report.frames
    # the same request again computes nothing, through the API and the CLI
    again = compute_box_set(data, "slic", {"segments": 30}, box_fps=2.0, max_boxes=8, progress=False)
    assert again.noop and again.frames == 0 and sorted(again.skipped) == shards_of(data)
    capsys.readouterr()
    assert (
        main(
            [
                "boxes",
                str(data),
                "--method",
                "slic",
                "--param",
                "segments=30",
                "--max-boxes",
                "8",
                "--name",
                "sp16",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        f"box set {report.set_name} (alias sp16) already complete for 2/2 shards; nothing to compute" in out
    )
    assert BoxStore(data).load(shards_of(data)[0], "sp16").set_name == report.set_name
    assert main(["boxes", str(data), "--list"]) == 0
    table = capsys.readouterr().out
    line = next(x for x in table.splitlines() if x.startswith(report.set_name))
    assert "(sp16)" in line and "segments=30" in line and " 2/2 " in line


def test_two_workers_write_different_shards_concurrently(data, tmp_path):
    other = tmp_path / "inline"
    shutil.copytree(data, other)
    par = compute_box_set(data, "fh", workers=2, progress=False)
    seq = compute_box_set(other, "fh", workers=0, progress=False)
    assert par.set_name == seq.set_name and not par.failed and sorted(par.computed) == shards_of(data)
    for shard in shards_of(data):
        a = BoxStore(data).load(shard, "fh").rows
        b = BoxStore(other).load(shard, "fh").rows
        for name in ("boxes", "count", "frame", "video_offsets"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_interrupted_run_resumes_without_touching_finished_shards(data):
    first, second = shards_of(data)
    crashed = compute_box_set(data, "motion", crash_in=(second,), progress=False)
    assert crashed.computed == [first] and [s for s, _ in crashed.failed] == [second]
    assert "SimulatedCrash" in crashed.failed[0][1]
    root = store_root(data)
    assert group_status(root, second, crashed.set_name) == "partial"
    done = sorted((root / first / crashed.set_name).rglob("*"))
    mtimes = {p: p.stat().st_mtime_ns for p in done if p.is_file()}
    resumed = compute_box_set(data, "motion", progress=False)
    assert resumed.set_name == crashed.set_name
    assert resumed.computed == [second] and resumed.skipped == [first] and not resumed.failed
    assert resumed.frames == len(BoxStore(data).load(second, "motion").rows.count)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert sum(len(BoxStore(data).load(s, "motion").rows.count) for s in (first, second)) == (
        crashed.frames + resumed.frames
    )


def test_missing_shard_error_names_a_command_that_computes_it(data, capsys):
    report = compute_box_set(data, "hog", {"hit_threshold": "-0.5", "min_side": "160"}, max_boxes=4, progress=False)
    shard = shards_of(data)[1]
    scored = BoxStore(data).load(shard, report.set_name).rows
    assert scored.score.shape == (len(scored.count), 4)
    assert (np.diff(scored.score, axis=1)[np.arange(4)[None, 1:] < scored.count[:, None]] <= 0).all()
    shutil.rmtree(store_root(data) / shard / report.set_name)
    with pytest.raises(
        KeyError, match=f"shard {shard} has no box set {report.set_name}; compute it with: "
    ) as e:
        BoxStore(data).load(shard, report.set_name)
    command = str(e.value.args[0]).split("compute it with: ")[1]
    assert main([*shlex.split(command)[1:], "--no-progress"]) == 0
    assert f"box set {report.set_name}: computed 1 shards" in capsys.readouterr().out
    np.testing.assert_array_equal(BoxStore(data).load(shard, report.set_name).rows.boxes, scored.boxes)


def test_motion_vectors_source_finds_moving_objects(data):
    report = compute_box_set(data, "motion", {"source": "mv"}, progress=False)
    counts = np.concatenate([BoxStore(data).load(s, report.set_name).rows.count for s in shards_of(data)])
    assert counts.sum() > 0 and not report.failed
    sample = next(iter_shard(list_shards(data)[0]))
    idx = box_frame_indices(sample["json"]["num_frames"], sample["json"]["fps"], 2.0)
    rgb, mag = decode_motion_vectors(sample["mp4"], idx)
    np.testing.assert_array_equal(rgb, decode_rgb(sample["mp4"], idx))  # one pass gives the same frames
    assert mag.shape == (len(idx), -(-rgb.shape[1] // 8), -(-rgb.shape[2] // 8))
    assert (mag[0] == 0).all() and mag[1:].max() > 0  # frame 0 is an I-frame: no vectors


def test_show_writes_a_contact_sheet(data, tmp_path, capsys):
    import cv2

    compute_box_set(data, "slic", progress=False)
    key = read_index(data)[0]["key"]
    out = tmp_path / "sheet.png"
    assert main(["boxes", str(data), "--show", key, "--set", "slic", "-o", str(out), "--frames", "6"]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] >= 2 * 224 and img.shape[1] >= 4 * 224  # 2 rows of 4 tiles
    assert "wrote" in capsys.readouterr().out


def test_cli_error_messages(data, tmp_path, capsys):
    def err(*argv):
        rc = main(["boxes", *map(str, argv)])
        return rc, capsys.readouterr().err

    rc, msg = err(data, "--method", "slic", "--param", "segments")
    assert rc == 1 and "--param 'segments': expected KEY=VALUE" in msg
    rc, msg = err(data, "--method", "slic", "--param", "colour=1")
    assert rc == 1 and "method slic has no parameter 'colour'" in msg
    with pytest.raises(SystemExit):
        main(["boxes", str(data), "--method", "sift"])
    assert "invalid choice: 'sift'" in capsys.readouterr().err
    rc, msg = err(data, "--show", "k", "-o", tmp_path / "x.png")
    assert rc == 1 and "--show KEY needs --set NAME and -o OUT.png" in msg
    rc, msg = err(data, "--show", read_index(data)[0]["key"], "--set", "nope", "-o", tmp_path / "x.png")
    assert rc == 1 and "unknown box set 'nope'; available: none" in msg
    rc, msg = err(data, "--show", "no-such-key", "--set", "nope", "-o", tmp_path / "x.png")
    assert rc == 1 and "video key 'no-such-key' is not in" in msg
    rc, msg = err(tmp_path / "empty", "--method", "slic")
    assert rc == 1 and "no shards" in msg
    rc, msg = err(data, "--method", "slic", "--box-fps", "0")
    assert rc == 1 and "--box-fps must be > 0" in msg
    rc, msg = err(data, "--method", "slic", "--workers", "-1")
    assert rc == 1 and "--workers must be >= 0" in msg
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"0")
    try:
        import torchvision  # noqa: F401
    except Exception:
        rc, msg = err(data, "--method", "torchvision", "--param", f"weights={weights}")
        assert rc == 1 and "torchvision is not importable here" in msg
        assert BoxStore(data).list_sets() == []  # refused before anything was registered or written
    try:
        import detectron2  # noqa: F401
    except Exception:
        rc, msg = err(
            data, "--method", "detectron2", "--param", f"weights={weights}", "--param", f"config={weights}"
        )
        assert rc == 1 and "detectron2 is not installed here" in msg


def _group_files(data, set_name):
    root = store_root(data)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for shard in shards_of(data)
        for p in sorted((root / shard / set_name).rglob("*"))
        if p.is_file()
    }


def test_fewer_shards_than_workers_splits_into_video_ranges_byte_identical(data, tmp_path):
    """2 shards of 3 videos, 3 workers: each shard runs as 2 video ranges in parallel and the
    driver writes its group once, byte for byte what the per-shard path writes."""
    other = tmp_path / "per-shard"
    shutil.copytree(data, other)
    split = compute_box_set(data, "hog", {"min_side": "224"}, workers=3, progress=False)
    whole = compute_box_set(other, "hog", {"min_side": "224"}, workers=0, progress=False)
    assert split.tasks == 4 and whole.tasks == 2  # 2 ranges per shard vs one task per shard
    assert not split.failed and sorted(split.computed) == shards_of(data) == sorted(whole.computed)
    assert split.frames == whole.frames and split.videos == whole.videos == 6
    a, b = _group_files(data, split.set_name), _group_files(other, whole.set_name)
    assert a.keys() == b.keys() and any(k.endswith("/score/c/0/0") for k in a)  # every array + zarr.json
    assert all(a[k] == b[k] for k in a)
    assert compute_box_set(data, "hog", {"min_side": "224"}, workers=3, progress=False).noop


def test_a_split_shard_is_written_only_when_every_range_is_done(data):
    first = shards_of(data)[0]
    crashed = compute_box_set(data, "motion", workers=3, crash_in=(first,), progress=False)
    assert crashed.tasks == 4 and [s for s, _ in crashed.failed] == [first] and crashed.computed == shards_of(data)[1:]
    assert group_status(store_root(data), first, crashed.set_name) == "partial"
    resumed = compute_box_set(data, "motion", workers=3, progress=False)
    assert resumed.computed == [first] and resumed.tasks == 3 and not resumed.failed  # 1 shard of 3 videos, 3 workers: 3 ranges


def test_show_sheet_has_a_legend_and_detector_scores(data, tmp_path):
    import cv2

    from rhovid.store.show import LEGEND_LINE, legend_lines

    report = compute_box_set(data, "hog", {"min_side": "224", "hit_threshold": "-0.5"}, progress=False)
    key = read_index(data)[0]["key"]
    sb = BoxStore(data).load(shards_of(data)[0], report.set_name)
    _, count, score = sb.lookup(key, sb.stored_frames(key))
    lines = legend_lines(report.set_name, sb.attrs, key, float(count.mean()), len(count), score is not None)
    assert lines[0].startswith(f"set {report.set_name}   method hog")
    assert any("detector=daimler" in x and "min_side=224" in x for x in lines)
    assert lines[-1] == (f"video {key}: {count.mean():.1f} boxes per frame over {len(count)} stored frames; "
                         "detector score at each box")
    out = tmp_path / "sheet.png"
    assert main(["boxes", str(data), "--show", key, "--set", report.set_name, "-o", str(out), "--frames", "4"]) == 0
    img = cv2.imread(str(out))
    tile = max(1, round(240 / 112)) * 112
    assert img.shape[0] == LEGEND_LINE * len(lines) + 6 + tile  # the legend band above one row of tiles
    assert (img[: LEGEND_LINE * len(lines)] < 128).any()  # legend text drawn
