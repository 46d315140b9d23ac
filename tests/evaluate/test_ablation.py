"""Ablation runner: box sets reused (never recomputed), finished runs skipped, outputs written."""

from __future__ import annotations

import json

import pytest

from rhovid.evaluate.ablation import Budget, Variant, resolve_box_sets, run_ablation, train_config
from rhovid.evaluate.feature_store import list_features

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


def test_augmentation_overrides_reach_the_loader(monkeypatch):
    """``data.augment.*`` overrides (as the demo passes them) end up in the ClipLoader's config."""
    import rhovid.train.data as data_mod
    from rhovid.train.loop import build_loader

    seen = []
    monkeypatch.setattr(data_mod, "ClipLoader", lambda cfg: seen.append(cfg) or cfg)
    budget = Budget(steps=2, overrides=("data.augment.hue=0", "data.augment.area=[0.3,1.0]"))
    cfg = train_config(Variant("byol"), "DATA", budget, None)
    (aug,) = cfg.data.augment  # one view: the override reached it
    assert aug.hue == 0 and aug.area == (0.3, 1.0)
    build_loader(cfg, rank=0, world=1)
    assert seen[0].augment == cfg.data.augment and seen[0].augment[0].grayscale_p == 0.2


@pytest.mark.slow  # 60-80 s on 2 busy cores: make test-all
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


def test_ambiguous_method_name_is_an_error_not_a_recompute(split_data, tmp_path):
    import shutil

    from rhovid.store.zarr_store import BoxStore

    # a private copy: a second FH set must not leak into the shared fixture
    shutil.copytree(split_data, tmp_path / "data", ignore=shutil.ignore_patterns("features.zarr"))
    split_data = tmp_path / "data"
    resolve_box_sets(split_data, ["fh"], workers=0, log=lambda m: None)
    sets = [s["name"] for s in BoxStore(split_data).list_sets() if s["method"] == "fh"]
    if len(sets) == 1:  # a second FH set with other parameters makes the method name ambiguous
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "rhovid.cli", "boxes", str(split_data), "--method", "fh",
                        "--param", "scales=500", "--split", "train", "--workers", "0", "--no-progress"], check=True)
    log = []
    with pytest.raises(KeyError, match="has 2 box sets; name one"):
        resolve_box_sets(split_data, ["fh"], workers=0, log=log.append)
    assert not any("computing" in m for m in log)


def _cli(data, out, *knobs):
    from rhovid.cli import main

    return main(["ablation", "--data", str(data), *knobs, "--steps", "1", "--batch-size", "2", "--frames", "2",
                 "--stride", "4", "--crop", "32", "--workers", "0", "--views", "1x1", "--no-progress",
                 "--set", "method_kwargs.hidden_dim=32", "--set", "method_kwargs.proj_dim=16", "--out", str(out)])


@pytest.mark.slow  # 60-80 s on 2 busy cores: make test-all
def test_cli_box_sets_by_method_name_then_resume(split_data, tmp_path, capsys):
    heads = ["--set", "method_kwargs.tx_channels=8", "--set", "method_kwargs.tx_units=1"]
    assert _cli(split_data, tmp_path, "--method", "constcl", "--boxes", "random", "slic", *heads) == 0
    out = capsys.readouterr().out
    assert "box set random: drawn on the fly" in out
    assert "box set slic: reused (stored)" in out or "box set slic: not stored; computing" in out
    from rhovid.store.zarr_store import BoxStore

    slic = BoxStore(split_data).resolve("slic")
    assert "run constcl-random: training" in out and "run constcl-slic: training" in out
    md = (tmp_path / "ablation.md").read_text()
    assert "| constcl-slic | slic-" in md and "--boxes random slic" in md
    assert (tmp_path / "ablation.png").exists()
    cfg = json.loads((tmp_path / "constcl-slic" / "config.json").read_text())
    assert cfg["data"]["boxes"] == slic and cfg["steps"] == 1
    # rerun with the full set name: the same stored set and the same finished runs, nothing recomputed
    assert _cli(split_data, tmp_path, "--method", "constcl", "--boxes", "random", "slic", *heads) == 0
    out = capsys.readouterr().out
    assert f"box set slic: reused (stored) as {slic}" in out
    assert "run constcl-random: finished (1 steps), skipped" in out and "computing" not in out
    assert _cli(split_data, tmp_path / "by-name", "--method", "constcl", "--boxes", slic, *heads) == 0
    assert f"box set {slic}: reused (stored) as {slic}" in capsys.readouterr().out


def test_cli_sweeps_rho_and_timespan(split_data, tmp_path, capsys):
    store = tmp_path / "scratch" / "features.zarr"  # outside DATA, as for a read-only dataset
    assert _cli(split_data, tmp_path, "--method", "byol", "--rho", "2", "3", "--timespan", "0.5",
                "--features", str(store)) == 0
    assert {f["name"] for f in list_features(split_data, store)} >= {"byol-rho2-ts0.5", "byol-rho3-ts0.5"}
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert [(r["run"], r["rho"], r["timespan_s"]) for r in summary["rows"][:2]] == [
        ("byol-rho2-ts0.5", 2, 0.5), ("byol-rho3-ts0.5", 3, 0.5)]
    assert summary["rows"][-1]["status"] == "baseline"
    assert "--rho 2 3 --timespan 0.5" in summary["command"] and f"--features {store}" in summary["command"]
    assert "rho, timespan" in summary["title"]
    assert json.loads((tmp_path / "byol-rho3-ts0.5" / "eval" / "knn.json").read_text())["evaluation"] == "knn"
    with pytest.raises(SystemExit):
        _cli(split_data, tmp_path, "--method", "byol", "--rho", "two")


@pytest.mark.parametrize("option", [["knn", "--k", "0"], ["knn", "--temperature", "0"], ["linear", "--max-iter", "0"],
                                    ["finetune", "--lr", "-1"], ["knn", "--crop", "0"]])
def test_eval_refuses_bad_options_and_keeps_the_report(split_data, tmp_path, option):
    from rhovid.cli import main

    report = tmp_path / "report.json"
    report.write_text('{"kept": true}')
    rc = main(["eval", option[0], "--data", str(split_data), "--random-init", "--arch", "tiny", "--report",
               str(report), "--no-progress", *option[1:]])
    assert rc != 0
    assert json.loads(report.read_text()) == {"kept": True}


def test_knn_scores_refuses_zero_neighbours():
    import torch

    from rhovid.evaluate.knn import knn_scores

    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="k >= 1"):
        knn_scores(x, torch.zeros(4, dtype=torch.long), x, 2, k=0)
