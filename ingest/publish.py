"""``rhovid ingest SRC --out s3://...``: build shards in a local stage, upload each one whole.

Object stores have no rename and no append, so the local rules (write ``.tmp-`` then rename,
fsync'd appends) become (ingest/FORMAT.md "Remote DATA"):

- Each shard is built by the ordinary local pipeline in a stage folder. When it is finished its
  ``.idx`` and manifest are uploaded, then the tar last (each upload is one PUT, or a multipart
  upload that becomes visible only when complete: an object appears whole or not at all), then
  ``index.json`` (and ``failed.jsonl``, ``ingest.json``) are rewritten whole. The staged copy is
  deleted, so the stage holds at most the open shards.
- Readers list shards from ``index.json``; a shard whose tar exists is complete.
- A rerun (after a kill, on any machine) starts from what the bucket holds: the index is
  reconciled with the tars in the bucket (tars it does not list are read back from their
  manifests, rows of missing tars dropped), sources already in a shard there are skipped, the
  rest are redone, and new shards are numbered after the bucket's highest. The stage is a
  cache and is emptied first: it holds nothing the bucket lacks except open shards, which the
  rerun redoes, exactly as a local kill loses only the open ``.tmp-`` shards.

One writer per DATA at a time (two runs into one bucket prefix would number shards alike).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from rhovid import storage
from rhovid.ingest.manifest import manifest_name
from rhovid.ingest.reader import FORMAT_VERSION, INDEX_FILE, SHARD_RE, SHARDS_DIR, ShardReader, read_index_doc
from rhovid.ingest.shards import index_entry, write_index
from rhovid.ingest.sources import Source, expand_specs, sample_key

log = logging.getLogger(__name__)
FAILED_FILE = "failed.jsonl"
CONFIG_FILE = "ingest.json"
RUNS_FILE = "ingest-runs.jsonl"
STATE_FILES = (CONFIG_FILE, FAILED_FILE, RUNS_FILE)
"""DATA files other than shards and index.json: copied into the stage first, uploaded whole after."""


def default_stage(url: str) -> Path:
    """``$RHOVID_STAGE/<hash of url>`` (default ``~/.cache/rhovid/stage/...``): one stage per DATA URL."""
    base = Path(os.environ.get("RHOVID_STAGE", Path.home() / ".cache" / "rhovid" / "stage"))
    return base / hashlib.sha1(url.rstrip("/").encode()).hexdigest()[:16]


def remote_shards(url: str) -> list[str]:
    """Names of the finished shards (``*.tar``) in the bucket, from a fresh listing."""
    return [n for n in storage.list_names(storage.join(url, SHARDS_DIR)) if SHARD_RE.match(n)]


def recover_remote_index(url: str) -> dict:
    """index.json of a remote DATA reconciled with the tars the bucket holds (see the module docstring)."""
    try:
        doc = read_index_doc(url)
    except FileNotFoundError:
        doc = {"labels": [], "samples": []}
    except ValueError as e:
        log.warning("%s; rebuilding it from the shards' manifests", str(e).split(";")[0])
        doc = {"labels": [], "samples": []}
    tars = remote_shards(url)
    names = set(tars)
    samples = [e for e in doc["samples"] if e["shard"] in names]
    listed = {e["shard"] for e in samples}
    reader = ShardReader()
    try:
        for name in tars:
            if name not in listed:
                manifest = reader.manifest(storage.join(url, SHARDS_DIR, name))
                samples.extend(index_entry(s.meta, name) for s in manifest.samples if s.meta is not None)
    finally:
        reader.close()
    samples.sort(key=lambda e: e["shard"])
    labels = list(doc.get("labels", []))
    for e in samples:  # label names a rebuilt index lost come back from the samples
        k = e.get("label")
        if k is None:
            continue
        labels += [None] * (k + 1 - len(labels))
        if labels[k] is None:
            labels[k] = e.get("label_name")
    return {"labels": labels, "samples": samples}


class Publisher:
    """Uploads each shard the local pipeline finishes, under the bucket's next number, then the index."""

    def __init__(self, url: str, stage: Path, doc: dict):
        self.url, self.stage = url, stage
        self.samples = list(doc["samples"])
        self.labels = list(doc["labels"])
        self.next: dict[str, int] = {}
        for name in remote_shards(url):
            m = SHARD_RE.match(name)
            self.next[m["split"]] = max(self.next.get(m["split"], 0), int(m["num"]) + 1)
        self.published: list[str] = []

    def publish(self, path: Path, metas: list[dict]) -> None:
        """``ingest(on_shard=...)`` hook: upload ``path`` (+ .idx, manifest), update index.json, drop the copy."""
        split = SHARD_RE.match(path.name)["split"]
        number = self.next.get(split, 0)
        name = f"{split}-{number:06d}.tar"
        folder = storage.join(self.url, SHARDS_DIR)
        companions = [(path.with_suffix(".idx"), name[:-4] + ".idx"),
                      (path.with_name(manifest_name(path.name)), manifest_name(name))]
        for local, remote in companions:  # before the tar: a tar in the bucket has its companions
            storage.upload(local, storage.join(folder, remote))
        storage.upload(path, storage.join(folder, name))
        self.next[split] = number + 1
        self.samples.extend(index_entry(m, name) for m in metas)
        self.labels = _labels_of(self.stage, self.labels)
        self.write_state()
        for local in (path, *(c for c, _ in companions)):
            local.unlink(missing_ok=True)
        self.published.append(name)

    def write_state(self) -> None:
        """index.json and the ``STATE_FILES`` of the stage -> the bucket (whole objects)."""
        doc = {"format": FORMAT_VERSION, "labels": self.labels,
               "samples": sorted(self.samples, key=lambda e: e["shard"])}
        storage.write_bytes(storage.join(self.url, INDEX_FILE), (json.dumps(doc, indent=1) + "\n").encode())
        for name in STATE_FILES:
            if (self.stage / name).exists():
                storage.upload(self.stage / name, storage.join(self.url, name))


def _labels_of(stage: Path, known: list) -> list:
    """The label names the stage's pipeline has assigned so far (it may have added new ones)."""
    try:
        return json.loads((stage / INDEX_FILE).read_text(encoding="utf-8")).get("labels", known)
    except (OSError, ValueError):
        return known


def _rename_shards_in_run_record(path: Path, names: list[str]) -> None:
    """The run's ``ingest-runs.jsonl`` record names the stage's shards; give it the bucket's names."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines:
        record = json.loads(lines[-1])
        record["shards"] = names
        lines[-1] = json.dumps(record)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def ingest_remote(sources: list, url: str, cfg, stage: str | os.PathLike | None = None):
    """``ingest(sources, url, cfg)`` for a remote ``url``; see the module docstring.

    Returns:
        The pipeline's ``IngestReport`` with ``shards`` named as in the bucket and ``skipped``
        counting the sources the bucket already held.
    """
    from rhovid.ingest.pipeline import ingest

    if storage.protocol(url) in ("http", "https"):
        raise ValueError(f"--out {url}: http(s) is read-only; ingest into a folder, s3:// or gs:// and serve that")
    stage = Path(stage) if stage is not None else default_stage(url)
    shutil.rmtree(stage, ignore_errors=True)  # a cache: everything of value is in the bucket
    (stage / SHARDS_DIR).mkdir(parents=True)
    for name in STATE_FILES:
        try:
            (stage / name).write_bytes(storage.read_bytes(storage.join(url, name)))
        except FileNotFoundError:
            pass
    doc = recover_remote_index(url)
    write_index(stage, [], doc["labels"])  # the pipeline numbers new labels after the bucket's

    specs = expand_specs(sources, cfg.split, cfg.videos_root)
    done = {e["key"]: e for e in doc["samples"]}
    todo: list[Source] = [s for s in specs if sample_key(s) not in done or done[sample_key(s)]["split"] != s.split]
    clash = [s for s in todo if sample_key(s) in done]
    todo = [s for s in todo if sample_key(s) not in done]
    publisher = Publisher(url, stage, doc)
    report = ingest(todo, stage, cfg, on_shard=publisher.publish)
    for s in clash:  # the same rule as a local ingest: keys are unique across splits
        e = done[sample_key(s)]
        record = {"source": s.path, "key": e["key"], "stage": "split",
                  "reason": f"key {e['key']!r} is already ingested as split {e['split']!r} (shard {e['shard']}), "
                            f"not {s.split!r}; keys are unique across splits"}
        with open(stage / FAILED_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        report.failures.append(record)
        report.failed += 1
    _rename_shards_in_run_record(stage / RUNS_FILE, publisher.published)
    publisher.labels = _labels_of(stage, publisher.labels)
    publisher.write_state()
    report.skipped += len(specs) - len(todo) - len(clash)
    report.shards = publisher.published
    return report
