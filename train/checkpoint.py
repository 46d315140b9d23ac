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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rhovid.atomic import atomic_path, atomic_write_text, sweep_temporaries
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
    """The checkpoint named by ``RUN/checkpoints/latest`` (None when the run has none yet)."""
    folder = Path(run_dir) / "checkpoints"
    latest = folder / "latest"
    if not latest.exists():
        return None
    path = folder / latest.read_text().strip()
    if not path.exists():
        raise FileNotFoundError(f"{latest} names {path.name}, which does not exist; "
                                f"available: {[p.name for p in list_checkpoints(run_dir)]}")
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
                    config: dict, ranks: list[dict], keep: int = 0) -> Path:
    """Write ``step-NNNNNNN.pt`` atomically, then point ``latest`` at it.

    Args:
        run_dir: The run folder.
        step: Updates taken so far (the schedule resumes at this step).
        model: The unwrapped method (``Method``: backbone, heads, momentum encoders, queues).
        optimizer: Its optimizer.
        config: The resolved config dict (as in RUN/config.json).
        ranks: Per-rank state in rank order: ``{"rng": rng_state(), "data": loader position}``.
        keep: Keep only the newest ``keep`` checkpoints (0 = all).
    """
    folder = Path(run_dir) / "checkpoints"
    path = folder / checkpoint_name(step)
    payload = {"format_version": FORMAT_VERSION, "step": step, "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "config": config, "ranks": ranks}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    # `latest` moves only after the checkpoint is complete: a crash in between leaves the old one.
    atomic_write_text(folder / "latest", path.name + "\n")
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            old.unlink()
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``; clear error for a missing or foreign file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except RuntimeError as e:  # torch's "PytorchStreamReader failed reading zip archive ..." and the like
        others = []
        if path.parent.name == "checkpoints":
            others = [p.name for p in list_checkpoints(path.parent.parent) if p.name != path.name]
        hint = f"; other checkpoints of this run: {others}" if others else ""
        raise ValueError(f"checkpoint {path} is damaged or truncated ({str(e).splitlines()[0]}){hint}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a rhovid checkpoint (format_version {FORMAT_VERSION})")
    return ckpt


def find_checkpoint(run_dir: str | Path, step: int | None = None) -> Path:
    """The checkpoint of ``run_dir`` at ``step`` (None = latest); errors name what exists."""
    run_dir = Path(run_dir)
    sweep_temporaries(run_dir / "checkpoints")
    if step is None:
        path = latest_checkpoint(run_dir)
        if path is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoints (no {run_dir / 'checkpoints' / 'latest'})")
        return path
    path = run_dir / "checkpoints" / checkpoint_name(step)
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} has no checkpoint at step {step}; available: "
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
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run: {cfg_path} is missing")
    config = json.loads(cfg_path.read_text())
    ckpt = load_checkpoint(find_checkpoint(run_dir, step), map_location=map_location)
    method: Method = build_method(config["method"], arch=config["arch"], **config.get("method_kwargs", {}))
    method.load_state_dict(ckpt["model"])
    return method.backbone.eval(), config


def _tuples_to_lists(obj):
    if isinstance(obj, tuple):
        return [_tuples_to_lists(v) for v in obj]
    return obj
