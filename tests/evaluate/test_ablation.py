"""Ablation runner: box sets reused (never recomputed), finished runs skipped, outputs written."""

from __future__ import annotations

import json

import pytest

from rhovid.evaluate.ablation import Budget, Variant, resolve_box_sets, run_ablation, train_config

BUDGET = Budget(steps=2, batch_size=2, frames=2, stride=4, crop=32, workers=0, views="1x1",
                method_kwargs={"hidden_dim": 32, "proj_dim": 16}, progress=False)


def test_box_sets_computed_once_then_reused(split_data):
    log = []
    first = resolve_box_sets(split_data, ["random", "fh"], workers=0, log=log.append)
    assert first["random"] == "random" and first["fh"].startswith("fh-")
    assert any("box set fh: not stored; computing: rhovid boxes" in m for m in log)
    log.clear()
    again = resolve_box_sets(split_data, ["fh", first["fh"]], workers=0, log=log.append)
    assert again == {"fh": first["fh"], first["fh"]: first["fh"]}
    assert log == [f"box set fh: reused (stored) as {first['fh']}", f"box set {first['fh']}: reused (stored) as {first['fh']}"]
    with pytest.raises(KeyError, match="available"):
        resolve_box_sets(split_data, ["no-such-set"], workers=0, log=log.append)


def test_train_config_differs_only_in_the_swept_knob(split_data):
    a = train_config(Variant("constcl", boxes="random"), split_data, BUDGET, "random")
    b = train_config(Variant("constcl", boxes="slic"), split_data, BUDGET, "slic-12345678")
    assert a.data.boxes == "random" and b.data.boxes == "slic-12345678"
    assert a.steps == b.steps == 2 and a.seed == b.seed and a.data.crop == b.data.crop == 32
    assert train_config(Variant("byol", rho=3, timespan_s=1.5), split_data, BUDGET, None).data.rho == 3
    assert Variant("byol", None, 3, 1.5).name == "byol-rho3-ts1.5"


def test_ablation_resume_skips_finished_runs(split_data, tmp_path):
    variants = [Variant("byol", rho=2), Variant("byol", rho=3)]
    log = []
    s1 = run_ablation(split_data, tmp_path, variants, BUDGET, title="rho sweep", log=log.append)
    assert [r["status"] for r in s1["rows"]] == ["trained", "trained", "baseline"]
    ckpt = tmp_path / "byol-rho2" / "checkpoints" / "step-0000002.pt"
    mtime = ckpt.stat().st_mtime_ns
    md = (tmp_path / "ablation.md").read_text()
    assert "| byol-rho2 |" in md and "| random init |" in md and "linear top-1" in md
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log.clear()
    s2 = run_ablation(split_data, tmp_path, variants, BUDGET, title="rho sweep", log=log.append)
    assert [r["status"] for r in s2["rows"]] == ["skipped", "skipped", "baseline"]
    assert ckpt.stat().st_mtime_ns == mtime
    assert "run byol-rho2: finished (2 steps), skipped" in log
    assert not any("computed" in m for m in log)  # features reused too
    assert [r["results"] for r in s2["rows"]] == [r["results"] for r in s1["rows"]]
    assert json.loads((tmp_path / "ablation.json").read_text())["rows"][0]["rho"] == 2
    # same folder, different budget: refused rather than silently mixed
    with pytest.raises(ValueError, match="different config"):
        run_ablation(split_data, tmp_path, variants[:1], Budget(**{**BUDGET.__dict__, "steps": 3}), log=log.append)
