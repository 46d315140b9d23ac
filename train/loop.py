"""The training loop, readable top to bottom (nanoGPT/MAE style): no callbacks, no trainer class.

``train(cfg, run_dir)`` runs single-process, or one process per device under ``torchrun``
(DDP: NCCL on GPU, gloo on CPU; the process group is initialised from the environment when
``WORLD_SIZE > 1``). Each step: next batch -> LR from the schedule (a pure function of the
step) -> forward under bf16/fp16 autocast on GPU -> NaN/inf guard -> backward (fp16: loss-scaled)
-> method ``before_update`` (gradient surgery; may skip the update) -> optimizer step -> method
``after_step`` (momentum encoders) -> metrics / checkpoint. The method is used only through the
interface ``rhovid.train.methods.Method``. ``--resume`` restores the
model, optimizer, schedule step, loader position and every RNG, so an interrupted run reaches
the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from rhovid.config import save_config, to_dict
from rhovid.errors import UsageError
from rhovid.train.batch_stream import BatchStream
from rhovid.train.checkpoint import (
    check_checkpoint_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from rhovid.train.config import TrainConfig, replace_data
from rhovid.train.distributed import gather_objects, init_distributed
from rhovid.train.metrics import MetricsWriter, StepTimer
from rhovid.train.optim import build_optimizer, lr_at, set_lr
from rhovid.train.run_dir import claim_run_dir, final_loss, inspect_run_dir, steps_record


class NonFiniteLossError(FloatingPointError):
    """The loss (or one of its terms) became NaN/inf; the message names the step and the term."""


def train(cfg: TrainConfig, run_dir: str | Path, batches: Iterable[dict] | None = None,
          resume: bool = False) -> dict:
    """Pretrain ``cfg.method`` and write the run folder (config.json, metrics, events, checkpoints).

    Args:
        cfg: The resolved run config.
        run_dir: Output folder; must be empty or missing unless ``resume`` (rules and messages:
            ``train/run_dir.py``). Rank 0 holds ``RUN/.lock`` while it trains.
        batches: Batches to train on instead of a ``ClipLoader`` built from ``cfg.data`` (each a dict
            with ``video`` (B, rho, C, T, H, W) and the other loader keys, B = this process's share).
            Re-iterated once per epoch; ``set_epoch``/``state_dict``/``load_state_dict`` are used
            when present, otherwise resume replays the epoch up to the saved position.
        resume: Continue from ``RUN/checkpoints/latest`` (starts at step 0 when there is none yet);
            ``cfg.steps`` may differ from the saved config's to lengthen the schedule (recorded in
            config.json as ``steps_changes``).

    Returns:
        ``{"step", "loss", "checkpoint", "rank"}`` of the finished run, plus ``"finished_before": True``
        when a resumed run had already reached ``cfg.steps`` (nothing was trained; ``loss`` is the one
        logged at that step, or None).
    """
    for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
        if getattr(cfg, name) < 1:  # before anything is written: a 0-step run would save nothing useful
            raise UsageError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.data.rho < 2 or (cfg.method == "constcl" and cfg.data.rho != 2):
        raise UsageError(f"data.rho={cfg.data.rho}: every method contrasts the rho clips of a video, so rho >= 2 "
                         "(ConST-CL: exactly 2)")
    if cfg.method == "constcl" and cfg.data.boxes is None:
        raise UsageError("ConST-CL's region loss needs boxes: train with --boxes random or a stored box set "
                         "(rhovid boxes DATA --list)")
    rank, world, device, own_group = init_distributed(cfg.device)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock (rank 0), released on any exit
            return _train(cfg, Path(run_dir), batches, resume, rank, world, device, held)
    finally:
        if own_group:  # also on errors: an exiting process that still holds a gloo group can abort with
            dist.destroy_process_group()  # "terminate called without an active exception" (pytorch#190489)


def _train(cfg: TrainConfig, run_dir: Path, batches: Iterable[dict] | None, resume: bool,
           rank: int, world: int, device: torch.device, held: contextlib.ExitStack) -> dict:
    folder = inspect_run_dir(run_dir, cfg, resume)  # reads only: what to do, or a message saying what to do
    if folder.action == "finished":
        return {"step": folder.step, "loss": final_loss(run_dir, folder.step), "checkpoint": folder.checkpoint,
                "rank": rank, "finished_before": True}
    loader_cfg = None
    if batches is None:  # bad loader settings fail here, before the run folder is written
        from rhovid.train.data import check_loader_config

        loader_cfg = loader_config(cfg, rank, world)
        check_loader_config(loader_cfg)
    if world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    if cfg.batch_size % world:
        raise UsageError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")

    # Same initial weights on every rank (DDP would broadcast rank 0's anyway); per-rank RNG after.
    from rhovid.train.methods import Method, build_method

    torch.manual_seed(cfg.seed)
    model: Method = build_method(cfg.method, arch=cfg.arch, **cfg.method_kwargs)
    if cfg.sync_bn and world > 1:
        if device.type != "cuda":
            raise UsageError("sync_bn needs CUDA (torch's SyncBatchNorm has no CPU kernel); set sync_bn=false")
        from rhovid.train.distributed import subgroup

        # PySlowFast's NaiveSyncBatchNorm syncs BN.NUM_SYNC_DEVICES consecutive GPUs (batchnorm_helper.py)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=subgroup(cfg.sync_bn_devices))
    model.to(device)
    on_gpu = device.type == "cuda"
    if on_gpu and cfg.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    o = cfg.optim
    optimizer = build_optimizer(model, o.name, o.lr, o.momentum, o.weight_decay, o.lars_eta, o.nesterov, o.no_decay)
    # linear scaling rule (Goyal et al. 2017) of BASE_LR, WARMUP_START_LR and COSINE_END_LR alike
    # (PySlowFast's BASE_LR_SCALE_NUM_SHARDS, defaults.py:1281-1285)
    scale = cfg.batch_size / o.lr_batch
    schedule = dict(peak_lr=o.lr * scale, total_steps=cfg.steps, warmup_steps=o.warmup_steps,
                    warmup_lr=o.warmup_lr * scale, final_lr=o.final_lr * scale,
                    cosine_after_warmup=o.cosine_after_warmup)

    if batches is None:
        from rhovid.train.data import ClipLoader

        batches = ClipLoader(loader_cfg)  # finds the shards and box set and checks every worker forms a batch
        cfg = replace_data(cfg, workers=batches.cfg.workers)  # the resolved count: resume splits the data alike
    if rank == 0:  # only now: a start that fails above leaves no run folder to block the corrected rerun
        folder = held.enter_context(claim_run_dir(run_dir, cfg, resume, folder))
        save_config(cfg, run_dir / "config.json", extra={**provenance(world), **steps_record(folder.steps_changes)})
    stream = BatchStream(batches)
    try:
        steps_per_epoch = len(batches)  # type: ignore[arg-type]
    except TypeError:  # a plain iterable: epochs are only counted when they end
        steps_per_epoch = 0
    # fp16 needs a dynamic loss scale (PySlowFast's GradScaler under TRAIN.MIXED_PRECISION, train_net.py:152-172);
    # disabled it passes the loss and the step through unchanged
    scaler = torch.amp.GradScaler("cuda", enabled=on_gpu and cfg.precision == "fp16")
    start, ckpt_path = folder.step, folder.checkpoint
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        check_checkpoint_config(ckpt, to_dict(cfg), ckpt_path)
        if len(ckpt["ranks"]) != world:
            raise UsageError(f"{ckpt_path} was written by {len(ckpt['ranks'])} processes, this run has {world}; "
                             "exact resume needs the same number")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["ranks"][rank]["rng"])
        stream.load_state_dict(ckpt["ranks"][rank]["data"])
    else:
        seed_everything(cfg.seed + rank)

    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if on_gpu else None, find_unused_parameters=cfg.find_unused_parameters)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = torch.autocast("cuda", dtype=dtype) if on_gpu and dtype else contextlib.nullcontext()
    metrics = MetricsWriter(run_dir, enabled=rank == 0, resume_step=start if ckpt_path is not None else None)
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.method}", unit="step",
               disable=rank != 0 or not cfg.progress, dynamic_ncols=True)
    timer, window, loss = StepTimer(), {}, float("nan")
    model.train()
    for step in range(start, cfg.steps):
        batch = next(stream)
        # PySlowFast's epoch_exact = cur_epoch + cur_iter / data_size (tools/train_net.py:104)
        epoch = stream.epoch + (stream.index - 1) / steps_per_epoch if steps_per_epoch else float(stream.epoch)
        timer.mark_data()
        lr = lr_at(step, **schedule)
        set_lr(optimizer, lr)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast:
            out = ddp(batch)
        values = check_finite(step, out, world, device)  # one sync; raises before a bad update
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out["loss"]).backward()
        scaler.unscale_(optimizer)
        if o.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_grad)
        if model.before_update(step, epoch):
            scaler.step(optimizer)  # skipped by the scaler when fp16 gradients overflowed
        scaler.update()
        model.after_step(step, cfg.steps)
        if on_gpu:
            torch.cuda.synchronize()  # so compute time is the step's GPU time, not its launch time
        timer.mark_compute()
        loss = values["loss"]
        for k, v in values.items():
            window[k] = window.get(k, 0.0) + v
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            n = timer.steps
            times = timer.pop()
            rec = {"loss": window.pop("loss") / n, "terms": {k: v / n for k, v in window.items()}, "lr": lr,
                   "epoch": stream.epoch, **times,
                   "clips_per_s": times["steps_per_s"] * cfg.batch_size * cfg.data.rho, **_io_record(batches)}
            window.clear()
            metrics.log(done, rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.3g}", data=f"{times['data_frac']:.0%}",
                            **({"read": f"{rec['io']['bytes'] / 1e6:.0f}MB/{rec['io']['retries']}r"} if "io" in rec
                               else {}))
        bar.update(1)
        timer.mark_compute(step_done=False)  # logging is the loop's work, not data wait
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            ranks = gather_objects({"rng": rng_state(), "data": stream.state_dict()}, world)
            if rank == 0:
                ckpt_path = save_checkpoint(run_dir, done, model, optimizer, to_dict(cfg), ranks, scaler=scaler,
                                            keep=cfg.keep_checkpoints)
            timer.restart()  # checkpoint time is neither data wait nor compute
    bar.close()
    metrics.close()
    if world > 1:
        dist.barrier()  # no rank leaves (and destroys its group) while another still checkpoints
    summary = batches.summary() if hasattr(batches, "summary") else None
    io = {"io": batches.io_stats, "skipped": batches.skipped} if hasattr(batches, "io_stats") else {}
    return {"step": cfg.steps, "loss": loss, "checkpoint": ckpt_path, "rank": rank, "data": summary, **io}


def _io_record(batches) -> dict:
    """The loader's running totals for metrics.jsonl: bytes, requests, retries, failed reads, skipped."""
    if not hasattr(batches, "io_stats"):
        return {}
    return {"io": {**batches.io_stats.as_dict(), "skipped": batches.skipped}}


def check_finite(step: int, out: dict, world: int, device: torch.device) -> dict[str, float]:
    """Loss and term values averaged over ranks; raise ``NonFiniteLossError`` naming the first bad term.

    Each rank's loss covers its own anchors (negatives are gathered), so the mean over ranks is the
    global-batch loss. NaN/inf on any rank survives the mean, so every rank stops together (the
    others would otherwise hang in the next all-reduce).
    """
    names = ["loss", *out["terms"]]
    vals = torch.stack([out["loss"].detach().float().reshape(()),
                        *(torch.as_tensor(t).detach().float().reshape(()).to(out["loss"].device)
                          for t in out["terms"].values())])
    if world > 1:
        vals = vals.to(device)
        dist.all_reduce(vals, op=dist.ReduceOp.SUM)
        vals = vals / world
    values = dict(zip(names, vals.tolist()))
    if not all(np.isfinite(v) for v in values.values()):
        terms = [n for n in names[1:] if not np.isfinite(values[n])]
        culprit = terms[0] if terms else "loss"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise NonFiniteLossError(f"non-finite loss at step {step + 1}: term {culprit!r} is {values[culprit]} "
                                 f"({shown}); stopped before the update. Lower the LR / add warm-up and "
                                 "rerun with --resume from the last checkpoint")
    return values


def build_loader(cfg: TrainConfig, rank: int, world: int):
    """The ``ClipLoader`` for this process's share of the global batch."""
    from rhovid.train.data import ClipLoader

    return ClipLoader(loader_config(cfg, rank, world))


def loader_config(cfg: TrainConfig, rank: int, world: int):
    """The ``LoaderConfig`` of this process's share of the global batch: ``cfg.data`` as it is, plus
    the run-time fields (no per-knob copying: a new ``DataConfig`` field reaches the loader by itself)."""
    from rhovid.train.data import LoaderConfig

    if not cfg.data.data:
        raise UsageError("no --data given: pass the folder written by `rhovid ingest`")
    return LoaderConfig.from_data(cfg.data, batch_size=cfg.batch_size // world, device=cfg.device, seed=cfg.seed,
                                  rank=rank, world_size=world)


def provenance(world: int) -> dict:
    """Versions and launch facts saved beside the resolved config (DINOv2-style)."""
    import rhovid

    return {"versions": {"rhovid": rhovid.__version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version(),
                         "cuda": torch.version.cuda if torch.cuda.is_available() else None},
            # CPU kernels differ by SIMD level (AVX2 vs AVX512 round differently), and a few hundred
            # steps turn that into different weights: same seed, same code, other machine, other run
            "cpu": {"capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine()},
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "world_size": world}
