"""The training loop on in-memory batches: exact resume, NaN guard, run-folder rules, metrics."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from rhovid.atomic import read_jsonl
from rhovid.train.checkpoint import latest_checkpoint, load_checkpoint
from rhovid.train.config import OptimConfig, TrainConfig
from rhovid.train.loop import NonFiniteLossError, train


def _batches(n: int, b: int = 4, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"video": torch.randn(b, 2, 3, 4, 32, 32, generator=g), "label": torch.full((b,), -1),
             "key": [f"v{i}" for i in range(b)]} for _ in range(n)]


class ShuffledBatches:
    """A small stateful loader: reshuffles per epoch and adds global-RNG noise (like augmentation).

    The noise comes from torch's global RNG, so resume is exact only if the loop restores it.
    """

    def __init__(self, batches):
        self.batches, self.epoch, self.pos = batches, 0, 0

    def set_epoch(self, epoch):
        self.epoch, self.pos = epoch, 0

    def __iter__(self):
        order = torch.randperm(len(self.batches), generator=torch.Generator().manual_seed(self.epoch))
        while self.pos < len(order):
            b = self.batches[int(order[self.pos])]
            self.pos += 1
            yield {**b, "video": b["video"] + 0.1 * torch.randn_like(b["video"])}

    def state_dict(self):
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state):
        self.epoch, self.pos = state["epoch"], state["pos"]


class Interrupt:
    """Wraps a source and raises KeyboardInterrupt (like Ctrl-C) when batch ``at`` is requested."""

    def __init__(self, source, at):
        self.source, self.at, self.seen = source, at, 0

    def __getattr__(self, name):  # set_epoch / state_dict / load_state_dict of the wrapped source
        return getattr(self.source, name)

    def __iter__(self):
        for b in self.source:
            self.seen += 1
            if self.seen == self.at:
                raise KeyboardInterrupt
            yield b


def _cfg(**kw) -> TrainConfig:
    base = dict(method="simclr", arch="tiny", method_kwargs={"hidden_dim": 32, "proj_dim": 16}, batch_size=4,
                steps=8, checkpoint_every=3, log_every=1, progress=False,
                optim=OptimConfig(name="lars", lr=0.5, lr_batch=4, warmup_steps=2, warmup_lr=0.01))
    return TrainConfig(**{**base, **kw})


def _final_model(run):
    return load_checkpoint(latest_checkpoint(run))["model"]


@pytest.mark.parametrize("stateful", [True, False], ids=["stateful-loader", "replayed-list"])
def test_interrupt_and_resume_matches_uninterrupted(tmp_path, stateful):
    data = _batches(3)
    make = (lambda: ShuffledBatches(data)) if stateful else (lambda: data)
    cfg = _cfg()
    train(cfg, tmp_path / "full", batches=make())
    with pytest.raises(KeyboardInterrupt):  # interrupted while fetching the batch of step 6
        train(cfg, tmp_path / "cut", batches=Interrupt(make(), at=6))
    assert latest_checkpoint(tmp_path / "cut").name == "step-0000003.pt"
    train(cfg, tmp_path / "cut", batches=make(), resume=True)
    full, resumed = _final_model(tmp_path / "full"), _final_model(tmp_path / "cut")
    for k in full:
        assert torch.allclose(full[k].float(), resumed[k].float(), atol=1e-6, rtol=0), k
    # the metrics describe one trajectory: steps 4-5 logged before the interruption were dropped
    steps = [r["step"] for r in read_jsonl(tmp_path / "cut" / "metrics.jsonl")]
    assert steps == list(range(1, 9))
    losses = [r["loss"] for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")]
    assert losses == pytest.approx([r["loss"] for r in read_jsonl(tmp_path / "cut" / "metrics.jsonl")], abs=1e-5)


def test_nan_guard_names_step_and_term(tmp_path):
    data = _batches(4)
    data[2] = {**data[2], "video": data[2]["video"].clone()}
    data[2]["video"][0, 0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 3: term 'infonce' is nan"):
        train(_cfg(steps=4, checkpoint_every=2), tmp_path / "run", batches=data)
    # stopped before the bad update: the step-2 checkpoint is the last one and the params are finite
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_run_folder_rules(tmp_path):
    run = tmp_path / "run"
    train(_cfg(steps=2, checkpoint_every=2), run, batches=_batches(2))
    with pytest.raises(ValueError, match="not empty.*--resume"):
        train(_cfg(steps=2, checkpoint_every=2), run, batches=_batches(2))
    changed = _cfg(steps=2, checkpoint_every=2)
    changed = dataclasses.replace(changed, optim=dataclasses.replace(changed.optim, lr=9.0))
    with pytest.raises(ValueError, match=r"\['optim.lr'\]"):
        train(changed, run, batches=_batches(2), resume=True)
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"] == "simclr" and saved["versions"]["torch"] == torch.__version__
    assert saved["world_size"] == 1 and saved["optim"]["name"] == "lars"
    assert saved["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()  # explains cross-machine drift


def test_metrics_records_and_schedule(tmp_path):
    cfg = _cfg(steps=6, checkpoint_every=6, log_every=2)
    train(cfg, tmp_path / "run", batches=_batches(2))
    recs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [2, 4, 6]
    for r in recs:
        assert set(r) >= {"loss", "terms", "lr", "data_s", "compute_s", "data_frac", "steps_per_s", "epoch"}
        assert 0.0 <= r["data_frac"] <= 1.0 and r["compute_s"] > 0
        assert "infonce" in r["terms"]
    assert recs[-1]["epoch"] == 2  # 6 steps over 2 batches per epoch
    # logged lr is the schedule's value for the step's update (lr * 4 / lr_batch 4 = 0.5 peak)
    from rhovid.train.optim import lr_at

    assert recs[0]["lr"] == pytest.approx(lr_at(1, peak_lr=0.5, total_steps=6, warmup_steps=2, warmup_lr=0.01))
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))


def test_empty_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no batches"):
        train(_cfg(steps=2), tmp_path / "run", batches=[])


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", 0), ("log_every", 0)])
def test_impossible_counts_are_refused_before_the_run_folder(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field} must be >= 1, got {value}"):
        train(_cfg(**{field: value}), tmp_path / "run", batches=_batches(2))
    assert not (tmp_path / "run").exists()


def test_runs_saved_before_a_config_field_existed_still_resume_and_count_as_finished(tmp_path):
    from rhovid.evaluate.ablation import run_status

    run = tmp_path / "run"
    train(_cfg(steps=2, checkpoint_every=2), run, batches=_batches(2))
    saved = json.loads((run / "config.json").read_text())
    del saved["data"]["min_gap_s"]  # as written before the field was added
    (run / "config.json").write_text(json.dumps(saved))
    assert run_status(run, _cfg(steps=2, checkpoint_every=2)) == "finished"
    with pytest.raises(ValueError, match=r"data.min_gap_s"):  # a real change is still one
        run_status(run, _cfg(steps=2, checkpoint_every=2, data=dataclasses.replace(_cfg().data, min_gap_s=1.0)))
    assert train(_cfg(steps=2, checkpoint_every=2), run, batches=_batches(2), resume=True)["step"] == 2


@pytest.mark.parametrize("method, rho", [("simclr", 1), ("constcl", 3)])
def test_rho_the_method_cannot_use_is_refused_before_the_run_folder(tmp_path, method, rho):
    cfg = _cfg(method=method, method_kwargs={}, data=dataclasses.replace(_cfg().data, rho=rho))
    with pytest.raises(ValueError, match=f"data.rho={rho}"):
        train(cfg, tmp_path / "run", batches=_batches(2))
    assert not (tmp_path / "run").exists()


def test_every_data_field_reaches_the_loader_unchanged():
    """One place per knob: ``loader_config`` copies no field by name, so a DataConfig field (say a new
    augmentation knob) reaches the ClipLoader's config without any other edit."""
    from rhovid.train.augment import AugmentConfig
    from rhovid.train.data_config import DataConfig
    from rhovid.train.loop import loader_config

    data = DataConfig(data="DATA", rho=3, frames=5, stride=3, timespan_s=7.0, min_gap_s=1.0, crop=40,
                      augment=(AugmentConfig(hue=0.0), AugmentConfig(blur_p=1.0)), boxes="random", max_boxes=3,
                      box_frame="random", workers=1)
    cfg = dataclasses.replace(TrainConfig(), data=data, batch_size=6, seed=5)
    lc = loader_config(cfg, rank=1, world=2)
    assert {f.name: getattr(lc, f.name) for f in dataclasses.fields(DataConfig)} == dataclasses.asdict(data) | {
        "augment": data.augment}
    assert (lc.batch_size, lc.rank, lc.world_size, lc.seed) == (3, 1, 2, 5)
