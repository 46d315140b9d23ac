"""Two gloo processes under torchrun vs one process on the same global batch.

BatchNorm runs on running statistics (eval mode) in the gradient comparison: with batch
statistics each rank normalises its own half by design (SyncBatchNorm, which would make them
global, has no CPU kernel in torch), so only the gather and DDP's gradient averaging are compared.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from rhovid.atomic import read_jsonl
from rhovid.train.methods import build_method

KW = {"hidden_dim": 32, "proj_dim": 16}

GRAD_WORKER = """
import sys, torch
from rhovid.train.distributed import init_distributed
from rhovid.train.methods import build_method

rank, world, device, _ = init_distributed("cpu")
torch.manual_seed(0)
model = build_method("simclr", arch="tiny", hidden_dim=32, proj_dim=16).eval()
ddp = torch.nn.parallel.DistributedDataParallel(model)
video = torch.randn(8, 2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
out = ddp({"video": video.chunk(world)[rank]})  # this rank's half of the global batch
out["loss"].backward()
torch.save({"loss": out["loss"].detach(), "grads": {n: p.grad for n, p in model.named_parameters()}},
           f"{sys.argv[1]}/rank{rank}.pt")
torch.distributed.destroy_process_group()  # exiting with the group alive can abort (pytorch#190489)
"""

LOOP_WORKER = """
import sys, torch
from rhovid.train.config import OptimConfig, TrainConfig
from rhovid.train.loop import train

g = torch.Generator().manual_seed(0)
videos = [torch.randn(8, 2, 3, 4, 32, 32, generator=g) for _ in range(2)]
rank = int(__import__("os").environ["RANK"])
batches = [{"video": v.chunk(2)[rank], "key": [str(i) for i in range(4)]} for v in videos]
cfg = TrainConfig(method="simclr", arch="tiny", method_kwargs={"hidden_dim": 32, "proj_dim": 16}, batch_size=8,
                  steps=3, checkpoint_every=2, log_every=1, progress=False, optim=OptimConfig(lr=0.5, lr_batch=8))
out = train(cfg, sys.argv[1] + "/run", batches=batches)
torch.save(out, f"{sys.argv[1]}/result{rank}.pt")
"""


def _torchrun(script: str, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(port), str(path), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_processes_match_one_on_the_global_batch(tmp_path):
    _torchrun(GRAD_WORKER, tmp_path)
    torch.manual_seed(0)
    model = build_method("simclr", arch="tiny", **KW).eval()
    video = torch.randn(8, 2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    out = model({"video": video})
    out["loss"].backward()
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # each rank's loss averages its own anchors against the gathered negatives: their mean is global
    assert (got[0]["loss"] + got[1]["loss"]).item() / 2 == pytest.approx(out["loss"].item(), abs=1e-5)
    for rank in (0, 1):  # DDP-averaged gradients equal the single-process gradients on both ranks
        for n, p in model.named_parameters():
            assert torch.allclose(got[rank]["grads"][n], p.grad, atol=1e-6, rtol=1e-4), n


def test_loop_under_torchrun_writes_one_run(tmp_path):
    _torchrun(LOOP_WORKER, tmp_path)
    run = tmp_path / "run"
    ckpt = torch.load(run / "checkpoints" / "step-0000003.pt", weights_only=True)
    assert len(ckpt["ranks"]) == 2  # both ranks' RNG and loader positions for exact resume
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000003.pt"
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2, 3]  # rank 0 only
    results = [torch.load(tmp_path / f"result{r}.pt", weights_only=False) for r in (0, 1)]
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], abs=1e-6)  # logged loss = mean over ranks
    assert results[0]["checkpoint"] is not None and results[1]["checkpoint"] is None
