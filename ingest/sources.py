"""Turn source specs (folder trees, Kinetics CSV files, list files, video files) into ``Source`` records.

Spec detection (``expand_spec``):

- a directory: a tree ``SRC/<class>/.../<video>``; label name = the first folder under
  ``SRC``; files directly in ``SRC`` are unlabelled. Every non-hidden file is a candidate
  (a non-video lands in failed.jsonl rather than being silently skipped). Symlinked folders
  are followed, each real folder once; a folder that cannot be listed, or a second link to a
  folder already listed (a symlink cycle), becomes a ``Source`` with ``error`` set, so it is
  reported in failed.jsonl rather than dropped.
- ``*.csv``: Kinetics-style ``label,youtube_id,time_start,time_end,split`` (``label`` and
  ``split`` optional). Videos are looked up under ``videos_root`` (default: the CSV's
  folder), first match wins:
  1. ``<root>/<youtube_id>_<start:06d>_<end:06d>.*`` (already trimmed clip, the layout of
     the common Kinetics downloaders),
  2. the same name under ``<root>/<label>/`` (label as written, then with '_' for ' '),
     and under ``<root>/<split>/`` and ``<root>/<split>/<label>/``,
  3. ``<root>/<youtube_id>.*`` (and under ``<label>/``): the untrimmed video, which is then
     trimmed to ``[time_start, time_end]``.
  A row whose file is missing becomes a Source with a path that does not exist, so it is
  reported in failed.jsonl ("file not found").
- ``*.txt`` / ``*.lst`` / ``*.list``: one path per line (relative to the list file's folder),
  ``#`` comments and blank lines ignored; unlabelled (Instagram-style uncurated).
- any other file: a single unlabelled video.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from rhovid.errors import NotFoundError, UsageError

LIST_SUFFIXES = {".txt", ".lst", ".list"}
_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Source:
    """One video to ingest."""

    path: str
    """Path of the video file."""
    split: str = "train"
    """Split the sample belongs to (shard name prefix)."""
    label_name: str | None = None
    """Class name; None for unlabelled sources."""
    label: int | None = None
    """Class index; None = assigned from ``label_name`` (sorted names) or unlabelled."""
    trim: tuple[float, float] | None = None
    """``(start_s, end_s)`` to cut from the video, None = the whole video."""
    key: str | None = None
    """Sample key override (no '.' or '/'); None = derived from path and trim."""
    error: str | None = None
    """Why discovery could not use this path (a folder that cannot be listed); None = a video candidate."""


def sample_key(src: Source) -> str:
    """A stable, unique sample key: readable stem + 10 hex of (absolute path, trim).

    Keys contain only ``[A-Za-z0-9_-]`` (webdataset splits names on the first '.').
    """
    if src.key is not None:
        if not src.key or _KEY_BAD.search(src.key):
            raise UsageError(f"Source key {src.key!r} for {src.path} must be non-empty [A-Za-z0-9_-]")
        return src.key
    ident = os.path.abspath(src.path)
    if src.trim is not None:
        ident += f"#{src.trim[0]:.3f}-{src.trim[1]:.3f}"
    digest = hashlib.sha1(ident.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    stem = _KEY_BAD.sub("_", Path(src.path).stem).strip("_")[:60] or "video"
    label = _KEY_BAD.sub("_", src.label_name or "").strip("_")[:30]
    if label and not stem.startswith(label):
        stem = f"{label}-{stem}"
    return f"{stem}-{digest}"


def expand_spec(spec: str | os.PathLike | Source, split: str = "train", videos_root: str | None = None) -> list[Source]:
    """Sources of one spec (see the module docstring for the detection rules).

    Raises:
        FileNotFoundError: the spec path does not exist.
        ValueError: a CSV lacks the required columns.
    """
    if isinstance(spec, Source):
        return [spec]
    path = Path(spec)
    if path.is_dir():
        return folder_sources(path, split)
    if not path.exists():
        raise NotFoundError(f"source {spec!s} does not exist (expected a folder, .csv, list file or video)")
    if path.suffix.lower() == ".csv":
        return kinetics_csv_sources(path, videos_root, split)
    if path.suffix.lower() in LIST_SUFFIXES:
        return list_file_sources(path, split)
    return [Source(str(path), split=split)]


def expand_specs(specs, split: str = "train", videos_root: str | None = None) -> list[Source]:
    """All sources of ``specs`` with integer labels filled in, duplicates (same key) dropped."""
    out: list[Source] = []
    for spec in specs:
        out.extend(expand_spec(spec, split, videos_root))
    seen: set[str] = set()
    unique = []
    for s in out:
        k = sample_key(s)
        if k not in seen:
            seen.add(k)
            unique.append(s)
    return unique


def assign_labels(sources: list[Source], known: list[str]) -> tuple[list[Source], list[str]]:
    """Give every labelled source an integer label.

    ``known`` (label names already used in DATA, by index) keeps its indices so reruns stay
    consistent; new names are appended in sorted order. Sources with an explicit ``label``
    keep it.

    Returns:
        ``(sources, labels)``: the sources with ``label`` set, and the full name list.
    """
    labels = list(known)
    index = {name: i for i, name in enumerate(labels)}
    for name in sorted({s.label_name for s in sources if s.label_name and s.label is None} - set(index)):
        index[name] = len(labels)
        labels.append(name)
    out = [
        replace(s, label=index[s.label_name]) if s.label is None and s.label_name else s for s in sources
    ]
    return out, labels


def folder_sources(root: Path, split: str = "train") -> list[Source]:
    """``root/<class>/.../<file>`` -> labelled sources; files directly in ``root`` unlabelled.

    Folders that cannot be listed, and links back to a folder already listed, come back as
    sources with ``error`` set (see the module docstring).
    """
    out = []

    def label_of(path: str) -> str | None:
        rel = Path(path).relative_to(root)
        return rel.parts[0] if rel.parts else None

    def unlistable(e: OSError) -> None:
        out.append(Source(str(e.filename), split=split, label_name=label_of(e.filename),
                          error=f"cannot list folder ({e.strerror})"))

    seen: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # reached again through a symlink: list it once
            out.append(Source(dirpath, split=split, label_name=label_of(dirpath),
                              error=f"folder already listed as {seen[st.st_dev, st.st_ino]} (a symlink cycle "
                                    "or a second link to it); its videos are ingested once, from there"))
            dirnames[:] = []
            continue
        seen[st.st_dev, st.st_ino] = dirpath
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        label = label_of(dirpath)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            out.append(Source(str(Path(dirpath) / name), split=split, label_name=label))
    return out


def list_file_sources(path: Path, split: str = "train") -> list[Source]:
    """One unlabelled source per non-comment line; relative paths are relative to the list file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        out.append(Source(str(p if p.is_absolute() else path.parent / p), split=split))
    return out


def kinetics_csv_sources(path: Path, videos_root: str | None = None, split: str = "train") -> list[Source]:
    """Sources of a Kinetics-style CSV (see the module docstring for the file lookup)."""
    root = Path(videos_root) if videos_root else path.parent
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or [])
        missing = {"youtube_id", "time_start", "time_end"} - fields
        if missing:
            raise UsageError(f"{path}: missing CSV columns {sorted(missing)} (have {sorted(fields)})")
        rows = list(reader)
    listing = _Listing(root)
    out = []
    for row in rows:
        yid = row["youtube_id"].strip()
        start, end = float(row["time_start"]), float(row["time_end"])
        label = (row.get("label") or "").strip() or None
        row_split = _split_name((row.get("split") or "").strip() or split)
        video, trimmed = _find_kinetics_file(listing, yid, start, end, label, row_split)
        out.append(
            Source(
                str(video),
                split=row_split,
                label_name=label,
                trim=None if trimmed else (start, end),
                key=_KEY_BAD.sub("_", f"{yid}_{int(start):06d}_{int(end):06d}"),
            )
        )
    return out


def _split_name(split: str) -> str:
    return _KEY_BAD.sub("_", split).replace("-", "_") or "train"


class _Listing:
    """Directory listings cached per folder (a Kinetics root holds ~10^5 files)."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[Path, dict[str, list[str]]] = {}

    def find(self, folder: Path, stem: str) -> Path | None:
        if folder not in self._cache:
            by_stem: dict[str, list[str]] = {}
            if folder.is_dir():
                for name in os.listdir(folder):
                    if not name.startswith(".") and (folder / name).is_file():
                        by_stem.setdefault(Path(name).stem, []).append(name)
            self._cache[folder] = by_stem
        names = sorted(self._cache[folder].get(stem, []))
        return folder / names[0] if names else None


def _find_kinetics_file(listing: _Listing, yid, start, end, label, split) -> tuple[Path, bool]:
    """``(path, already_trimmed)``; a non-existent path when nothing matches."""
    root = listing.root
    folders = [root]
    labels = [label, label.replace(" ", "_")] if label else []
    folders += [root / lab for lab in labels]
    folders += [root / split] + [root / split / lab for lab in labels]
    clip = f"{yid}_{int(start):06d}_{int(end):06d}"
    for folder in folders:
        hit = listing.find(folder, clip)
        if hit is not None:
            return hit, True
    for folder in folders:
        hit = listing.find(folder, yid)
        if hit is not None:
            return hit, False
    return root / f"{clip}.mp4", True
