"""``rhovid ingest --verify`` names every hostile shard and sample a reader would trip on, in
bounded time and memory (issue 13, items 6, 9 and 11). Each case damages one copy of a real
DATA (real ffmpeg output, real tars) and runs the real command in a process of its own under a
3 GiB address-space limit, timing it and reading its peak memory.

Before: "0 problems" for fps 0 / infinite and a label of 2**70, nothing for a tar cut exactly
at a member boundary, and a 1 KB MP4 whose trun declares 2**32 - 1 samples made it grow by
~90 MB/s without end.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time

import pytest
from hostile_media import claim_size, edit_sample, huge_trun, member_spans, tar_members
from process_tree import run_measured

from rhovid.ingest.reader import list_shards

LIMIT_S = 60.0
"""Wall-clock bound of one verify run (a clean one takes ~3 s here, mostly imports)."""
ADDRESS_SPACE = 3 << 30


def _data(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns("boxes.zarr", "features.zarr"))
    return data, list_shards(data)[0]


def _set_fps_inf(m):
    m["fps"] = float("inf")  # json.dumps writes Infinity, which Python's json reads back


def _cut_in_second_json(shard):
    _, _, start, size = member_spans(shard)[2]  # sample 1's json payload
    shard.write_bytes(shard.read_bytes()[: start + size // 2])


def _cut_after_last_member(shard):
    name, _, start, size = member_spans(shard)[-1]
    shard.write_bytes(shard.read_bytes()[: start + -(-size // 512) * 512])  # the payload's padding, no end marker


def _huge_trun_sample(shard):
    mp4 = huge_trun(tar_members(shard)[1][1])
    edit_sample(shard, 0, meta=lambda m: m.update(num_frames=16, fragments=[[m["init_size"], 0, 16]]), mp4=mp4)


CASES = {  # name -> (damage to the first shard, text the report must hold)
    "fps 0": (lambda s: edit_sample(s, 0, meta=lambda m: m.update(fps=0)), "fps 0: not a finite number"),
    "fps inf": (lambda s: edit_sample(s, 0, meta=_set_fps_inf), "fps inf: not a finite number"),
    "label 2**70": (lambda s: edit_sample(s, 0, meta=lambda m: m.update(label=2**70)),
                    "label 1180591620717411303424: not null or an int"),
    "label nested": (lambda s: edit_sample(s, 0, meta=lambda m: m.update(label=[[[[1]]]])),
                     "label [[[[1]]]]: not null or an int"),
    "json nested 10^5 deep": (lambda s: edit_sample(s, 0, json_bytes=b"[" * 100_000 + b"]" * 100_000),
                              "invalid JSON (RecursionError"),
    "json not an object": (lambda s: edit_sample(s, 0, json_bytes=b"[1, 2]"), "not a JSON object"),
    "num_frames 1e9": (lambda s: edit_sample(s, 0, meta=lambda m: m.update(num_frames=10**9)),
                       "num_frames 1000000000: not an int"),
    "fragments outside the mp4": (lambda s: edit_sample(s, 0, meta=lambda m: m["fragments"][-1].__setitem__(0, 10**12)),
                                  "fragments [["),
    "trun of 2**32-1 samples": (_huge_trun_sample, "declares 4294967295 samples"),
    "tar cut inside a json member": (_cut_in_second_json, "past the end of the file"),
    "tar cut at a member boundary": (_cut_after_last_member, "no end-of-archive marker"),
    "0-byte tar": (lambda s: s.write_bytes(b""), "unreadable tar (ReadError: empty file)"),
    "member claiming 10^12 bytes": (lambda s: claim_size(s, 1, 10**12), "claims 1000000000000 bytes"),
}


def _verify(data) -> tuple[int, str, float, float]:
    """``rhovid ingest --verify`` in its own process: (exit status, stderr, seconds, peak RSS GiB)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    t0 = time.monotonic()
    rc, _, err, peak_gib = run_measured([sys.executable, "-m", "rhovid.cli", "ingest", "--verify", "--out", str(data),
                                         "--no-progress"], LIMIT_S, preexec_fn=limit)
    return rc, err, time.monotonic() - t0, peak_gib


@pytest.mark.parametrize("case", list(CASES))
def test_verify_names_the_damage_in_bounded_time_and_memory(tiny_data, tmp_path, case):
    damage, expected = CASES[case]
    data, shard = _data(tiny_data, tmp_path)
    damage(shard)
    rc, err, seconds, _ = _verify(data)
    assert rc == 1, err
    assert expected in err and shard.name in err, err
    assert "Traceback" not in err
    assert seconds < LIMIT_S


def test_verify_memory_on_the_huge_trun_stays_small(tiny_data, tmp_path):
    """The peak memory of all child processes so far, after a verify of the 1 KB trun sample."""
    data, shard = _data(tiny_data, tmp_path)
    _huge_trun_sample(shard)
    assert os.path.getsize(shard) < 200_000
    rc, err, _, peak_gib = _verify(data)
    assert rc == 1 and "declares 4294967295 samples" in err, err
    assert 0.01 < peak_gib < 1.0, f"peak RSS {peak_gib:.2f} GiB"  # > 0.01: the measure is of a real process
