"""Prior parameters (names, attributes, --help from their dataclasses) and camera-motion compensation."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from rhovid.cli import main
from rhovid.config import field_docs
from rhovid.ffmpeg import ffmpeg_exe
from rhovid.ingest.reader import list_shards, shard_name
from rhovid.store.boxsets import box_set_name, make_params, param_text, params_dict, read_registry
from rhovid.store.compute import compute_box_set
from rhovid.store.priors import METHODS
from rhovid.store.priors.camera_motion import align_previous, estimate_camera_motion
from rhovid.store.priors.motion import decode_motion_vectors, motion_boxes, motion_mask, reference_gap
from rhovid.store.zarr_store import BoxStore, store_root

# one valid non-default value per parameter a test changes (the rest keep their defaults)
CHANGES = {
    "slic": {"segments": 40, "ruler": 5.0, "algorithm": "slico", "min_frac": 0.1, "nms_iou": 0.7},
    "fh": {"scales": (500.0,), "sigma": 0.5, "segment_min_size": 100, "max_frac": 0.8},
    "hog": {"detector": "default", "min_side": 640, "scale": 1.1, "hit_threshold": 0.0, "group": 2, "trim": False},
    "motion": {"compensate": "none", "gap": 2, "threshold": 20.0, "dilate": 3, "source": "mv"},
    "torchvision": {"weights": "/w.pt", "score_min": 0.7, "classes": "all"},
    "detectron2": {"weights": "/w.pt", "config": "/c.yaml", "score_min": 0.3},
}


@pytest.mark.parametrize("method", list(METHODS))
def test_params_round_trip_through_their_json_and_every_change_is_a_new_name(method):
    cls, _ = METHODS[method]
    default = make_params(method)
    base = box_set_name(method, default, 2.0, 16)
    # what sets.json and the group attributes hold (JSON: tuples become lists) builds the same params
    for stored in (params_dict(default), json.loads(json.dumps(params_dict(default)))):
        assert make_params(method, stored) == default
    # --param strings (what `--list` and the missing-shard command print) parse back to the same values
    text = {f.name: param_text(getattr(default, f.name)) for f in dataclasses.fields(cls)}
    assert make_params(method, text) == default
    names = {base}
    for key, value in CHANGES[method].items():
        p = make_params(method, {key: value})
        assert getattr(p, key) == value and p != default
        assert make_params(method, json.loads(json.dumps(params_dict(p)))) == p
        names.add(box_set_name(method, p, 2.0, 16))
    assert len(names) == 1 + len(CHANGES[method])  # each parameter is part of the name


def test_stored_attributes_rebuild_the_set_name(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr"))
    report = compute_box_set(data, "fh", {"scales": "600,1200", "nms_iou": "0.6"}, max_boxes=6, progress=False)
    shard = shard_name(list_shards(data)[0])
    attrs = BoxStore(data).attrs(shard, report.set_name)
    assert attrs["set"] == report.set_name and attrs["params"]["scales"] == [600.0, 1200.0]
    rebuilt = make_params(attrs["method"], attrs["params"])
    assert rebuilt.scales == (600.0, 1200.0) and rebuilt.nms_iou == 0.6
    assert box_set_name(attrs["method"], rebuilt, attrs["box_fps"], attrs["max_boxes"]) == report.set_name
    assert read_registry(store_root(data))["sets"][report.set_name]["params_hashed"] == attrs["params_hashed"]


def test_help_lists_every_parameter_of_every_prior_from_the_dataclasses(capsys):
    with pytest.raises(SystemExit) as e:
        main(["boxes", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for method, (cls, _) in METHODS.items():
        section = text.split(f"\n{method}: ", 1)[1].split("\n\n", 1)[0]
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            line = next(x for x in section.splitlines() if x.strip().startswith(f"{f.name}="))
            assert f"{f.name}={param_text(f.default)}" in line and docs[f.name] and docs[f.name] in line
            assert ("[runtime]" in line) == (f.metadata.get("hash") is False)
    with pytest.raises(SystemExit):
        main(["boxes", "--method", "hog", "--help"])
    only = capsys.readouterr().out
    assert "\nhog: " in only and "detector=daimler" in only and "\nslic: " not in only and "segments=" not in only


def test_field_docs_reads_the_docstring_under_each_field():
    @dataclasses.dataclass(frozen=True)
    class Base:
        a: int = 1
        """The a."""

    @dataclasses.dataclass(frozen=True)
    class Child(Base):
        a: int = 2  # redeclared default: the doc stays the base's
        b: str = "x"
        """The b,
        on two lines."""
        c: float = 0.0

    assert field_docs(Child) == {"a": "The a.", "b": "The b, on two lines.", "c": ""}


def _texture(h=200, w=260, seed=0):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
    img = cv2.resize(blocks, (w + 16, h + 16), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(img, (5, 5), 0)


@pytest.mark.parametrize("model", ["affine", "homography"])
def test_camera_motion_compensation_recovers_a_known_pan(model):
    """The camera pans by (+6, -4) px: the estimate is that translation, and after alignment
    a pure pan leaves nothing moving while an object that moves on its own is still found."""
    big = _texture()
    dx, dy = 6, -4
    previous = np.ascontiguousarray(big[8:208, 8:268])  # (200, 260) window
    frame = np.ascontiguousarray(big[8 - dy : 208 - dy, 8 - dx : 268 - dx])  # content moves +dx, +dy
    gray = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)  # noqa: E731
    m = estimate_camera_motion(gray(frame), gray(previous), model)
    assert m is not None
    np.testing.assert_allclose(m[:2, 2], [dx, dy], atol=0.3)
    np.testing.assert_allclose(m[:2, :2], np.eye(2), atol=0.01)
    aligned, covered = align_previous(gray(previous), m)
    assert covered is not None and 0.9 < covered.mean() < 0.97  # the strip the pan uncovered is excluded
    assert np.abs(aligned.astype(int) - gray(frame).astype(int))[covered].mean() < 2.0
    p_on, p_off = make_params("motion", {"compensate": model}), make_params("motion", {"compensate": "none"})
    assert motion_mask(frame, previous, p_on).mean() < 0.005  # nothing moves in the scene
    assert motion_mask(frame, previous, p_off).mean() > 0.3  # without compensation: every edge
    moving = frame.copy()
    moving[80:120, 100:140] = 255  # a white square that is not where the pan would put anything
    ((boxes, _),) = motion_boxes(moving[None], p_on, previous=previous[None])
    assert len(boxes) >= 1
    x0, y0, x1, y1 = boxes[0]
    assert abs(x0 - 100) <= 3 and abs(y0 - 80) <= 3 and abs(x1 - 140) <= 3 and abs(y1 - 120) <= 3


def test_static_camera_is_compared_unaligned():
    frame = _texture()[:200, :260]
    m = estimate_camera_motion(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
    assert m is not None and np.abs(m - np.eye(3)).max() < 1e-3
    same, covered = align_previous(frame, m)
    assert covered is None and same is frame  # below STATIC_PX: exactly the plain difference
    blank = np.zeros((100, 120), np.uint8)
    assert estimate_camera_motion(blank, blank) is None  # no corners: no estimate


def test_motion_gap_counts_source_frames():
    meta = {"fps": 30.0, "source_info": {"fps": 10.0}}
    assert reference_gap(meta, 1) == 3 and reference_gap(meta, 2) == 6  # 10 fps shown 3x at 30
    assert reference_gap({"fps": 30.0, "source_info": {"fps": 12.0}}, 1) == 3  # 2.5 repeats -> 3
    assert reference_gap({"fps": 30.0, "source_info": {"fps": 30.0}}, 1) == 1
    assert reference_gap({"fps": 30.0}, 1) == 1  # unknown source rate


def test_motion_vector_compensation_removes_a_pan_and_keeps_a_moving_object():
    """A real H.264 encode of a texture panning 4 px per frame with a white square moving
    8 px per frame across it: raw motion vectors move everywhere; minus the median vector,
    only the square moves."""
    h, w, n = 240, 320, 12
    big = _texture(h + 80, w + 4 * n, seed=1)
    frames = np.ascontiguousarray(np.stack([big[40 : 40 + h, 4 * i : 4 * i + w] for i in range(n)]))
    for i in range(n):
        frames[i, 100:140, 60 + 8 * i : 100 + 8 * i] = 255
    argv = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w}x{h}", "-framerate", "30", "-i", "-", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-bf", "0", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov", "-"]
    mp4 = subprocess.run(argv, input=frames.tobytes(), capture_output=True, check=True).stdout
    idx = np.arange(1, n)  # frame 0 is the I-frame
    _, raw = decode_motion_vectors(mp4, idx)
    _, comp = decode_motion_vectors(mp4, idx, compensate=True)
    assert np.median(raw) == pytest.approx(4.0, abs=0.5) and (raw > 0.5).mean() > 0.9  # the pan everywhere
    square = np.zeros(raw.shape[1:], bool)
    square[96 // 8 : 144 // 8, 60 // 8 : (100 + 8 * n) // 8 + 1] = True  # the cells the square crosses
    assert (comp[:, ~square] > 0.5).mean() < 0.02  # the scene is still once the camera is removed
    assert (comp[:, square].max(axis=1) > 4).all()  # the square moves 12 px per frame relative to it
