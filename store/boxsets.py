"""Box-set identity: parameters from ``k=v`` strings, the hashed set name, aliases.

A box set is (method, parameters, box_fps, max_boxes, code version) -> ``<method>-<8 hex>``
(DESIGN.md decision 4): changing anything that changes the boxes makes a new name, so
nothing is ever overwritten, and the same request always finds the same set. Fields marked
``metadata={"hash": False}`` (batch size, device) do not change the boxes and are left out.

The set registry ``DATA/boxes.zarr/sets.json`` records every requested set and the aliases
given with ``--name``; it is rewritten atomically under a file lock by the driver process only
(workers never touch it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
from pathlib import Path

from rhovid import storage
from rhovid.errors import UnknownNameError, UsageError
from rhovid.store.priors import METHODS
from rhovid.store.regions import SelectParams

STORE_VERSION = 1  # layout of the per-shard groups (store/FORMAT.md)
REGISTRY = "sets.json"


def method_entry(method: str):
    """(params class, function) of a method; ValueError listing the known ones otherwise."""
    if method not in METHODS:
        raise UsageError(f"unknown box method {method!r}; known methods: {', '.join(METHODS)}")
    return METHODS[method]


def parse_param_args(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` (from ``--param``) -> ``{k: v}``; ValueError naming a malformed item."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def make_params(method: str, overrides: dict[str, object] | None = None) -> SelectParams:
    """Build a method's params from defaults plus overrides (strings are parsed by field type).

    Raises:
        ValueError: unknown method, unknown key (lists the valid keys), or a value that does
            not parse as the field's type / fails the params' own checks.
    """
    cls, _ = method_entry(method)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise UsageError(
                f"--param {key}: method {method} has no parameter {key!r}; valid: {', '.join(fields)}"
            )
        kwargs[key] = _coerce(method, key, value, fields[key].default)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise UsageError(f"--param for method {method}: {e}") from None


def _coerce(method: str, key: str, value: object, default: object) -> object:
    kind = type(default)
    if kind is tuple:  # "500,1000" from --param, a list from stored attrs / JSON
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items:
            raise ValueError(f"--param {key}={value}: method {method} expects comma-separated values for {key!r}")
        inner = default[0] if default else 0.0
        return tuple(_coerce(method, key, v.strip() if isinstance(v, str) else v, inner) for v in items)
    if not isinstance(value, str):
        # 10 and 10.0 must hash alike: normalise numbers to the field's type
        if kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if kind is int and value != int(value):
                raise UsageError(f"--param {key}={value}: method {method} expects int for {key!r}")
            return kind(value)
        return value
    try:
        if kind is bool:
            low = value.lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise UsageError(value)
            return low in ("1", "true", "yes")
        return kind(value)
    except ValueError:
        raise UsageError(
            f"--param {key}={value}: method {method} expects {kind.__name__} for {key!r}"
        ) from None


def param_text(value: object) -> str:
    """A parameter value as ``--param`` takes it back: lists and tuples comma-joined (``1000,2000``)."""
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def params_dict(params: SelectParams, hashed_only: bool = False) -> dict:
    """Params as a plain dict; ``hashed_only`` drops runtime-only fields (batch size, device)."""
    return {
        f.name: getattr(params, f.name)
        for f in dataclasses.fields(params)
        if not (hashed_only and f.metadata.get("hash") is False)
    }


def code_version(method: str) -> str:
    """``<method>/<prior version>/store<layout version>``: part of the set name."""
    cls, _ = method_entry(method)
    return f"{method}/{cls.version}/store{STORE_VERSION}"


def box_set_name(method: str, params: SelectParams, box_fps: float, max_boxes: int) -> str:
    """``<method>-<first 8 hex of sha256(method, sorted params, box_fps, max_boxes, code version)>``."""
    blob = json.dumps(
        {
            "method": method,
            "params": sorted(params_dict(params, hashed_only=True).items()),
            "box_fps": float(box_fps),
            "max_boxes": int(max_boxes),
            "code_version": code_version(method),
        },
        sort_keys=True,
    )
    return f"{method}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def read_registry(root: Path | str) -> dict:
    """``{"sets": {name: entry}, "aliases": {alias: name}}`` from ROOT/sets.json (empty if none)."""
    path = storage.join(root, REGISTRY)
    try:
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        return {"sets": {}, "aliases": {}}
    try:
        reg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid JSON ({e})") from None
    reg.setdefault("sets", {})
    reg.setdefault("aliases", {})
    return reg


@contextlib.contextmanager
def _locked(root: Path | str):
    """An exclusive lock on a local registry; a remote one has none (one `rhovid boxes` writer per
    DATA at a time: an object store offers no lock to hold)."""
    if storage.is_remote(root):
        yield
        return
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".sets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def register_set(root: Path | str, name: str, entry: dict, alias: str | None = None) -> None:
    """Record a set (and optionally an alias for it) in ROOT/sets.json, atomically (a whole object remotely).

    Raises:
        ValueError: the alias already names a different set, or equals another set's name.
    """
    with _locked(root):
        reg = read_registry(root)
        if alias:
            if alias in reg["sets"] and alias != name:
                raise UsageError(f"--name {alias}: that is the name of another box set")
            current = reg["aliases"].get(alias)
            if current not in (None, name):
                raise UsageError(
                    f"--name {alias}: alias already names box set {current}; choose another alias"
                )
            reg["aliases"][alias] = name
        reg["sets"][name] = entry
        storage.write_bytes(storage.join(root, REGISTRY), (json.dumps(reg, indent=2) + "\n").encode("utf-8"))


def resolve_set(reg: dict, name: str) -> str:
    """A set name from a set name, an alias, or a method name that has exactly one set.

    Raises:
        KeyError: listing the available sets and aliases.
    """
    if name in reg["sets"]:
        return name
    if name in reg["aliases"]:
        return reg["aliases"][name]
    by_method = [n for n, e in reg["sets"].items() if e.get("method") == name]
    if len(by_method) == 1:
        return by_method[0]
    avail = (
        ", ".join([*sorted(reg["sets"]), *(f"{a} (-> {n})" for a, n in sorted(reg["aliases"].items()))])
        or "none (compute one with `rhovid boxes DATA --method M`)"
    )
    why = (
        f"method {name!r} has {len(by_method)} box sets; name one"
        if by_method
        else f"unknown box set {name!r}"
    )
    raise UnknownNameError(f"{why}; available: {avail}")
