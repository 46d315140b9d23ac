"""Official split files of the downstream benchmarks -> ``list[Source]`` for ``ingest()``.

UCF101 (Soomro et al. 2012), HMDB51 (Kuehne et al. 2011) and Kinetics-400 (Kay et al. 2017)
each publish their train/test partition in a different text format. This module parses
those files as distributed and returns one ``Source`` per video with ``split`` set to
``"train"`` / ``"test"`` (``"val"`` for Kinetics' validation set), so the shards' ``split``
field selects the evaluation partition and ``rhovid eval`` needs no dataset knowledge.

Labels are 0-based: UCF101 uses ``classInd.txt`` order (its 1-based index minus one),
HMDB51 and Kinetics the alphabetical class order (the order every published probe uses).
Keys are the file stems with characters outside ``[A-Za-z0-9_-]`` replaced by ``_``
(webdataset splits keys at the first ``.``; HMDB51 names contain ``#``, ``(``, ``&`` ...).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from rhovid.errors import NotFoundError, UnknownNameError, UsageError
from rhovid.ingest.sources import Source, kinetics_csv_sources

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key(stem: str) -> str:
    """A shard key for a file stem: no dots, only ``[A-Za-z0-9_-]``."""
    return _KEY_UNSAFE.sub("_", stem)


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines; the official files mix CRLF and trailing spaces."""
    if not path.is_file():
        raise NotFoundError(f"split file {path} does not exist")
    return [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]


# ---------------------------------------------------------------- UCF101


def ucf101_classes(splits_dir: str | Path) -> list[str]:
    """Class names in ``classInd.txt`` order (line ``"1 ApplyEyeMakeup"`` -> label 0)."""
    path = Path(splits_dir) / "classInd.txt"
    classes: dict[int, str] = {}
    for n, line in enumerate(_lines(path), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UsageError(f"{path}:{n}: expected '<index> <ClassName>', got {line!r}")
        classes[int(parts[0])] = parts[1]
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise UsageError(f"{path}: class indices are not 1..{len(classes)}")
    return [classes[i] for i in range(1, len(classes) + 1)]


def ucf101_sources(videos: str | Path, splits_dir: str | Path, fold: int = 1) -> list[Source]:
    """UCF101 split ``fold`` (1-3) from ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``.

    Args:
        videos: the ``UCF-101/`` folder holding ``<Class>/v_<Class>_gGG_cCC.avi``.
        splits_dir: the ``ucfTrainTestlist/`` folder.
        fold: which of the three official splits.

    Returns:
        train sources (label from the list's 1-based index) then test sources (label from
        the class folder; the test lists carry no index).
    """
    if fold not in (1, 2, 3):
        raise UsageError(f"UCF101 fold must be 1, 2 or 3, got {fold}")
    videos, splits_dir = Path(videos), Path(splits_dir)
    classes = ucf101_classes(splits_dir)
    # Folder names differ in case from classInd for one class (HandstandPushups vs
    # v_HandStandPushups_*), so match folders case-insensitively.
    by_folder = {c.lower(): i for i, c in enumerate(classes)}
    out: list[Source] = []
    for split, name in (("train", f"trainlist0{fold}.txt"), ("test", f"testlist0{fold}.txt")):
        path = splits_dir / name
        for n, line in enumerate(_lines(path), 1):
            parts = line.split()
            rel = parts[0]
            folder = rel.split("/")[0].lower()
            if folder not in by_folder:
                raise UsageError(f"{path}:{n}: class folder of {rel!r} is not in classInd.txt")
            label = by_folder[folder]
            if len(parts) > 1:
                if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                    raise UsageError(f"{path}:{n}: label {parts[1]!r} disagrees with folder {rel.split('/')[0]!r}")
            out.append(
                Source(
                    path=str(videos / rel),
                    split=split,
                    label_name=classes[label],
                    label=label,
                    key=safe_key(Path(rel).stem),
                )
            )
    return out


# ---------------------------------------------------------------- HMDB51

_HMDB_CODE = {"1": "train", "2": "test"}  # "0": not used in this split


def hmdb51_sources(videos: str | Path, splits_dir: str | Path, fold: int = 1) -> list[Source]:
    """HMDB51 split ``fold`` (1-3) from the per-class files ``<class>_test_split<fold>.txt``.

    Each line is ``<video>.avi <code>`` with code 1 = train, 2 = test, 0 = unused in this
    split (such videos are left out).

    Args:
        videos: folder holding ``<class>/<video>.avi``.
        splits_dir: the ``testTrainMulti_7030_splits/`` folder.
        fold: which of the three official splits.
    """
    if fold not in (1, 2, 3):
        raise UsageError(f"HMDB51 fold must be 1, 2 or 3, got {fold}")
    videos, splits_dir = Path(videos), Path(splits_dir)
    suffix = f"_test_split{fold}.txt"
    files = sorted(p for p in splits_dir.glob(f"*{suffix}") if p.is_file())
    if not files:
        raise NotFoundError(f"no '*{suffix}' files in {splits_dir}")
    classes = sorted(p.name[: -len(suffix)] for p in files)
    out: list[Source] = []
    for label, cls in enumerate(classes):
        path = splits_dir / f"{cls}{suffix}"
        for n, line in enumerate(_lines(path), 1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise UsageError(f"{path}:{n}: expected '<video>.avi 0|1|2', got {line!r}")
            split = _HMDB_CODE.get(parts[1])
            if split is None:
                continue
            out.append(
                Source(
                    path=str(videos / cls / parts[0]),
                    split=split,
                    label_name=cls,
                    label=label,
                    key=safe_key(Path(parts[0]).stem),
                )
            )
    return out


# ---------------------------------------------------------------- Kinetics

_K400_SPLIT = {"validate": "val", "valid": "val", "val": "val", "train": "train", "test": "test"}


def kinetics_sources(
    csv_path: str | Path, videos: str | Path, classes: list[str] | None = None
) -> list[Source]:
    """Kinetics-400/600/700 annotation CSV (``label,youtube_id,time_start,time_end,split``).

    File lookup is ingest's (``rhovid.ingest.sources.kinetics_csv_sources``: trimmed
    ``<id>_<start:06d>_<end:06d>.*`` clips or full ``<id>.*`` videos, flat or under
    ``<label>/`` / ``<split>/``); rows whose video is absent keep a non-existent path so
    ``ingest`` lists them in ``failed.jsonl`` (a few percent of Kinetics is always gone
    from YouTube). This adds what evaluation needs: the split named ``"val"`` whether the
    CSV says ``val`` or ``validate``, and labels in a fixed class order.

    Args:
        csv_path: e.g. ``kinetics400/validate.csv``.
        videos: folder with the downloaded videos.
        classes: class order for labels; default = the CSV's classes sorted (K400's
            ``validate.csv`` holds all 400 classes, so this is the standard order).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise NotFoundError(f"Kinetics CSV {csv_path} does not exist")
    sources = kinetics_csv_sources(csv_path, str(videos), split="val")
    if classes is None:
        classes = sorted({s.label_name for s in sources if s.label_name})
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for n, s in enumerate(sources, 2):
        if s.label_name is not None and s.label_name not in index:
            raise UsageError(f"{csv_path}:{n}: label {s.label_name!r} is not in the class list")
        label = index[s.label_name] if s.label_name is not None else None
        out.append(replace(s, split=_K400_SPLIT.get(s.split, s.split), label=label))
    return out


# dataset name -> parser(videos, splits, fold). A plain dict: the three formats above.
DATASETS = {
    "ucf101": lambda videos, splits, fold: ucf101_sources(videos, splits, fold),
    "hmdb51": lambda videos, splits, fold: hmdb51_sources(videos, splits, fold),
    "kinetics": lambda videos, splits, fold: kinetics_sources(splits, videos),
}


def dataset_sources(name: str, videos: str | Path, splits: str | Path, fold: int = 1) -> list[Source]:
    """Dispatch on ``name`` (ucf101 | hmdb51 | kinetics); ``splits`` is the split folder or CSV."""
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](videos, splits, fold)
