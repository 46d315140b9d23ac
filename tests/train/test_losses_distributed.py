"""Two gloo processes on halves of a batch give the single-process loss, gradients and codes.

This checks `gather_with_grad` (negatives from every rank, gradients summed back) and the
distributed Sinkhorn sums. The torchrun end-to-end test of the trainer lives with the loop.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rhovid.train.distributed import gather_with_grad, rank, world_size
from rhovid.train.losses import ConSTCLGlobalLoss, ConSTCLLocalLoss, RhoInfoNCE, sinkhorn

WORLD = 2


def _inputs():
    g = torch.Generator().manual_seed(0)
    return {
        "z": torch.randn(6, 3, 8, dtype=torch.float64, generator=g),
        "rz": torch.randn(6, 4, 8, dtype=torch.float64, generator=g),
        "rt": torch.randn(6, 4, 8, dtype=torch.float64, generator=g),
        "scores": torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)
        @ torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=1).t(),
    }


def _losses(z, rz, rt):
    # RhoInfoNCE on all 3 clips, ConST-CL's global loss on the first two; ConST-CL's local loss
    # with rz / rt as both the reconstructions and the region features of views a / b.
    infonce = RhoInfoNCE(0.1)(z) + ConSTCLGlobalLoss(0.1)(z[:, :2])
    ones = torch.ones(rz.shape[:2], dtype=torch.bool)
    instance = ConSTCLLocalLoss(0.2)(rz * 2, rt * 3, rz, rt, ones, ones)
    return infonce, instance


def _worker(r: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=WORLD)
    try:
        assert world_size() == WORLD and rank() == r
        x = _inputs()
        sl = slice(r * 3, (r + 1) * 3)
        z = x["z"][sl].clone().requires_grad_(True)
        rz = x["rz"][sl].clone().requires_grad_(True)
        rt = x["rt"][sl].clone().requires_grad_(True)
        infonce, instance = _losses(z, rz, rt)
        (infonce + instance).backward()
        gathered = gather_with_grad(torch.full((2, 1), float(r)))
        codes = sinkhorn(x["scores"][r * 6 : (r + 1) * 6], 0.05, 3)
        torch.save({"infonce": infonce.detach(), "instance": instance.detach(), "gz": z.grad, "grz": rz.grad,
                    "grt": rt.grad, "gathered": gathered, "codes": codes}, f"{out_dir}/rank{r}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    x = _inputs()
    z, rz, rt = (x[k].clone().requires_grad_(True) for k in ("z", "rz", "rt"))
    infonce, instance = _losses(z, rz, rt)
    (infonce + instance).backward()
    # Global loss = mean of the per-rank losses (equal anchors per rank) ...
    torch.testing.assert_close(sum(p["infonce"] for p in parts) / WORLD, infonce.detach())
    torch.testing.assert_close(sum(p["instance"] for p in parts) / WORLD, instance.detach())
    # ... and DDP averages gradients over ranks, so rank r's gradient / WORLD is the global one.
    torch.testing.assert_close(torch.cat([p["gz"] for p in parts]) / WORLD, z.grad)
    torch.testing.assert_close(torch.cat([p["grz"] for p in parts]) / WORLD, rz.grad)
    torch.testing.assert_close(torch.cat([p["grt"] for p in parts]) / WORLD, rt.grad)
    assert parts[0]["gathered"].flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    torch.testing.assert_close(torch.cat([p["codes"] for p in parts]), sinkhorn(x["scores"], 0.05, 3))
