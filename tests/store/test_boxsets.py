"""Box-set names (parameter hashing), --param parsing, aliases and their error messages."""

from __future__ import annotations

import re

import pytest

from rhovid.store.boxsets import (
    box_set_name,
    make_params,
    parse_param_args,
    read_registry,
    register_set,
    resolve_set,
)


def name(method="slic", params=None, box_fps=2.0, max_boxes=16):
    return box_set_name(method, make_params(method, params), box_fps, max_boxes)


def test_same_params_same_name_and_changes_make_new_names():
    base = name()
    assert re.fullmatch(r"slic-[0-9a-f]{8}", base)
    assert name() == base
    assert name(params={"segments": "16"}) == base  # the default spelled out
    assert name(params={"ruler": 20}) == base  # typed value == parsed string
    changed = {
        name(params={"segments": "32"}),
        name(params={"ruler": "40"}),
        name(params={"impl": "skimage"}),
        name(params={"min_size": "8"}),
        name(box_fps=4.0),
        name(max_boxes=8),
        name("fh"),
    }
    assert base not in changed and len(changed) == 7


def test_runtime_fields_do_not_change_the_name():
    a = name("torchvision", {"weights": "/w.pt"})
    assert name("torchvision", {"weights": "/w.pt", "batch_size": "32", "device": "cpu"}) == a
    assert name("torchvision", {"weights": "/other.pt"}) != a


def test_param_errors_name_the_input():
    assert parse_param_args(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError, match=r"--param 'segments': expected KEY=VALUE"):
        parse_param_args(["segments"])
    with pytest.raises(ValueError, match=r"method slic has no parameter 'regionsize'; valid: .*segments"):
        make_params("slic", {"regionsize": "3"})
    with pytest.raises(ValueError, match=r"--param segments=big: method slic expects int"):
        make_params("slic", {"segments": "big"})
    with pytest.raises(ValueError, match=r"--param for method slic: slic impl must be 'opencv' or 'skimage'"):
        make_params("slic", {"impl": "cuda"})
    with pytest.raises(ValueError, match=r"--param for method fh: max_area must be in \(0, 1\]"):
        make_params("fh", {"max_area": "1.5"})
    with pytest.raises(ValueError, match=r"unknown box method 'sift'; known methods: slic, fh, hog, motion"):
        make_params("sift")


def test_aliases_resolve_and_conflicts_are_refused(tmp_path):
    reg = read_registry(tmp_path)
    assert reg == {"sets": {}, "aliases": {}}
    with pytest.raises(KeyError, match=r"unknown box set 'slic'; available: none"):
        resolve_set(reg, "slic")
    a, b = name(), name(params={"segments": "32"})
    register_set(tmp_path, a, {"method": "slic"}, alias="superpixels")
    reg = read_registry(tmp_path)
    assert resolve_set(reg, "superpixels") == a == resolve_set(reg, a)
    assert resolve_set(reg, "slic") == a  # the only slic set
    register_set(tmp_path, b, {"method": "slic"})
    reg = read_registry(tmp_path)
    with pytest.raises(
        KeyError, match=rf"method 'slic' has 2 box sets; name one; available: .*{b}.*superpixels \(-> {a}\)"
    ):
        resolve_set(reg, "slic")
    with pytest.raises(KeyError, match=rf"unknown box set 'nope'; available: {min(a, b)}, {max(a, b)}"):
        resolve_set(reg, "nope")
    with pytest.raises(ValueError, match=rf"--name superpixels: alias already names box set {a}"):
        register_set(tmp_path, b, {"method": "slic"}, alias="superpixels")
    with pytest.raises(ValueError, match="--name .*: that is the name of another box set"):
        register_set(tmp_path, b, {"method": "slic"}, alias=a)
    register_set(tmp_path, a, {"method": "slic"}, alias="superpixels")  # same alias, same set: fine
    assert read_registry(tmp_path)["aliases"] == {"superpixels": a}


def test_unavailable_detectors_say_where_they_run(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"0")
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match=r"torchvision is not importable here .*runs where it imports"):
            make_params("torchvision", {"weights": str(weights)}).check_runtime()
    else:
        with pytest.raises(FileNotFoundError, match="torchvision weights /missing.pt: no such file"):
            make_params("torchvision", {"weights": "/missing.pt"}).check_runtime()
    try:
        import detectron2  # noqa: F401
    except Exception:
        with pytest.raises(
            ImportError, match=r"detectron2 is not installed here .*runs where it is installed"
        ):
            make_params("detectron2", {"config": str(weights), "weights": str(weights)}).check_runtime()
    else:
        with pytest.raises(ValueError, match="needs --param config=PATH"):
            make_params("detectron2").check_runtime()
