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

from rhovid import storage
from rhovid.errors import NotFoundError
from rhovid.ingest.contract import sample_problems
from rhovid.ingest.fmp4 import parse_fragments
from rhovid.ingest.manifest import build_manifest, iter_manifest_samples, manifest_bytes, manifest_name
from rhovid.ingest.reader import data_shards, local_copy, read_index
from rhovid.ingest.shards import idx_text
from rhovid.ranged import FetchStats, RangeFetcher


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    io: FetchStats = field(default_factory=FetchStats)
    """Reads of shards (remote ones downloaded whole), .idx files, manifests and a remote index.json."""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(data: str | os.PathLike, decode: bool = False, progress: bool = True) -> VerifyReport:
    """Check every shard, sample and index row of ``data``; see the module docstring.

    Raises:
        FileNotFoundError: ``data`` has no shards or no index.json.
    """
    urls = data_shards(data)
    if not urls:
        raise NotFoundError(f"{data}: no shards under {storage.join(data, 'shards')}")
    fetcher = RangeFetcher()
    listed = {e["key"]: e for e in read_index(data, fetcher)}
    report = VerifyReport(shards=len(urls), io=fetcher.stats)
    seen: set[str] = set()
    for url in tqdm(urls, desc="verify", unit="shard", disable=not progress, dynamic_ncols=True):
        with local_copy(url, fetcher) as path:  # a remote shard is read once, whole (one at a time on disk)
            name = storage.name(url)
            try:
                expected = idx_text(path)
            except Exception as e:  # noqa: BLE001 - a broken tar is a finding, not a crash
                report.problems.append(f"{name}: unreadable tar ({type(e).__name__}: {e})")
                expected = None  # the samples before the damage are still checked below
            if expected is not None:
                report.problems += _companion_problems(url, path, expected, fetcher)
            count = 0
            try:
                with open(path, "rb") as f:
                    for sample in iter_manifest_samples(f, path, strict=True):
                        count += 1
                        seen.add(sample.key)
                        problems = _sample_problems(sample, f, name, listed, decode)
                        report.problems += [f"{name}/{sample.key}: {p}" for p in problems]
            except Exception as e:  # noqa: BLE001
                if expected is not None:  # else reported above
                    report.problems.append(f"{name}: cut off after {count} samples ({type(e).__name__}: {e})")
            report.samples += count
    for key in sorted(listed.keys() - seen):
        report.problems.append(f"index.json: {key} is listed in {listed[key]['shard']} but no shard holds it")
    return report


def _companion_problems(url: str, path: Path, expected_idx: str, fetcher: RangeFetcher) -> list[str]:
    """The shard's ``.idx`` and manifest against its tar (local copy at ``path``)."""
    out = []
    idx, manifest = url[: -len(".tar")] + ".idx", manifest_name(url)
    try:
        if fetcher.get_all(idx).decode("utf-8") != expected_idx:
            out.append(f"{storage.name(idx)}: does not describe {storage.name(url)} (stale or damaged)")
    except FileNotFoundError:
        out.append(f"{storage.name(idx)}: missing (DALI's reader needs it)")
    try:
        if fetcher.get_all(manifest) != manifest_bytes(build_manifest(path)):
            out.append(f"{storage.name(manifest)}: does not describe {storage.name(url)} (stale or damaged)")
    except FileNotFoundError:
        if storage.is_remote(url):  # locally the reader walks the tar instead, at no extra cost
            out.append(f"{storage.name(manifest)}: missing (remote readers then pay one read per sample)")
    return out


def _sample_problems(sample, f, shard: str, listed: dict, decode: bool) -> list[str]:
    """Problems of one ``ManifestSample`` of the open shard file ``f``."""
    key, meta = sample.key, sample.meta
    if sample.error is not None:
        return [sample.error]
    if meta is None or "mp4" not in sample.members:
        return ["json or mp4 member missing"]
    offset, size = sample.members["mp4"]
    out = sample_problems(meta, size)
    if out:  # the fields below cannot be trusted
        return out
    if meta["key"] != key:
        out.append(f"json key {meta['key']!r} differs from the member name")
    f.seek(offset)
    mp4 = f.read(size)  # inside the file: member_groups checked it
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
        from rhovid.ingest.fragments import slice_clips
        from rhovid.train.decode_pyav import decode_clips

        try:
            decode_clips(slice_clips(mp4, meta, [[0], [meta["num_frames"] - 1]]))
        except Exception as e:  # noqa: BLE001
            out.append(f"does not decode ({type(e).__name__}: {e})")
    return out
