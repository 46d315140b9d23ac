"""Atomic training checkpoints: ``RUN/checkpoints/step-NNNNNNN.pt`` plus a ``latest`` text file.

A checkpoint holds everything exact resume needs (model incl. momentum encoders and queues,
optimizer, schedule step, loader position and RNG states of every rank) as plain tensors,
dicts, lists and numbers, so ``torch.load(path, weights_only=True)`` reads it. Format in
train/FORMAT.md.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rhovid.atomic import atomic_path, atomic_write_text
from rhovid.errors import NotFoundError, UsageError
from rhovid.train.methods.protocol import Method

FORMAT_VERSION = 1
_NAME = re.compile(r"^step-(\d{7,})\.pt$")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step`` updates."""
    return f"step-{step:07d}.pt"


def checkpoint_step(path: Path) -> int:
    """``step-0000200.pt`` -> 200."""
    m = re.match(r"step-(\d+)\.pt$", Path(path).name)
    if not m:
        raise ValueError(f"{path} is not named step-NNNNNNN.pt")
    return int(m.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("step-*.pt") if _NAME.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint named by ``RUN/checkpoints/latest`` (None when the run has none yet).

    ``latest`` is trusted only as far as its contract: one ``step-NNNNNNN.pt`` name of a regular file
    inside this run's own ``checkpoints/`` (not a path, not a link to another run's file).
    """
    folder = Path(run_dir) / "checkpoints"
    latest = folder / "latest"
    if not latest.exists():
        return None
    with open(latest, "rb") as f:
        raw = f.read(65)  # a name is ~20 bytes; never read a huge or endless file whole
    available = [p.name for p in list_checkpoints(run_dir)]
    name = raw.decode("utf-8", errors="replace").strip()
    path = folder / name
    if not _NAME.match(name) or len(raw) > 64 or path.is_symlink() or (path.exists() and not path.is_file()):
        raise UsageError(f"{latest} names {name[:64]!r}, which is not a checkpoint file of this run (a "
                         f"step-NNNNNNN.pt file inside {folder}); available: {available}. Write the name of "
                         "the one to use into it (or delete it to start the run over)")
    if not path.exists():
        raise NotFoundError(f"{latest} names {path.name}, which does not exist; available: {available}")
    return path


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (a fresh run; a resumed one restores ``rng_state`` instead)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) RNG states as weights_only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | Path, step: int, model: Method, optimizer: torch.optim.Optimizer,
                    config: dict, ranks: list[dict], keep: int = 0, scaler=None) -> Path:
    """Write ``step-NNNNNNN.pt`` atomically, then point ``latest`` at it.

    Args:
        run_dir: The run folder.
        step: Updates taken so far (the schedule resumes at this step).
        model: The unwrapped method (``Method``: backbone, heads, momentum encoders, queues).
        optimizer: Its optimizer.
        config: The resolved config dict (as in RUN/config.json).
        ranks: Per-rank state in rank order: ``{"rng": rng_state(), "data": loader position}``.
        keep: Keep only the newest ``keep`` checkpoints (0 = all).
        scaler: The fp16 ``torch.amp.GradScaler``; its state is saved when it is enabled.
    """
    folder = Path(run_dir) / "checkpoints"
    path = folder / checkpoint_name(step)
    payload = {"format_version": FORMAT_VERSION, "step": step, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "config": config, "ranks": ranks}
    if scaler is not None and scaler.is_enabled():
        payload["scaler"] = scaler.state_dict()
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as "unexpected pos ..."
        _raise_if_disk_full(folder, path, payload, e)
        raise
    # `latest` moves only after the checkpoint is complete: a crash in between leaves the old one.
    atomic_write_text(folder / "latest", path.name + "\n")
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            old.unlink()
    return path


class DiskFullError(UsageError, OSError):
    """The disk of the run folder filled up while a checkpoint was written (the previous one is intact)."""


def _raise_if_disk_full(folder: Path, path: Path, payload: dict, error: Exception) -> None:
    need = sum(t.numel() * t.element_size() for t in _tensors(payload))
    free = shutil.disk_usage(folder).free
    if getattr(error, "errno", None) in (28, 122) or free < need:  # ENOSPC, EDQUOT
        latest = folder / "latest"
        kept = latest.read_text().strip() if latest.exists() else "none yet"
        raise DiskFullError(f"no space left on the disk of {folder} writing {path.name} ({free / 2**20:.1f} MiB "
                            f"free, a checkpoint takes {need / 2**20:.1f} MiB); the last checkpoint ({kept}) is "
                            f"intact: free space, then continue with `rhovid train --out {folder.parent} --resume`") from error


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; clear error for a missing, damaged or foreign file.

    ``weights_only`` refuses every pickled object other than tensors and plain containers, so a
    hostile file cannot run code; whatever else is wrong with it is reported as this one error.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle payloads refused by weights_only, not a torch file at all
        others = []
        if path.parent.name == "checkpoints":
            others = [p.name for p in list_checkpoints(path.parent.parent) if p.name != path.name]
        hint = f"; other checkpoints of this run: {others}" if others else ""
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"checkpoint {path} is damaged or truncated ({first}){hint}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path} is not a rhovid checkpoint (format_version {FORMAT_VERSION})")
    kinds = {"step": int, "model": dict, "optimizer": dict, "config": dict, "ranks": list}
    wrong = [k for k, t in kinds.items() if not isinstance(ckpt.get(k), t) or isinstance(ckpt.get(k), bool)]
    if wrong:
        raise UsageError(f"{path} is not a complete rhovid checkpoint: {wrong} missing or of the wrong type")
    return ckpt


def check_checkpoint_config(ckpt: dict, run_config: dict, path: str | Path) -> None:
    """Refuse a checkpoint another run wrote: its config must equal the run's ``config.json``, except
    for the fields a resume may change (``RESUMABLE_CHANGES``) and ``steps`` (``--resume --steps N``
    extends a run; its earlier checkpoints keep the old length)."""
    from rhovid.train.config import RESUMABLE_CHANGES, changes_between

    try:
        changed = changes_between(ckpt["config"], run_config)
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"checkpoint {path} holds a config this version cannot read ({e})") from None
    changed = [k for k in changed if k not in RESUMABLE_CHANGES and k != "steps"]
    if changed:
        raise UsageError(f"checkpoint {path} was written by another run: its config differs from the run's "
                         f"config.json in {changed[:8]}; use a checkpoint of this run")


def find_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """The checkpoint of ``run_dir`` at ``step`` (None = latest); errors name what exists.

    A reader: it never deletes anything, not even a stale ``.tmp-*`` (that may be the checkpoint a
    running ``rhovid train`` is writing; only the training run that owns the folder sweeps them).
    """
    run_dir = Path(run_dir)
    if step is None:
        path = latest_checkpoint(run_dir)
        if path is None:
            raise NotFoundError(f"{run_dir} has no checkpoints (no {run_dir / 'checkpoints' / 'latest'})")
        return path
    path = run_dir / "checkpoints" / checkpoint_name(step)
    if not path.exists():
        raise NotFoundError(f"{run_dir} has no checkpoint at step {step}; available: "
                            f"{[p.name for p in list_checkpoints(run_dir)]}")
    return path


def load_backbone(run_dir: str | Path, step: int | None = None, map_location="cpu") -> tuple[nn.Module, dict]:
    """The pretrained backbone of a run, in eval mode, and the run's resolved config dict.

    Args:
        run_dir: A folder written by ``rhovid train`` (config.json + checkpoints/).
        step: Which checkpoint (None = ``latest``).
        map_location: Device for the weights.

    Returns:
        ``(backbone, config)``: backbone maps ``(N, C, T, H, W)`` to pooled features ``(N, D)``.
    """
    from rhovid.train.methods import build_method

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = find_checkpoint(run_dir, step)
    ckpt = load_checkpoint(path, map_location=map_location)
    check_checkpoint_config(ckpt, config, path)
    method: Method = build_method(config["method"], arch=config["arch"], **config.get("method_kwargs", {}))
    try:
        method.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # missing / unexpected keys or shapes: not this method's weights
        raise UsageError(f"checkpoint {path} does not hold the weights of a {config['method']}/{config['arch']} "
                         f"model ({str(e).splitlines()[0]})") from None
    return method.backbone.eval(), config


def read_run_config(run_dir: str | Path) -> dict:
    """``RUN/config.json`` as a dict, checked against ``TrainConfig`` (types, known methods and archs)."""
    from rhovid.config import from_dict
    from rhovid.train.config import TrainConfig

    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise NotFoundError(f"{run_dir} is not a training run: {path} is missing")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"a JSON {type(config).__name__}, not an object")
        from_dict(TrainConfig, config, strict=False)  # raises naming a field of the wrong type
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is damaged or not a rhovid run config ({e})") from None
    return config


def _tuples_to_lists(obj):
    if isinstance(obj, tuple):
        return [_tuples_to_lists(v) for v in obj]
    return obj
