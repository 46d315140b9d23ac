"""Source specs: folder trees, Kinetics CSV (lookup + trimming), list files; through the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from rhovid.atomic import read_jsonl
from rhovid.cli import main
from rhovid.ingest.decode import decode_rgb
from rhovid.ingest.reader import iter_shard, list_shards, read_index
from rhovid.ingest.sources import Source, expand_specs, folder_sources, sample_key

CSV = """label,youtube_id,time_start,time_end,split
"juggling balls",untrim01,2,4,train
"juggling balls",clip0002,10,12,train
abseiling,clip0003,1,3,val
abseiling,missing99,0,10,val
"""


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory, encode_video):
    root = tmp_path_factory.mktemp("kinetics")
    videos = root / "videos"
    encode_video(videos / "untrim01.mp4", seconds=6.0)  # untrimmed: trimmed to [2, 4] at ingest
    encode_video(videos / "clip0002_000010_000012.mp4", seconds=2.0, pattern="mandelbrot")  # already a clip
    encode_video(videos / "abseiling" / "clip0003_000001_000003.mkv", seconds=2.0)  # under its label folder
    (root / "k.csv").write_text(CSV)
    (root / "list.txt").write_text(f"# uncurated\n\nvideos/untrim01.mp4\n{videos / 'abseiling' / 'clip0003_000001_000003.mkv'}\n")
    return root


def test_kinetics_csv_and_list_file_through_cli(kinetics, tmp_path, capsys):
    data = tmp_path / "data"
    argv = ["ingest", str(kinetics / "k.csv"), str(kinetics / "list.txt"), "--out", str(data),
            "--videos-root", str(kinetics / "videos"), "--split", "uncurated", "--short-side", "64",
            "--gop", "8", "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "ingested 5" in captured.out and "failed 1" in captured.out
    assert "missing99" in captured.err  # the summary names failed sources

    index = {e["key"]: e for e in read_index(data)}
    assert set(index) >= {"untrim01_000002_000004", "clip0002_000010_000012", "clip0003_000001_000003"}
    assert {p.name for p in list_shards(data)} == {"train-000000.tar", "val-000000.tar", "uncurated-000000.tar"}
    assert index["untrim01_000002_000004"]["num_frames"] == 60  # 6 s video trimmed to [2, 4]
    assert index["clip0002_000010_000012"]["num_frames"] == 60  # pre-trimmed clip kept whole
    assert index["clip0003_000001_000003"]["split"] == "val"
    labels = {e["label_name"]: e["label"] for e in index.values() if e["label_name"]}
    assert labels == {"abseiling": 0, "juggling balls": 1}
    unlabelled = [e for e in index.values() if e["split"] == "uncurated"]
    assert len(unlabelled) == 2 and all(e["label"] is None and e["label_name"] is None for e in unlabelled)
    (fail,) = read_jsonl(data / "failed.jsonl")
    assert "missing99" in fail["source"] and fail["reason"] == "file not found"

    # the trimmed sample shows the source's seconds 2..4: compare with the whole video from the list file
    samples = {s["__key__"]: s for p in list_shards(data) for s in iter_shard(p)}
    whole = next(s for s in samples.values() if s["json"]["source"].endswith("untrim01.mp4")
                 and s["json"]["trim"] is None)
    trimmed = samples["untrim01_000002_000004"]
    assert trimmed["json"]["trim"] == [2.0, 4.0] and whole["json"]["num_frames"] == 180
    a = decode_rgb(trimmed["mp4"], [0, 59]).astype(np.float32)
    b = decode_rgb(whole["mp4"], [60, 119, 0]).astype(np.float32)
    assert np.abs(a[0] - b[0]).mean() < 6 and np.abs(a[1] - b[1]).mean() < 6
    assert np.abs(a[0] - b[2]).mean() > 2 * np.abs(a[0] - b[0]).mean()


def test_folder_tree_labels_and_hidden_files(tmp_path):
    for rel in ("b/x.mp4", "a/sub/y.mkv", "top.mp4", ".hidden/z.mp4", "a/.DS_Store"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    got = {(s.path.rsplit("/", 1)[-1], s.label_name) for s in folder_sources(tmp_path)}
    assert got == {("x.mp4", "b"), ("y.mkv", "a"), ("top.mp4", None)}


def test_keys_stable_unique_and_spec_errors(tmp_path):
    s1 = Source(str(tmp_path / "a b.c.mp4"), label_name="x y")
    s2 = Source(str(tmp_path / "a b.c.mp4"), label_name="x y", trim=(1.0, 2.0))
    assert sample_key(s1) == sample_key(Source(s1.path, label_name="x y"))
    assert sample_key(s1) != sample_key(s2)
    assert "." not in sample_key(s1) and " " not in sample_key(s1)
    with pytest.raises(ValueError):
        sample_key(Source("v.mp4", key="bad.key"))
    with pytest.raises(FileNotFoundError, match="nope"):
        expand_specs([str(tmp_path / "nope")])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="youtube_id"):
        expand_specs([str(tmp_path / "bad.csv")])


def test_output_inside_the_source_tree_is_not_ingested(tmp_path, encode_video):
    from rhovid.ingest.pipeline import IngestConfig, ingest

    encode_video(tmp_path / "a" / "v.mp4", size="96x64", seconds=1.0)
    cfg = IngestConfig(short_side=64, gop=8, progress=False)
    first = ingest([str(tmp_path)], tmp_path / "data", cfg)
    again = ingest([str(tmp_path)], tmp_path / "data", cfg)
    assert (first.ingested, first.failed) == (1, 0)
    assert (again.ingested, again.skipped, again.failed) == (0, 1, 0)
