"""PySlowFast checkpoints of ``slow_r50``: the key mapping, reading their ``.pyth``, writing one.

The names come from PySlowFast's model code (facebookresearch/SlowFast):

- ``video_model_builder.py`` ``ResNet._construct_network``: modules ``s1`` (stem), ``s2``..``s5``
  (``ResStage``), ``pathway0_pool`` (a parameter-free max pool, identity for ``slow``) and ``head``;
- ``stem_helper.py`` ``VideoModelStem`` -> ``pathway0_stem`` = ``ResNetBasicStem`` with ``conv``,
  ``bn`` (then ReLU and the 1x3x3 max pool);
- ``resnet_helper.py`` ``ResStage`` -> ``pathway0_res{i}`` = ``ResBlock`` with ``branch1``,
  ``branch1_bn`` (projection shortcut, block 0 only) and ``branch2`` = ``BottleneckTransform`` with
  ``a``, ``a_bn``, ``b``, ``b_bn``, ``c``, ``c_bn`` (Tx1x1, 1x3x3 with the spatial stride, 1x1x1);
- ``contrastive.py`` ``ContrastiveModel``: the trained network is ``backbone``, MoCo/BYOL's
  momentum copy ``backbone_hist``; the projection MLP and BYOL predictor live in ``backbone.head``;
- ``utils/checkpoint.py`` ``save_checkpoint``: ``torch.save({"epoch", "model_state",
  "optimizer_state", "cfg": cfg.dump() (a YAML string)[, "scaler_state"]})`` of the unwrapped model,
  and ``load_checkpoint`` keeps the entries whose name and shape match the model, after removing
  each ``TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN`` (``("backbone.",)`` in configs/contrastive_ssl).

rhovid's ``slow_r50`` has the same layers in the same order (train/models/resnet3d.py), so the
mapping is a renaming: ``stem.0/1`` <-> ``s1.pathway0_stem.conv/bn``; ``resS.B.branch.{0,1,3,4,6,7}``
<-> ``sS.pathway0_resB.branch2.{a,a_bn,b,b_bn,c,c_bn}``; ``resS.B.shortcut.{0,1}`` <->
``sS.pathway0_resB.branch1{,_bn}``. tests/train/test_slowfast_checkpoint.py checks it against
PySlowFast's own ``ResNet`` where its code imports, and against the names and shapes of their
source everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

ARCH = "slow_r50"
"""The only arch with a PySlowFast counterpart here (their ``MODEL.ARCH: slow``, ``RESNET.DEPTH: 50``)."""

_BRANCH = {"0": "a", "1": "a_bn", "3": "b", "4": "b_bn", "6": "c", "7": "c_bn"}
_SHORTCUT = {"0": "branch1", "1": "branch1_bn"}
_RHOVID_KEY = re.compile(r"res([2-5])\.(\d+)\.(branch|shortcut)\.(\d)\.(\w+)")
_SLOWFAST_KEY = re.compile(r"s([2-5])\.pathway0_res(\d+)\.(branch2\.(a|a_bn|b|b_bn|c|c_bn)|branch1|branch1_bn)\.(\w+)")
_STEM = {"stem.0.": "s1.pathway0_stem.conv.", "stem.1.": "s1.pathway0_stem.bn."}


def slowfast_key(key: str) -> str:
    """A ``slow_r50`` backbone tensor name in PySlowFast's ``ResNet`` naming (see the module docstring)."""
    for ours, theirs in _STEM.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    m = _RHOVID_KEY.fullmatch(key)
    table = {"branch": _BRANCH, "shortcut": _SHORTCUT}.get(m[3]) if m else None
    if m is None or m[4] not in table:
        raise ValueError(f"{key!r} has no PySlowFast slow_r50 counterpart")
    stage, block, kind, index, tensor = m.groups()
    module = f"branch2.{table[index]}" if kind == "branch" else table[index]
    return f"s{stage}.pathway0_res{block}.{module}.{tensor}"


def rhovid_key(key: str) -> str:
    """The inverse of ``slowfast_key``: a PySlowFast ``ResNet`` trunk name in rhovid's naming."""
    for ours, theirs in _STEM.items():
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    m = _SLOWFAST_KEY.fullmatch(key)
    if m is None:
        raise ValueError(f"{key!r} is not a PySlowFast slow_r50 trunk tensor (s1..s5)")
    stage, block, module, sub, tensor = m.groups()
    if sub is not None:
        index = {v: k for k, v in _BRANCH.items()}[sub]
        return f"res{stage}.{block}.branch.{index}.{tensor}"
    index = {v: k for k, v in _SHORTCUT.items()}[module]
    return f"res{stage}.{block}.shortcut.{index}.{tensor}"


def read_slowfast(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The ``slow_r50`` backbone of a PySlowFast checkpoint, in rhovid's names.

    Accepts what ``save_checkpoint`` writes (``{"model_state": ...}``) or a bare state dict, of a
    ``ContrastiveModel`` (trunk under ``backbone.``; ``backbone_hist.`` and the heads are not the
    backbone and are left out) or of a plain ``ResNet`` (trunk at the top level). Loaded with
    ``torch.load(weights_only=True)``: tensors, numbers and strings only, no code runs.

    Returns:
        ``(state, info)``: the state dict for ``build_backbone("slow_r50")`` and
        ``{"prefix", "epoch", "ignored": [names left out]}``.

    Raises:
        ValueError: no ``s1``..``s5`` trunk in the file, or a trunk tensor rhovid's ``slow_r50``
            has no place for.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict (PySlowFast checkpoint or state dict), got {type(ckpt).__name__}")
    state = ckpt.get("model_state", ckpt)
    prefix = "backbone." if any(k.startswith("backbone.s1.") for k in state) else ""
    if prefix == "" and not any(k.startswith("s1.") for k in state):
        raise ValueError(f"{path}: no PySlowFast ResNet trunk (keys s1.* or backbone.s1.*); first keys: "
                         f"{list(state)[:5]}")
    out, ignored = {}, []
    for key, value in state.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name is None or not re.match(r"s[1-5]\.", name):
            ignored.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
        out[rhovid_key(name)] = value
    return out, {"prefix": prefix, "epoch": ckpt.get("epoch") if "model_state" in ckpt else None,
                 "ignored": ignored}


def load_slowfast_backbone(path: str | Path):
    """A rhovid ``slow_r50`` (eval mode) holding a PySlowFast checkpoint's backbone, and its ``info``.

    Raises:
        ValueError: see ``read_slowfast``; or the trunk does not fill the backbone exactly
            (a missing or extra tensor, or a shape of another architecture), naming them.
    """
    from rhovid.train.models import build_backbone

    state, info = read_slowfast(path)
    backbone = build_backbone(ARCH)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own if k in state
              and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        raise ValueError(f"{path} is not a PySlowFast Slow-R50 (8x8 / 4x16) backbone: "
                         f"missing {[slowfast_key(k) for k in missing][:5]}, unexpected {extra[:5]}, shapes {shapes[:3]}")
    backbone.load_state_dict(state)
    return backbone.eval(), info


def to_slowfast(state: dict[str, torch.Tensor]) -> dict:
    """A ``slow_r50`` backbone state dict as a PySlowFast checkpoint dict: ``{"model_state":
    {PySlowFast names}}`` without ``epoch``, so their ``load_checkpoint`` loads the weights and
    neither an optimizer state nor an epoch (``TRAIN.CHECKPOINT_FILE_PATH`` in their linear /
    fine-tune configs; the classifier ``head.projection`` stays theirs)."""
    return {"model_state": {slowfast_key(k): v for k, v in state.items()}}
