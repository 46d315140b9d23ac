"""Evaluation reports: one JSON file per evaluation and a printed markdown table."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from rhovid import storage
from rhovid.atomic import atomic_write_json

# metric columns shown per evaluation, in table order
COLUMNS = {
    "linear": ("top1", "top5"),
    "knn": ("top1", "top5"),
    "retrieval": ("R@1", "R@5", "R@10", "R@20"),
    "finetune": ("top1", "top5"),
}


def write_report(path: str | Path, evaluation: str, features: str, results: dict, provenance: dict) -> dict:
    """Write ``{evaluation, features, results, provenance, time}`` to ``path`` atomically."""
    report = {
        "evaluation": evaluation,
        "features": features,
        "results": results,
        "provenance": provenance,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if storage.is_remote(path):  # DATA/eval/... of a remote DATA: one whole object
        storage.write_bytes(path, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    else:
        atomic_write_json(path, report)
    return report


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats with 1 decimal."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.1f}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report_table(reports: list[dict]) -> str:
    """One row per report: features name, evaluation, its metric columns."""
    rows = []
    for r in reports:
        cols = COLUMNS.get(r["evaluation"], ())
        metrics = ", ".join(f"{c} {r['results'][c]:.1f}" for c in cols if c in r["results"])
        rows.append([r["features"], r["evaluation"], metrics])
    return markdown_table(["features", "evaluation", "metrics (%)"], rows)
