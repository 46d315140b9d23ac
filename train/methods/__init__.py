"""Self-supervised methods (rhovid.train.methods): each composes a backbone, heads and a loss.

`METHODS` is a plain dict name -> class; `build_method(name, arch=..., **kwargs)` instantiates one.
Every method has the interface written down as ``protocol.Method`` (forward -> {"loss", "terms"},
``before_update``, ``after_step``, ``.backbone``), which is all the loop and the checkpoint code use.
"""

from __future__ import annotations

import inspect

from torch import nn

from .byol import BYOL
from .constcl import ConSTCL
from .moco import MoCo
from .protocol import Method, MethodOutput
from .simclr import SimCLR
from .swav import SwAV

__all__ = ["METHODS", "Method", "MethodOutput", "build_method"]

METHODS: dict[str, type[nn.Module]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "swav": SwAV,
    "constcl": ConSTCL,
}


def build_method(name: str, arch: str = "tiny", **kwargs) -> Method:
    """Build a method by name.

    Args:
        name: key of `METHODS` ("simclr", "moco", "byol", "swav", "constcl").
        arch: backbone name ("tiny", "r3d18", "r3d50", "slow_r50").
        **kwargs: the method's own typed arguments (temperature, queue_size, ...; see each class).

    Raises:
        KeyError: unknown method name.
        TypeError: an argument the method does not take (the message lists the ones it does).
    """
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"method {name!r} got unknown argument(s) {unknown}; it accepts {accepted}")
    return cls(arch=arch, **kwargs)
