"""The run folder's rules: start, start over, resume, extend or refuse, each with a message that
says what happened and what to do (issue 13 item 14).

``inspect_run_dir`` only reads; ``claim_run_dir`` is what the writing process (rank 0) holds for the
whole run: an exclusive lock on ``RUN/.lock``, the same inspection repeated under it, and the
clean-up only the owner may do (stale ``.tmp-*`` files of a killed run, the files of a start that
stopped before its first checkpoint).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rhovid.atomic import read_jsonl, sweep_temporaries
from rhovid.errors import NotFoundError, UsageError
from rhovid.lock import exclusive_lock
from rhovid.train.checkpoint import checkpoint_step, latest_checkpoint, list_checkpoints, read_run_config
from rhovid.train.config import RESUMABLE_CHANGES, TrainConfig, changes_from_saved

LOCK = ".lock"
_RUN_FILES = ("config.json", "metrics.jsonl", "checkpoints", "eval", "backbone.pt", "backbone.pt.json", LOCK)


@dataclass(frozen=True)
class RunFolder:
    """What ``rhovid train`` found in its ``--out`` folder and will do with it."""

    action: Literal["start", "restart", "resume", "finished"]
    """start: empty or missing; restart: a run without any checkpoint (a start that stopped before
    its first one) begins again at step 0; resume: continue from ``checkpoint``; finished: the
    checkpoint is at the last step, nothing to do."""
    checkpoint: Path | None = None
    """The checkpoint to resume from (resume, finished)."""
    step: int = 0
    """Its step."""
    steps_changes: list[dict] = field(default_factory=list)
    """Schedule changes of the run so far, plus this one (``--resume --steps N``), for config.json."""


def _is_run_file(name: str) -> bool:
    return name in _RUN_FILES or name.startswith("events.out.tfevents.") or name.startswith(".tmp-")


def inspect_run_dir(run_dir: str | Path, cfg: TrainConfig, resume: bool) -> RunFolder:
    """Decide what to do with ``run_dir`` (reads only); raise a ``UserError`` saying what to do otherwise."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory (--out names the run folder)")
    content = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK) if run_dir.exists() else []
    ckpt = latest_checkpoint(run_dir) if content else None
    if ckpt is None and list_checkpoints(run_dir):
        raise UsageError(f"{run_dir / 'checkpoints'} holds checkpoints but no 'latest' file naming one; write the "
                         f"name of the newest ({list_checkpoints(run_dir)[-1].name}) into it, then --resume")
    if not resume:
        if not content:
            return RunFolder("start")
        if ckpt is not None:
            raise UsageError(f"run folder {run_dir} already holds a run (last checkpoint {ckpt.name}): continue it "
                             f"with `rhovid train --out {run_dir} --resume` (add --steps N to train it longer), "
                             "or choose another --out")
        if not (run_dir / "config.json").exists() or not all(_is_run_file(n) for n in content):
            raise UsageError(f"run folder {run_dir} is not empty and is not a run (it holds {content[:5]}): choose "
                             "another --out, or empty it")
        return RunFolder("restart")  # stopped before its first checkpoint: there is nothing to keep
    saved = saved_config(run_dir)
    if ckpt is None:
        return RunFolder("restart")  # nothing trained yet: start at step 0 with this command's config
    step = checkpoint_step(ckpt)
    changed = changes_from_saved(saved, cfg)
    history = list(saved.get("steps_changes", []))
    if "steps" in changed:  # --resume --steps N: a longer (or shorter) schedule on purpose
        changed.remove("steps")
        if cfg.steps < step:
            raise UsageError(f"--steps {cfg.steps}: the run in {run_dir} is already at step {step}; give more steps")
        history.append({"at_step": step, "from": int(saved["steps"]), "to": cfg.steps})
    if changed:
        raise UsageError(f"--resume: the config differs from {run_dir / 'config.json'} in {changed}; exact resume "
                         f"needs the same config (only {list(RESUMABLE_CHANGES)} may change, and --steps N to "
                         "train longer)")
    return RunFolder("finished" if step >= cfg.steps else "resume", ckpt, step, history)


def saved_config(run_dir: str | Path) -> dict:
    """The config.json of the run ``--resume`` continues; the errors say what to do instead."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise NotFoundError(f"--resume: run folder {run_dir} does not exist, so there is nothing to continue; "
                            f"start the run without --resume (rhovid train --data DATA ... --out {run_dir})")
    if not (run_dir / "config.json").exists():
        raise UsageError(f"--resume: {run_dir} is not a training run (it has no config.json), so there is nothing "
                         "to continue; start a run there without --resume (if it is empty) or choose another --out")
    return read_run_config(run_dir)


@contextlib.contextmanager
def claim_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, planned: RunFolder) -> Iterator[RunFolder]:
    """Hold the run folder for the block (rank 0): lock it, re-inspect it under the lock, clean up.

    Raises:
        LockedError: another ``rhovid train`` holds the folder.
        UsageError: the folder changed since ``planned`` was inspected (another process wrote it).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(run_dir / LOCK, f"run folder {run_dir}"):
        now = inspect_run_dir(run_dir, cfg, resume)
        if (now.action, now.step) != (planned.action, planned.step):
            raise UsageError(f"run folder {run_dir} changed while this run started (another process wrote it): "
                             "check it and rerun")
        sweep_temporaries(run_dir / "checkpoints")  # the owner's own leftovers from a killed run
        sweep_temporaries(run_dir)
        if now.action == "restart":  # files of a start that stopped before its first checkpoint
            for p in [run_dir / "metrics.jsonl", *run_dir.glob("events.out.tfevents.*")]:
                p.unlink(missing_ok=True)
        yield now


def final_loss(run_dir: Path, step: int) -> float | None:
    """The loss logged at ``step`` (metrics.jsonl), None when it was not logged."""
    recs = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("step") == step]
    return float(recs[-1]["loss"]) if recs else None


def steps_record(history: list[dict]) -> dict:
    """The ``config.json`` entry recording schedule changes (none: no entry)."""
    return {"steps_changes": list(history)} if history else {}
