from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from rhovid.config import apply_overrides, from_dict, load_config, save_config, to_dict


@dataclass(frozen=True)
class Optim:
    lr: float = 0.1
    """base learning rate"""
    name: Literal["sgd", "lars"] = "sgd"
    """optimizer"""


@dataclass(frozen=True)
class Run:
    data: Path = Path("data")
    """dataset root"""
    steps: int = 10
    """optimizer steps"""
    crop: tuple[int, int] = (224, 224)
    """crop size"""
    boxes: str | None = None
    """box set"""
    amp: bool = False
    """bf16 autocast"""
    optim: Optim = field(default_factory=Optim)
    """optimizer settings"""


def test_save_load_round_trip(tmp_path):
    cfg = Run(data=tmp_path, steps=5, boxes="slic-0123abcd", optim=Optim(lr=0.3, name="lars"))
    save_config(cfg, tmp_path / "config.json", extra={"versions": {"torch": "x"}})
    assert load_config(Run, tmp_path / "config.json") == cfg
    assert to_dict(cfg)["data"] == str(tmp_path)


def test_overrides_coerce_to_field_types():
    cfg = apply_overrides(Run(), ["steps=7", "optim.lr=1e-3", "optim.name=lars", "crop=[112,112]", "amp=true",
                                  "boxes=fh-deadbeef"])
    assert cfg == Run(steps=7, crop=(112, 112), amp=True, boxes="fh-deadbeef", optim=Optim(lr=1e-3, name="lars"))
    assert apply_overrides(Run(boxes="x"), ["boxes=null"]).boxes is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=3", "unknown config key 'stepz'"),
        ("steps=1.5", "expected an integer"),
        ("steps=ten", "steps: expected an integer, got 'ten'"),
        ("optim.lr=abc", "optim.lr: expected a number, got 'abc'"),
        ("optim.name=adam", "not one of"),
        ("steps", "key=value"),
        ("steps.x=1", "not a nested config"),
        ("crop=[1,2,3]", "expected 2 values"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises((KeyError, ValueError), match=message):
        apply_overrides(Run(), [override])


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(KeyError, match="unknown config keys"):
        from_dict(Run, {"steps": 1, "typo": 2})
