"""Split-file parsing on the official formats of UCF101, HMDB51 and Kinetics-400.

The fixture files reproduce the distributed files byte for byte in form: UCF101's lists use
CRLF line ends, HMDB51's per-class files end lines with a space, Kinetics quotes labels
that contain commas.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rhovid.ingest.datasets import dataset_sources, hmdb51_sources, kinetics_sources, safe_key, ucf101_sources


def _write(path: Path, lines: list[str], eol: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(eol.join(lines).encode() + eol.encode())
    return path


@pytest.fixture
def ucf(tmp_path):
    splits = tmp_path / "ucfTrainTestlist"
    _write(splits / "classInd.txt", ["1 ApplyEyeMakeup", "2 ApplyLipstick", "3 HandstandPushups"], "\r\n")
    _write(
        splits / "trainlist01.txt",
        [
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
            "ApplyLipstick/v_ApplyLipstick_g08_c02.avi 2",
            "HandstandPushups/v_HandStandPushups_g08_c01.avi 3",
        ],
        "\r\n",
    )
    _write(
        splits / "testlist01.txt",
        ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "HandstandPushups/v_HandStandPushups_g01_c01.avi"],
        "\r\n",
    )
    return tmp_path / "UCF-101", splits


def test_ucf101_split1(ucf):
    videos, splits = ucf
    srcs = ucf101_sources(videos, splits, fold=1)
    assert [(s.split, s.label, s.label_name, s.key) for s in srcs] == [
        ("train", 0, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01"),
        ("train", 1, "ApplyLipstick", "v_ApplyLipstick_g08_c02"),
        ("train", 2, "HandstandPushups", "v_HandStandPushups_g08_c01"),
        ("test", 0, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01"),
        ("test", 2, "HandstandPushups", "v_HandStandPushups_g01_c01"),
    ]
    assert srcs[0].path == str(videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    assert dataset_sources("ucf101", videos, splits, 1) == srcs


def test_ucf101_rejects_inconsistent_label(ucf):
    videos, splits = ucf
    _write(splits / "trainlist02.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2"])
    _write(splits / "testlist02.txt", [])
    with pytest.raises(ValueError, match="trainlist02.txt:1"):
        ucf101_sources(videos, splits, fold=2)


def test_ucf101_missing_split_file_names_it(ucf):
    videos, splits = ucf
    with pytest.raises(FileNotFoundError, match="trainlist03.txt"):
        ucf101_sources(videos, splits, fold=3)


def test_hmdb51_codes(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    _write(
        splits / "brush_hair_test_split1.txt",
        [
            "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 ",
            "April_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 ",
            "April_09_brush_hair_u_nm_np1_ba_goo_2.avi 0 ",
        ],
    )
    _write(
        splits / "clap_test_split1.txt",
        ["#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 2 ", "Hand_Clap_1.0_clap_f_nm_np1_fr_med_0.avi 1 "],
    )
    _write(splits / "clap_test_split2.txt", ["#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 1 "])
    srcs = hmdb51_sources(tmp_path / "hmdb51", splits, fold=1)
    assert [(s.split, s.label, s.label_name) for s in srcs] == [
        ("train", 0, "brush_hair"),
        ("test", 0, "brush_hair"),
        ("test", 1, "clap"),
        ("train", 1, "clap"),
    ]
    assert srcs[2].path == str(tmp_path / "hmdb51" / "clap" / "#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi")
    assert srcs[2].key == "_20_Rhythm_clap_u_nm_np1_fr_goo_0"
    assert srcs[3].key == "Hand_Clap_1_0_clap_f_nm_np1_fr_med_0"  # no '.' in keys
    # Split 2 only has one class file here: labels follow that split's classes.
    assert [(s.split, s.label_name) for s in hmdb51_sources(tmp_path / "hmdb51", splits, fold=2)] == [
        ("train", "clap")
    ]


def test_hmdb51_bad_code(tmp_path):
    _write(tmp_path / "s" / "run_test_split1.txt", ["a.avi 3 "])
    with pytest.raises(ValueError, match="run_test_split1.txt:1"):
        hmdb51_sources(tmp_path, tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        hmdb51_sources(tmp_path, tmp_path / "s", fold=3)


def test_kinetics_validate_csv(tmp_path):
    csv_path = _write(
        tmp_path / "validate.csv",
        [
            "label,youtube_id,time_start,time_end,split",
            "abseiling,0wR5jVB-WPk,417,427,validate",
            '"passing American football (in game)",--07WQ2iBlw,1,11,val',
            "zumba,-0ZPP4hwy1s,30,40,val",
        ],
    )
    videos = tmp_path / "k400"
    clip = videos / "abseiling" / "0wR5jVB-WPk_000417_000427.mp4"  # ActivityNet crawler layout
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"")
    full = videos / "-0ZPP4hwy1s.mkv"
    full.write_bytes(b"")
    srcs = kinetics_sources(csv_path, videos)
    assert [s.label for s in srcs] == [0, 1, 2]  # alphabetical class order
    assert all(s.split == "val" for s in srcs)
    assert srcs[0].path == str(clip) and srcs[0].trim is None
    assert srcs[0].key == "0wR5jVB-WPk_000417_000427"
    # absent video: a path that does not exist, so ingest reports it in failed.jsonl
    assert not Path(srcs[1].path).exists() and "--07WQ2iBlw_000001_000011" in srcs[1].path
    assert srcs[1].label_name == "passing American football (in game)"
    # full-length download: trimmed by ingest
    assert srcs[2].path == str(full) and srcs[2].trim == (30.0, 40.0)
    with pytest.raises(ValueError, match="not in the class list"):
        kinetics_sources(csv_path, videos, classes=["abseiling"])


def test_unknown_dataset():
    with pytest.raises(KeyError, match="ucf101"):
        dataset_sources("ucf102", ".", ".")
    assert safe_key("a.b#c-d_e") == "a_b_c-d_e"


def test_ucf101_and_hmdb51_ingest_cli_split_field(tmp_path):
    """Official split files -> `rhovid ingest --dataset` -> shards whose split/label fields follow them."""
    import shutil

    from rhovid.cli import main
    from rhovid.ingest.reader import read_index
    from rhovid.ingest.synth import SynthConfig, synthesize

    made = synthesize(tmp_path / "synth", SynthConfig(classes=2, per_class=2, seconds=1.0, width=64, height=48))
    # UCF101 layout: UCF-101/<Class>/v_<Class>_gGG_cCC.avi (any container ffmpeg reads)
    names = ["v_ApplyEyeMakeup_g08_c01", "v_ApplyEyeMakeup_g01_c01", "v_HandStandPushups_g08_c01",
             "v_HandStandPushups_g01_c01"]
    videos = tmp_path / "UCF-101"
    for src, name in zip(sorted(made), names):
        folder = "ApplyEyeMakeup" if "Apply" in name else "HandstandPushups"
        (videos / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, videos / folder / f"{name}.avi")
    splits = tmp_path / "ucfTrainTestlist"
    _write(splits / "classInd.txt", ["1 ApplyEyeMakeup", "2 HandstandPushups"], "\r\n")
    _write(splits / "trainlist01.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
                                        "HandstandPushups/v_HandStandPushups_g08_c01.avi 2"], "\r\n")
    _write(splits / "testlist01.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                       "HandstandPushups/v_HandStandPushups_g01_c01.avi"], "\r\n")
    data = tmp_path / "ucf"
    assert main(["ingest", str(videos), "--dataset", "ucf101", "--splits", str(splits), "--out", str(data),
                 "--short-side", "48", "--workers", "0", "--no-progress"]) == 0
    got = sorted((e["split"], e["label"], e["label_name"], e["key"]) for e in read_index(data))
    assert got == [("test", 0, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01"),
                   ("test", 1, "HandstandPushups", "v_HandStandPushups_g01_c01"),
                   ("train", 0, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01"),
                   ("train", 1, "HandstandPushups", "v_HandStandPushups_g08_c01")]
    assert sorted(p.name for p in (data / "shards").glob("*.tar")) == ["test-000000.tar", "train-000000.tar"]
    # HMDB51: code 0 videos stay out of the shards
    hmdb = tmp_path / "hmdb51"
    (hmdb / "clap").mkdir(parents=True)
    for src, name in zip(sorted(made)[:3], ["a", "b", "c"]):
        shutil.copy(src, hmdb / "clap" / f"{name}.avi")
    _write(tmp_path / "hs" / "clap_test_split1.txt", ["a.avi 1 ", "b.avi 2 ", "c.avi 0 "])
    assert main(["ingest", str(hmdb), "--dataset", "hmdb51", "--splits", str(tmp_path / "hs"), "--out",
                 str(tmp_path / "h"), "--short-side", "48", "--workers", "0", "--no-progress"]) == 0
    assert sorted((e["key"], e["split"]) for e in read_index(tmp_path / "h")) == [("a", "train"), ("b", "test")]
    assert main(["ingest", str(hmdb), "--dataset", "hmdb51", "--out", str(tmp_path / "x")]) == 1  # no --splits
