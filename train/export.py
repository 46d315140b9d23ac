"""A run's pretrained backbone as a plain state dict for other codebases (``rhovid export``).

The ``.pt`` file holds tensors only (``torch.load(path, weights_only=True)`` returns the state
dict itself, ready for ``load_state_dict``); ``<file>.json`` beside it describes it: the
architecture, the key naming, which res5 branch, the input normalisation and clip shape of
pretraining, and the run and checkpoint it came from (format: train/FORMAT.md). Key namings:

- ``rhovid``: the names of this package's ``ResNet3D``; ``load_exported`` rebuilds the backbone.
- ``torchvision`` (``r3d18`` only): the names of ``torchvision.models.video.r3d_18``, whose
  architecture ``r3d18`` reproduces layer for layer (3x7x7 stem, 3x3x3 basic blocks, 1x1x1
  strided downsample), so ``r3d_18(num_classes=N).load_state_dict(sd, strict=False)`` leaves
  only the new classifier ``fc`` untrained: the usual UCF101/HMDB51 fine-tuning start.
- ``slowfast`` (``slow_r50`` only): a PySlowFast checkpoint ``{"model_state": {s1..s5 names}}``
  (train/slowfast_checkpoint.py owns the mapping) for ``TRAIN.CHECKPOINT_FILE_PATH`` of their
  linear / fine-tune configs; unlike the other namings the ``.pt`` is that dict, not the bare state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

import rhovid
from rhovid.atomic import atomic_path, atomic_write_json
from rhovid.train.augment import KINETICS_MEAN, KINETICS_STD
from rhovid.train.checkpoint import checkpoint_step, find_checkpoint, load_backbone
from rhovid.train.models.resnet3d import ResNet3D, build_backbone
from rhovid.train.slowfast_checkpoint import ARCH as SLOWFAST_ARCH
from rhovid.train.slowfast_checkpoint import to_slowfast

FORMAT = "rhovid-backbone"
FORMAT_VERSION = 1
KEYS = ("rhovid", "torchvision", "slowfast")
"""Key namings ``export`` writes."""
BRANCHES = ("global", "local")
"""res5 branches: ``global`` (every method), ``local`` (ConST-CL's duplicated res5, Sec. 3.3)."""

# r3d18 basic block: branch = conv, bn, relu, conv, bn -> torchvision's conv1 = (conv, bn, relu), conv2 = (conv, bn)
_TV_BRANCH = {"0": "conv1.0", "1": "conv1.1", "3": "conv2.0", "4": "conv2.1"}
_BLOCK_KEY = re.compile(r"res([2-5])\.(\d+)\.(branch|shortcut)\.(\d+)\.(\w+)")


def backbone_state(backbone: ResNet3D, branch: str = "global") -> dict[str, torch.Tensor]:
    """The backbone's tensors with one res5: ``global`` = ``res5``, ``local`` = ``res5_local``
    renamed to ``res5`` (so either loads into a plain backbone of the same arch)."""
    if branch not in BRANCHES:
        raise ValueError(f"branch {branch!r}: choose one of {', '.join(BRANCHES)}")
    state = backbone.state_dict()
    if branch == "local":
        if backbone.res5_local is None:
            raise ValueError("this backbone has no local branch (only ConST-CL's Y structure has res5_local); "
                             "export --branch global")
        state = {k: v for k, v in state.items() if not k.startswith("res5.")}
        state = {"res5." + k.removeprefix("res5_local.") if k.startswith("res5_local.") else k: v
                 for k, v in state.items()}
    else:
        state = {k: v for k, v in state.items() if not k.startswith("res5_local.")}
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def torchvision_key(key: str) -> str:
    """An ``r3d18`` tensor name in ``torchvision.models.video.r3d_18``'s naming.

    ``stem.*`` keeps its name (conv, bn at the same positions); ``resS.B.branch.I.*`` ->
    ``layer{S-1}.B.conv1.0|conv1.1|conv2.0|conv2.1.*``; ``resS.B.shortcut.I.*`` ->
    ``layer{S-1}.B.downsample.I.*``.
    """
    if key.startswith("stem.0.") or key.startswith("stem.1."):
        return key
    m = _BLOCK_KEY.fullmatch(key)
    if m is None or (m[3] == "branch" and m[4] not in _TV_BRANCH):
        raise ValueError(f"{key!r} has no torchvision r3d_18 counterpart")
    stage, block, kind, index, tensor = m.groups()
    module = _TV_BRANCH[index] if kind == "branch" else f"downsample.{index}"
    return f"layer{int(stage) - 1}.{block}.{module}.{tensor}"


def export(run_dir: str | Path, out: str | Path, step: int | None = None, keys: str = "rhovid",
           branch: str = "global") -> dict:
    """Write the run's backbone to ``out`` (tensors only) and its description to ``out.json``.

    Args:
        run_dir: A folder written by ``rhovid train``.
        out: The ``.pt`` file to write (replaced atomically if it exists).
        step: Checkpoint step (None = latest).
        keys: ``rhovid``, ``torchvision`` (``r3d18`` only) or ``slowfast`` (``slow_r50`` only).
        branch: ``global`` or ``local`` (ConST-CL).

    Returns:
        The description written to ``out.json``.
    """
    if keys not in KEYS:
        raise ValueError(f"keys {keys!r}: choose one of {', '.join(KEYS)}")
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the .pt file to write")
    ckpt = find_checkpoint(run_dir, step)  # names what exists when the step or the run is wrong
    # that checkpoint's step, not `latest` again: a run still training may have moved it meanwhile
    backbone, config = load_backbone(run_dir, checkpoint_step(ckpt))
    if keys == "torchvision" and config["arch"] != "r3d18":
        raise ValueError(f"torchvision keys exist for arch r3d18 only (torchvision's r3d_18); this run is "
                         f"{config['arch']!r}: export --keys rhovid")
    if keys == "slowfast" and config["arch"] != SLOWFAST_ARCH:
        raise ValueError(f"slowfast keys exist for arch {SLOWFAST_ARCH} only (PySlowFast's Slow-R50); this run is "
                         f"{config['arch']!r}: export --keys rhovid")
    state = backbone_state(backbone, branch)
    tensors = len(state)
    if keys == "torchvision":
        state = {torchvision_key(k): v for k, v in state.items()}
    elif keys == "slowfast":
        state = to_slowfast(state)
    data = config.get("data", {})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": config["arch"], "keys": keys, "branch": branch,
        "feature_dim": backbone.feature_dim, "tensors": tensors,
        "input": {"layout": "(N, C, T, H, W) RGB in [0, 1], then (x - mean) / std", "mean": list(KINETICS_MEAN),
                  "std": list(KINETICS_STD), "frames": data.get("frames"), "stride": data.get("stride"),
                  "crop": data.get("crop")},
        "run": str(Path(run_dir).resolve()), "method": config["method"], "checkpoint": ckpt.name,
        "rhovid": rhovid.__version__,
    }
    with atomic_path(out) as tmp:  # creates the parent folder
        torch.save(state, tmp)
    atomic_write_json(_meta_path(out), meta)
    return meta


def load_exported(path: str | Path) -> tuple[ResNet3D, dict]:
    """The backbone (eval mode) of a ``keys="rhovid"`` export and its description."""
    path = Path(path)
    meta_path = _meta_path(path)
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} is missing: {path} needs its description (written by rhovid export)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_path} is not a {FORMAT} v{FORMAT_VERSION} description")
    if meta["keys"] != "rhovid":
        raise ValueError(f"{path} has {meta['keys']} keys; load it with that library (rhovid reads keys=rhovid)")
    backbone = build_backbone(meta["arch"])
    backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return backbone.eval(), meta


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")
