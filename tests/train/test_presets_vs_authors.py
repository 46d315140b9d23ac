"""Every paper preset against the authors' values in the README's tables (one test per preset).

The README section *Presets against the authors' code* has, per preset, a table
``| item | authors' value | where | rhovid field | expected | rhovid's value |``: the authors' value
as their file says it, the file:line, the config field it corresponds to and the authors' value
in rhovid's units (``expected``, a Python literal; ``inf`` allowed). The field is read from the
preset resolved as ``rhovid train --preset NAME`` resolves it: ``TrainConfig`` as a dict,
``method_kwargs`` completed with the method's own defaults (what ``build_method`` receives), and
``spec.*`` from the backbone spec of ``arch``; a number indexes a list (``data.augment.0`` = the first view). A preset passes when every field equals its
``expected`` (fidelity) and every ``rhovid's value`` cell equals the field (the README is true).
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from rhovid.config import to_dict
from rhovid.train.config import PRESETS
from rhovid.train.methods import METHODS
from rhovid.train.models.resnet3d import SPECS

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Presets against the authors' code"
MISSING = "missing"
PAPER_PRESETS = sorted(name for name in PRESETS if not name.startswith("tiny-"))


def resolved(name: str) -> dict:
    """The preset as ``rhovid train --preset NAME`` resolves it, with method defaults and the backbone spec."""
    cfg = PRESETS[name]
    out = to_dict(cfg)
    params = inspect.signature(METHODS[cfg.method].__init__).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("self", "arch")
                and p.default is not inspect.Parameter.empty}
    out["method_kwargs"] = {**defaults, **out["method_kwargs"]}
    out["spec"] = asdict(SPECS[cfg.arch])
    return out


def lookup(cfg: dict, field: str):
    node = cfg
    for part in field.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]  # e.g. data.augment.0: the first view's augmentation
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return MISSING
    return node


def parse(cell: str):
    """A table cell as a value: ``missing``, or a Python literal where ``inf`` means infinity."""
    text = cell.strip().strip("`")
    if text == MISSING:
        return MISSING
    return ast.literal_eval(re.sub(r"\binf\b", "1e999", text))


def same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return math.isclose(a, b, rel_tol=1e-4)  # the authors write 4/3 as 1.3333


def tables() -> dict[str, list[dict]]:
    """Preset name -> rows of its table, from the README section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION):]
    section = section[: section.find("\n## ", len(SECTION))] if "\n## " in section[len(SECTION):] else section
    out: dict[str, list[dict]] = {}
    for block in re.split(r"\n### ", section)[1:]:
        m = re.match(r"`([^`]+)`", block)
        if m is None:
            continue
        rows = []
        for line in block.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) != 6 or cells[0] in ("item", "---") or set(cells[0]) <= {"-", ":"}:
                continue
            item, authors, where, field, expected, ours = cells
            rows.append({"item": item, "where": where, "field": field.strip("`"), "expected": parse(expected),
                         "readme": parse(ours)})
        out[m.group(1)] = rows
    return out


def test_every_paper_preset_has_a_table():
    assert sorted(tables()) == PAPER_PRESETS


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_preset_matches_the_authors(name):
    rows = tables()[name]
    assert len(rows) >= 15, f"{name}: table too short"
    cfg = resolved(name)
    stale, deviations = [], []
    for r in rows:
        actual = lookup(cfg, r["field"])
        if not same(actual, r["readme"]):
            stale.append(f"{r['field']}: README says {r['readme']!r}, the preset has {actual!r}")
        if not same(actual, r["expected"]):
            deviations.append(f"{r['item']} ({r['field']}): authors {r['expected']!r} ({r['where']}), "
                              f"rhovid {actual!r}")
    assert not stale and not deviations, "\n".join(
        [f"{name}: README column 'rhovid's value' is stale:", *stale, f"{name}: differs from the authors:",
         *deviations])
