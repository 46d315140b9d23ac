"""rhovid.ingest.synth: real ffmpeg encodes, decoded back with PyAV."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from rhovid.cli import main as cli_main
from rhovid.ingest.synth import VARIANTS, SynthConfig, _tag, frame_times, synthesize, video_names
from rhovid.ingest.synth_scene import Scene, class_spec


def decode(path: Path, step: int = 1) -> np.ndarray:
    """All (or every ``step``-th) frames as (N, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % step == 0])


def probe(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "size": (frames[0].width, frames[0].height),
            "frames": len(frames),
            "times": np.array([float(f.pts * f.time_base) for f in frames]),
            "rotation": frames[0].rotation,
            "rate": s.average_rate,
            "audio": [a.codec_context.name for a in c.streams.audio],
        }


def test_tree_layout_and_decode(tiny_src):
    """conftest's tiny_src: 3 classes x 2 videos, 4 s, 160x120 @ 30 -> H.264 4:2:0, exact frame count."""
    classes = sorted(p.name for p in tiny_src.iterdir())
    assert classes == [class_spec(k).name for k in range(3)] == ["c00_disk_drift", "c01_square_orbit",
                                                                  "c02_triangle_bounce"]
    for name in classes:
        files = sorted(p.name for p in (tiny_src / name).iterdir())
        assert files == [f"{name}_0000.mp4", f"{name}_0001.mp4"]
        info = probe(tiny_src / name / files[0])
        assert (info["codec"], info["pix_fmt"], info["size"], info["frames"]) == ("h264", "yuv420p", (160, 120), 120)
        assert info["rate"] == 30
        assert np.allclose(np.diff(info["times"]), 1 / 30, atol=1e-3)
    assert not list(tiny_src.rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_same_seed_same_frames_different_seed_different(tmp_path):
    cfg = SynthConfig(classes=2, per_class=1, seconds=1.0, width=96, height=72, fps=25, seed=3)
    a = synthesize(tmp_path / "a", cfg)
    b = synthesize(tmp_path / "b", SynthConfig(**{**cfg.__dict__, "workers": 2}))  # process-pool path
    c = synthesize(tmp_path / "c", SynthConfig(**{**cfg.__dict__, "seed": 4}))
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb, pc in zip(a, b, c):
        fa, fb, fc = decode(pa), decode(pb), decode(pc)
        assert fa.shape == (25, 72, 96, 3)
        assert np.array_equal(fa, fb)
        assert np.abs(fa.astype(int) - fc.astype(int)).mean() > 10  # different backgrounds/objects


def test_render_is_a_pure_function_of_time():
    """Chunking cannot change content (minutes-long videos render in CHUNK-frame batches)."""
    scene = Scene(class_spec(1), seed=0, index=0, width=160, height=120)
    t = frame_times(70, 30.0)
    whole = scene.render(t)
    parts = np.concatenate([scene.render(t[:7]), scene.render(t[7:50]), scene.render(t[50:])])
    assert whole.shape == (70, 120, 160, 3) and whole.dtype == np.uint8
    assert np.array_equal(whole, parts)
    assert np.abs(np.diff(whole.astype(np.int16), axis=0)).mean() > 1  # it moves
    late = scene.render(np.array([600.0]))  # ten minutes in: still objects on a textured background
    assert late.std() > 10


def test_rerun_keeps_matching_files_and_replaces_stale_ones(tmp_path):
    cfg = SynthConfig(classes=1, per_class=2, seconds=0.5, width=64, height=48)
    first = synthesize(tmp_path, cfg)
    stamps = [p.stat().st_mtime_ns for p in first]
    assert synthesize(tmp_path, cfg) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps  # nothing re-encoded
    first[0].write_bytes(b"not a video")  # e.g. clobbered by hand
    synthesize(tmp_path, SynthConfig(**{**cfg.__dict__, "per_class": 3}))
    assert probe(first[0])["frames"] == 15
    assert first[1].stat().st_mtime_ns == stamps[1]
    synthesize(tmp_path, SynthConfig(**{**cfg.__dict__, "fps": 20}))  # different content -> rewritten
    assert probe(first[1])["frames"] == 10


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    cfg = SynthConfig(classes=1, per_class=1, seconds=1.0, width=96, height=72, fps=30, variants=tuple(VARIANTS))
    paths = synthesize(out, cfg)
    return {p.stem.removeprefix("c00_disk_drift_0000").lstrip("_"): p for p in paths}


def test_variant_names(variant_files):
    assert set(variant_files) == {"", *VARIANTS}
    assert variant_files[""].name == "c00_disk_drift_0000.mp4"
    assert variant_files["vfr"].name == "c00_disk_drift_0000_vfr.mp4"
    assert {p.parent for p in variant_files.values()} == {variant_files[""].parent}


@pytest.mark.parametrize(
    "variant, codec, pix_fmt, size",
    [
        ("10bit", "h264", "yuv420p10le", (96, 72)),
        ("422", "h264", "yuv422p", (96, 72)),
        ("444", "h264", "yuv444p", (96, 72)),
        ("odd", "mpeg4", "yuv420p", (97, 73)),
        ("vp9", "vp9", "yuv420p", (96, 72)),
        ("mjpeg", "mjpeg", "yuvj420p", (96, 72)),
        ("rotate", "h264", "yuv420p", (96, 72)),
        ("vfr", "h264", "yuv420p", (96, 72)),
        ("audio", "h264", "yuv420p", (96, 72)),
    ],
)
def test_variant_has_its_property(variant_files, variant, codec, pix_fmt, size):
    info = probe(variant_files[variant])
    assert (info["codec"], info["pix_fmt"], info["size"], info["frames"]) == (codec, pix_fmt, size, 30)
    assert info["rotation"] == (90 if variant == "rotate" else 0)
    assert info["audio"] == (["aac"] if variant == "audio" else [])
    gaps = np.diff(info["times"])
    assert gaps.min() > 0
    if variant == "vfr":
        assert gaps.max() / gaps.min() > 3  # irregular, not one constant frame duration
        assert abs(info["times"][-1] - 29 / 30) < 0.05  # same overall span as the CFR video
    else:
        assert gaps.max() - gaps.min() < 2e-3


def test_variant_content_matches_base(variant_files):
    """Variants re-encode the same scene: 4:4:4 decodes close to the 4:2:0 base."""
    base, full = decode(variant_files[""]).astype(int), decode(variant_files["444"]).astype(int)
    assert np.abs(base - full).mean() < 6


def _class_objects_only(scene: Scene, segments: int) -> Scene:
    """``scene`` with black backgrounds and no distractors: what it renders is its class objects."""
    for k in range(segments):
        canvas, tiled, pan, _ = scene.segment(k)
        scene._segments[k] = (np.zeros_like(canvas), np.zeros_like(tiled), pan, [])
    return scene


def test_scene_cuts_redraw_background_and_distractors_keep_class_objects():
    t = frame_times(90, 30.0)  # 3 s -> segments [0, 1), [1, 2), [2, 3)
    plain = Scene(class_spec(2), seed=0, index=1, width=96, height=72).render(t)
    cut = Scene(class_spec(2), seed=0, index=1, width=96, height=72, segment_s=1.0).render(t)
    assert np.array_equal(cut[:30], plain[:30])  # segment 0 is the uncut scene (segment_s=0 output unchanged)
    objects = _class_objects_only(Scene(class_spec(2), seed=0, index=1, width=96, height=72, segment_s=1.0), 3)
    on = objects.render(t).max(-1) > 0  # (T, H, W): where the class objects are
    assert on[:, None].any() and (~on).mean() > 0.5
    assert np.array_equal(cut[on], plain[on])  # class objects are the same in every segment
    diff = np.abs(cut.astype(int) - plain.astype(int)).mean(-1)
    assert diff[30:][~on[30:]].mean() > 10  # ... the rest (background, distractors) is not
    # within a segment frames change a little, across a cut a lot
    step = np.abs(np.diff(cut.astype(int), axis=0)).mean(axis=(1, 2, 3))
    cuts = [29, 59]  # step i is frame i -> i + 1
    assert step[cuts].min() > 3 * np.delete(step, cuts).max()
    segments = [Scene(class_spec(2), seed=0, index=1, width=96, height=72, segment_s=1.0).segment(k)[0]
                for k in range(3)]
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() > 10 for a, b in [segments[:2], segments[1:]])


def test_scene_cuts_are_deterministic_and_chunking_free():
    """Later segments come from their own stream: rendering order and chunk boundaries change nothing."""
    t = frame_times(100, 25.0)
    make = lambda: Scene(class_spec(4), seed=3, index=2, width=96, height=72, segment_s=0.7)  # noqa: E731
    whole = make().render(t)
    backwards = make()
    parts = [backwards.render(t[60:]), backwards.render(t[17:60]), backwards.render(t[:17])]  # cuts straddled
    assert np.array_equal(whole, np.concatenate(parts[::-1]))
    assert np.array_equal(whole, make().render(t))
    assert not np.array_equal(whole, Scene(class_spec(4), seed=4, index=2, width=96, height=72,
                                           segment_s=0.7).render(t))


def test_segment_s_in_file_tag_only_when_set(tmp_path):
    """Trees written before segment_s existed keep their tag (a rerun does not re-encode them)."""
    task = video_names(SynthConfig(classes=2, per_class=1))[1]
    assert _tag(task) == "rhovid-synth v1 74db3acc36c52506"  # the tag before segment_s was added
    cut = video_names(SynthConfig(classes=2, per_class=1, segment_s=1.0))[1]
    assert _tag(cut) != _tag(task)
    (a,) = synthesize(tmp_path / "a", SynthConfig(classes=1, per_class=1, seconds=1.0, width=64, height=48,
                                                  segment_s=0.5))
    (b,) = synthesize(tmp_path / "b", SynthConfig(classes=1, per_class=1, seconds=1.0, width=64, height=48))
    fa, fb = decode(a).astype(int), decode(b).astype(int)
    assert np.abs(fa[:15] - fb[:15]).mean() < 2 and np.abs(fa[15:] - fb[15:]).mean() > 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variants": ("vfr", "hdr")}, "unknown variant"),
        ({"width": 161}, "even width/height"),
        ({"seconds": 0.001}, "no frames"),
        ({"codec": "h266"}, "unknown codec"),
        ({"classes": 0}, "classes"),
        ({"segment_s": -1.0}, "segment_s"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**kwargs)


def test_cli_writes_tree_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "src with space"
    rc = cli_main(["synth", str(out), "--classes", "2", "--per-class", "1", "--seconds", "0.5", "--width", "64",
                   "--height", "48", "--variants", "odd,rotate", "--no-progress"])
    assert rc == 0
    expected = [out / t.path for t in video_names(SynthConfig(classes=2, per_class=1, variants=("odd", "rotate")))]
    assert sorted(out.rglob("*.*")) == sorted(expected) and len(expected) == 6
    assert "6 videos" in capsys.readouterr().out
    assert cli_main(["synth", str(out), "--variants", "bogus"]) == 1
    assert "unknown variant" in capsys.readouterr().err


# --- the class signal exists: nearest class centroid on hand-made features, across seeds ---------------------


def _appearance(frames: np.ndarray) -> np.ndarray:
    """Hue histogram of saturated pixels (objects are saturated, backgrounds are not)."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames])
    sat = hsv[..., 1] > 140
    hist = np.bincount((hsv[..., 0][sat].astype(int) * 12 // 180) % 12, minlength=12).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def _motion(frames: np.ndarray) -> np.ndarray:
    """Optical flow of saturated pixels: direction histogram, speed, divergence (zoom), curl (rotation)."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames])
    masks = np.where(hsv[..., 1] > 140, 255, 0).astype(np.uint8)
    dirs, speed, div, curl, count = np.zeros(8), 0.0, 0.0, 0.0, 1.0
    for a, b in zip(masks[:-1], masks[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0)
        fx, fy, on = flow[..., 0], flow[..., 1], a > 0
        mag = np.hypot(fx[on], fy[on])
        bins = (np.arctan2(fy[on], fx[on]) % (2 * np.pi) * 8 / (2 * np.pi)).astype(int) % 8
        dirs += np.bincount(bins, weights=mag, minlength=8)
        speed += mag.sum()
        div += np.abs(np.gradient(fx, axis=1) + np.gradient(fy, axis=0))[on].sum()
        curl += (np.gradient(fy, axis=1) - np.gradient(fx, axis=0))[on].sum()
        count += on.sum()
    return np.concatenate([dirs / max(dirs.sum(), 1e-9), [speed / count, div / count, 10 * curl / count]])


def _nearest_centroid_accuracy(x_train, y_train, x_test, y_test) -> float:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    centroids = np.stack([x_train[y_train == k].mean(0) for k in np.unique(y_train)])
    pred = np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((pred == y_test).mean())


def test_class_is_learnable_from_appearance_and_from_motion(tmp_path):
    """6 classes (chance 1/6): centroids from seed-0 videos classify seed-1 videos (new backgrounds,
    positions, speeds, colour jitter, distractors) from colour alone, from motion alone, and from both."""
    sets = {}
    for seed in (0, 1):
        cfg = SynthConfig(classes=6, per_class=3, seconds=2.0, width=96, height=72, fps=30, seed=seed)
        paths = synthesize(tmp_path / str(seed), cfg)
        frames = [decode(p, step=2) for p in paths]
        labels = np.array([[class_spec(k).name for k in range(6)].index(p.parent.name) for p in paths])
        sets[seed] = (np.stack([_appearance(f) for f in frames]), np.stack([_motion(f) for f in frames]), labels)
    (a0, m0, y0), (a1, m1, y1) = sets[0], sets[1]
    appearance = _nearest_centroid_accuracy(a0, y0, a1, y1)
    motion = _nearest_centroid_accuracy(m0, y0, m1, y1)
    both = _nearest_centroid_accuracy(np.hstack([a0, m0]), y0, np.hstack([a1, m1]), y1)
    assert appearance >= 0.5, appearance
    assert motion >= 0.5, motion
    assert both >= 0.75, both


def test_fps_fraction_and_frame_count(tmp_path):
    """NTSC rates stay exact rationals; frame count is round(seconds * fps)."""
    (path,) = synthesize(tmp_path, SynthConfig(classes=1, per_class=1, seconds=1.0, width=64, height=48,
                                               fps=30000 / 1001))
    info = probe(path)
    assert info["rate"] == Fraction(30000, 1001)
    assert info["frames"] == 30


# --- cameras and ground-truth object boxes (rhovid synth --camera, --boxes) ---------------------------------------


def test_ground_truth_boxes_round_trip_and_bound_the_objects(tmp_path):
    """Written with the video, read back as written; every box bounds its object's pixels in the
    decoded video (the objects are the saturated pixels, the background is not)."""
    from rhovid.ingest.synth import BOX_COLUMNS, read_synth_boxes
    from rhovid.ingest.synth_scene import object_boxes

    cfg = SynthConfig(classes=2, per_class=1, seconds=1.0, width=128, height=96, max_distractors=3, segment_s=0.5,
                      camera="pan")
    paths = synthesize(tmp_path / "src", cfg, boxes=tmp_path / "gt")
    for path, task in zip(paths, video_names(cfg)):
        gt_file = tmp_path / "gt" / path.relative_to(tmp_path / "src").with_suffix(".json")
        d = read_synth_boxes(gt_file)
        assert (d["format"], d["video"], d["width"], d["height"], d["num_frames"], d["fps"], d["camera"]) == (
            "rhovid-synth-boxes/1", path.name, 128, 96, 30, 30.0, "pan")
        assert d["columns"] == list(BOX_COLUMNS) and d["boxes"].dtype == np.int64 and d["boxes"].shape[1] == 7
        assert json.loads(gt_file.read_text())["boxes"] == d["boxes"].tolist()  # the file is what was read
        # the same rows as the id map of a fresh render (content is a pure function of time)
        scene = Scene(class_spec(task.class_index), cfg.seed, task.index, 128, 96, cfg.max_objects,
                      cfg.max_distractors, cfg.segment_s, cfg.camera, cfg.pan_speed)
        owner = np.empty((30, 96, 128), np.int32)
        scene.render(frame_times(30, 30.0), owner=owner)
        assert [tuple(r) for r in d["boxes"].tolist()] == [tuple(int(v) for v in r) for r in object_boxes(owner)]
        ids = {o["id"]: o for o in d["objects"]}
        assert set(d["boxes"][:, 1]) <= set(ids) and {o["segment"] for o in d["objects"] if o["kind"] == "distractor"} <= {0, 1}
        assert sum(o["kind"] == "class" for o in d["objects"]) >= 1
        frames = decode(path)
        sat = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1] for f in frames])
        for f, oid, x0, y0, x1, y1, pixels in d["boxes"]:
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96 and 0 < pixels <= (x1 - x0) * (y1 - y0)
            if ids[oid]["kind"] == "class" and pixels > 200:  # class objects are saturated (v >= 0.7 s)
                assert sat[f, y0:y1, x0:x1].mean() > sat[f].mean()
    with pytest.raises(ValueError, match="not a rhovid-synth-boxes/1 file"):
        (tmp_path / "bad.json").write_text('{"format": "other"}')
        read_synth_boxes(tmp_path / "bad.json")


def test_boxes_are_written_on_rerun_when_missing(tmp_path):
    cfg = SynthConfig(classes=1, per_class=1, seconds=0.5, width=64, height=48)
    (video,) = synthesize(tmp_path / "src", cfg)
    stamp = video.stat().st_mtime_ns
    synthesize(tmp_path / "src", cfg)
    assert video.stat().st_mtime_ns == stamp
    synthesize(tmp_path / "src", cfg, boxes=tmp_path / "gt")  # the box file is missing: redone
    gt = tmp_path / "gt" / video.parent.name / f"{video.stem}.json"
    assert gt.is_file() and video.stat().st_mtime_ns != stamp
    stamp = video.stat().st_mtime_ns
    synthesize(tmp_path / "src", cfg, boxes=tmp_path / "gt")  # both current: kept
    assert video.stat().st_mtime_ns == stamp


def test_static_camera_keeps_the_background_still_and_pan_moves_it():
    t = frame_times(20, 30.0)
    owners = {}
    frames = {}
    for camera in ("static", "pan", "random"):
        owner = np.empty((20, 96, 128), np.int32)
        frames[camera] = Scene(class_spec(0), 0, 0, 128, 96, camera=camera).render(t, owner=owner).astype(int)
        owners[camera] = owner
    np.testing.assert_array_equal(owners["static"], owners["pan"])  # objects move the same way in both
    bg = (owners["static"][1:] < 0) & (owners["static"][:-1] < 0)
    step = lambda f: np.abs(np.diff(f, axis=0)).max(-1)[bg]  # noqa: E731
    assert step(frames["static"]).max() == 0  # nothing moves but the objects
    assert (step(frames["pan"]) > 0).mean() > 0.9  # 60 px/s at 120 px: the whole background moves
    default = Scene(class_spec(0), 0, 0, 128, 96).render(t)
    np.testing.assert_array_equal(frames["random"], default)  # the default scenes are unchanged


def test_camera_in_file_tag_only_when_not_the_default():
    base = video_names(SynthConfig(classes=1, per_class=1))[0]
    assert _tag(base) == _tag(video_names(SynthConfig(classes=1, per_class=1, camera="random", pan_speed=5))[0])
    static = video_names(SynthConfig(classes=1, per_class=1, camera="static"))[0]
    pan = video_names(SynthConfig(classes=1, per_class=1, camera="pan"))[0]
    faster = video_names(SynthConfig(classes=1, per_class=1, camera="pan", pan_speed=90))[0]
    assert len({_tag(base), _tag(static), _tag(pan), _tag(faster)}) == 4
    with pytest.raises(ValueError, match="unknown camera"):
        SynthConfig(camera="dolly")


def test_cli_boxes_dir_must_be_outside_the_tree(tmp_path, capsys):
    out = tmp_path / "src"
    assert cli_main(["synth", str(out), "--boxes", str(out / "gt"), "--classes", "1", "--per-class", "1",
                     "--seconds", "0.2", "--no-progress"]) == 1
    assert "is inside OUT" in capsys.readouterr().err and not out.exists()
    assert cli_main(["synth", str(out), "--boxes", str(tmp_path / "gt"), "--classes", "1", "--per-class", "1",
                     "--seconds", "0.2", "--width", "64", "--height", "48", "--camera", "static", "--no-progress"]) == 0
    assert "ground-truth object boxes in" in capsys.readouterr().out
    assert len(list((tmp_path / "gt").rglob("*.json"))) == 1
