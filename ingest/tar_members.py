"""The tar layer under the shard readers: member headers grouped by sample, checked against the file.

Python's ``tarfile`` trusts a member header's size and ends a listing silently where a file
is cut at a member boundary or inside a payload; a shard copied half-way would then read as a
shorter, "complete" shard. ``member_groups`` checks both (issue 13, items 9 and 11) for every
reader in ``rhovid.ingest.reader`` and ``rhovid.ingest.manifest``.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections.abc import Iterator

log = logging.getLogger("rhovid.ingest.shards")


END_OF_ARCHIVE = 2 * tarfile.BLOCKSIZE
"""Zero bytes that end every tar ``ShardWriter`` writes (two 512-byte blocks, then padding)."""


def member_groups(tar: tarfile.TarFile, path, stop: int | None = None,
                   tolerant: bool = False) -> Iterator[tuple[str, list[tarfile.TarInfo]]]:
    """The shard's file members grouped by key (the name up to the first '.'), in shard order.

    Reads headers only (tarfile seeks over payloads), one group ahead of the caller; stops
    after ``stop`` groups. Each member's payload must lie inside the file, and a shard read to
    its end must end with the end-of-archive marker: tarfile itself ends the listing without a
    word at a cut that falls on a member boundary or inside a payload (issue 13, item 11).
    At such damage the groups before it are yielded (the last one possibly short of a member),
    then ``tarfile.ReadError`` is raised, or with ``tolerant`` a warning logged instead.
    """
    size = os.fstat(tar.fileobj.fileno()).st_size
    key, group, count = None, [], 0
    problem = None
    members = iter(tar)
    while True:
        try:
            member = next(members)
        except StopIteration:
            if stop is None or count < stop:  # read to the end: the end-of-archive marker must follow
                tar.fileobj.seek(tar.offset)
                if tar.fileobj.read(END_OF_ARCHIVE) != bytes(END_OF_ARCHIVE):
                    problem = f"no end-of-archive marker at byte {tar.offset} of {size} (the file is cut off)"
            break
        except tarfile.ReadError as e:
            problem = str(e)
            break
        if member.offset_data + member.size > size:
            problem = (f"member {member.name} claims {member.size} bytes from byte {member.offset_data}, "
                       f"past the end of the file ({size} bytes)")
            break
        if not member.isfile():
            continue
        k = member.name.partition(".")[0]
        if k != key:
            if group:
                yield key, group
                count += 1
            if stop is not None and count >= stop:
                return
            key, group = k, []
        group.append(member)
    if group and (stop is None or count < stop):
        yield key, group  # whole, or cut short by the damage: its sample then lacks a member
        count += 1
    if problem is not None:
        if not tolerant:
            raise tarfile.ReadError(problem)
        log.warning("%s: %s after member group %d; read the samples before it", path, problem, count)


def parse_json(payload: bytes, name: str) -> dict:
    """A sample json member as a dict; ValueError naming the member otherwise (a nesting too
    deep for the parser included: json raises RecursionError for it)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{name}: invalid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{name}: not a JSON object ({type(doc).__name__})")
    return doc
