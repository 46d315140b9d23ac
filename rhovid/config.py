"""Frozen-dataclass config helpers shared by every stage.

Each stage defines small frozen dataclasses (one docstring line per field). These helpers
turn them into JSON (saved beside every output, DINOv2-style), rebuild them from JSON, and
apply ``--set key=value`` overrides with the field's own type.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from rhovid.atomic import atomic_write_json
from rhovid.errors import UnknownNameError, UsageError

T = TypeVar("T")


def to_dict(cfg) -> dict:
    """A dataclass (possibly nested) as a JSON-ready dict; paths become strings."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _jsonable(dataclasses.asdict(cfg))


def save_config(cfg, path: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write the resolved config (plus ``extra`` provenance such as versions) atomically."""
    d = to_dict(cfg)
    if extra:
        d = {**d, **extra}
    atomic_write_json(path, d)
    return d


def from_dict(cls: type[T], d: dict, strict: bool = True) -> T:
    """Build dataclass ``cls`` from a dict, recursing into nested dataclass fields.

    Unknown keys raise (``strict``) so a typo in a saved or hand-written config is not
    silently ignored.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown and strict:
        raise UnknownNameError(f"{cls.__name__}: unknown config keys {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        kwargs[f.name] = _coerce(hints[f.name], d[f.name], f"{cls.__name__}.{f.name}")
    return cls(**kwargs)


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Read a config JSON written by ``save_config``."""
    return from_dict(cls, json.loads(Path(path).read_text()), strict=False)


def apply_overrides(cfg: T, overrides: list[str] | None) -> T:
    """Return ``cfg`` with ``key=value`` overrides applied (``a.b=1`` reaches nested fields).

    Values are parsed as JSON when possible (``3``, ``0.1``, ``true``, ``[1,2]``), else taken
    as strings, then coerced to the field's declared type. In a tuple of configs (per-view
    augmentation), ``data.augment.1.blur_p=0.1`` sets one item and ``data.augment.hue=0`` all.
    """
    for item in overrides or []:
        if "=" not in item:
            raise UsageError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        cfg = _set_path(cfg, key.strip().split("."), _parse_value(raw), key)
    return cfg


def _set_path(cfg, parts: list[str], value, full_key: str):
    names = {f.name: f for f in dataclasses.fields(cfg)}
    head = parts[0]
    if head not in names:
        raise UnknownNameError(f"unknown config key {full_key!r}; {type(cfg).__name__} has {sorted(names)}")
    hints = typing.get_type_hints(type(cfg))
    if len(parts) > 1:
        sub = getattr(cfg, head)
        if isinstance(sub, tuple) and sub and all(dataclasses.is_dataclass(x) for x in sub):
            # a tuple of configs (e.g. per-view augmentation): ``a.1.b=v`` sets item 1,
            # ``a.b=v`` sets every item
            if parts[1].isdigit():
                i = int(parts[1])
                if i >= len(sub):
                    raise UnknownNameError(f"{full_key!r}: {head} has {len(sub)} items")
                items = list(sub)
                items[i] = _set_path(sub[i], parts[2:], value, full_key) if len(parts) > 2 else \
                    _coerce(type(sub[i]), value, full_key)
                return dataclasses.replace(cfg, **{head: tuple(items)})
            return dataclasses.replace(cfg, **{head: tuple(_set_path(x, parts[1:], value, full_key) for x in sub)})
        if not dataclasses.is_dataclass(sub):
            raise UnknownNameError(f"{full_key!r}: {head} is not a nested config")
        return dataclasses.replace(cfg, **{head: _set_path(sub, parts[1:], value, full_key)})
    return dataclasses.replace(cfg, **{head: _coerce(hints[head], value, full_key)})


def _parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _coerce(tp, value, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise UsageError(f"{where}: {value!r} fits none of {tp}: {errors}")
    if origin is typing.Literal:
        if value not in args:
            raise UsageError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UsageError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        inner = args[0] if args else Any
        seq = [_coerce(inner, v, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UsageError(f"{where}: expected a boolean, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise UsageError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise UsageError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def field_docs(cls) -> dict[str, str]:
    """Each dataclass field's docstring (the string literal under it), from the class that
    documents it, nearest first along the MRO; "" for a field nobody documents.

    The docstrings are the one place a field is explained (house style), so ``--help`` texts
    built from them cannot drift from the code.
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in inspect.getmro(cls):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (e.g. built in a REPL)
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs.setdefault(node.target.id, " ".join(after.value.value.split()))
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}
