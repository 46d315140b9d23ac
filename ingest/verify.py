"""Check a DATA folder against its format (ingest/FORMAT.md) before training on it.

A dataset is built once and then copied between disks, machines and clusters; a cut-off copy
or a hand-edited index shows up at training time as skipped samples or a DALI reader error.
``verify`` reads every shard once and reports, per shard and sample, what does not match:
an unreadable or cut-off tar (a member past the end of the file, no end-of-archive marker), a
``.idx`` that is not the tar's, a sample json that does not parse or whose contract fields a
reader cannot trust (``rhovid.ingest.contract``: fps 0 or infinite, a label of 2**70, a
fragment table outside the mp4, ...), a fragment table that disagrees with the MP4's boxes,
index.json rows without their sample (or samples
index.json does not list). With ``decode`` it also decodes each sample's first and last
frame with the loader's decoder. Work is bounded by the bytes read: every count in a tar
header, a json or an MP4 box is checked against the bytes that hold it first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from rhovid.ingest.contract import sample_problems
from rhovid.ingest.fmp4 import parse_fragments
from rhovid.ingest.shards import idx_text, iter_shard_lazy, list_shards, read_index


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(data: str | os.PathLike, decode: bool = False, progress: bool = True) -> VerifyReport:
    """Check every shard, sample and index row of ``data``; see the module docstring.

    Raises:
        FileNotFoundError: ``data`` has no shards or no index.json.
    """
    data = Path(data)
    paths = list_shards(data)
    if not paths:
        raise FileNotFoundError(f"{data}: no shards under {data / 'shards'}")
    listed = {e["key"]: e for e in read_index(data)}
    report = VerifyReport(shards=len(paths))
    seen: set[str] = set()
    for path in tqdm(paths, desc="verify", unit="shard", disable=not progress, dynamic_ncols=True):
        name = path.name
        try:
            expected = idx_text(path)
        except Exception as e:  # noqa: BLE001 - a broken tar is a finding, not a crash
            report.problems.append(f"{name}: unreadable tar ({type(e).__name__}: {e})")
            expected = None  # the samples before the damage are still checked below
        idx = path.with_suffix(".idx")
        if expected is None:
            pass
        elif not idx.exists():
            report.problems.append(f"{idx.name}: missing (DALI's reader needs it)")
        elif idx.read_text(encoding="utf-8") != expected:
            report.problems.append(f"{idx.name}: does not describe {name} (stale or damaged)")
        count = 0
        try:
            for sample in iter_shard_lazy(path, strict=True):
                count += 1
                key = sample["__key__"]
                seen.add(key)
                problems = _sample_problems(sample, name, listed, decode)
                report.problems += [f"{name}/{key}: {p}" for p in problems]
        except Exception as e:  # noqa: BLE001
            if expected is not None:  # else reported above
                report.problems.append(f"{name}: cut off after {count} samples ({type(e).__name__}: {e})")
        report.samples += count
    for key in sorted(listed.keys() - seen):
        report.problems.append(f"index.json: {key} is listed in {listed[key]['shard']} but no shard holds it")
    return report


def _sample_problems(sample: dict, shard: str, listed: dict, decode: bool) -> list[str]:
    key, meta, member = sample["__key__"], sample.get("json"), sample.get("mp4")
    if "error" in sample:
        return [sample["error"]]
    if meta is None or member is None:
        return ["json or mp4 member missing"]
    out = sample_problems(meta, len(member))
    if out:  # the fields below cannot be trusted
        return out
    if meta["key"] != key:
        out.append(f"json key {meta['key']!r} differs from the member name")
    mp4 = member.read()
    try:
        table = parse_fragments(mp4)
    except ValueError as e:
        return [*out, f"mp4 does not parse ({e})"]
    rows = [[f.byte_offset, f.first_frame, f.num_frames] for f in table.fragments]
    if rows != meta["fragments"] or table.init_size != meta["init_size"]:
        out.append("json fragment table differs from the mp4's")
    if table.num_frames != meta["num_frames"]:
        out.append(f"json num_frames {meta['num_frames']} but the mp4 has {table.num_frames} frames")
    entry = listed.get(key)
    if entry is None:
        out.append("not in index.json (the loader will not see it)")
    elif entry["shard"] != shard or entry["num_frames"] != meta["num_frames"]:
        out.append(f"index.json row ({entry['shard']}, {entry['num_frames']} frames) differs from the shard")
    if decode and not out:
        from rhovid.train.decode_pyav import decode_clips
        from rhovid.train.streaming import slice_clips

        try:
            decode_clips(slice_clips(mp4, meta, [[0], [meta["num_frames"] - 1]]))
        except Exception as e:  # noqa: BLE001
            out.append(f"does not decode ({type(e).__name__}: {e})")
    return out
