"""Process-group helpers and a gradient-carrying all-gather for negatives across devices.

``init_distributed`` joins the torchrun group only when ``WORLD_SIZE > 1``; every other function
works without a process group (world size 1), so single-process runs and tests never need
`torch.distributed`.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from rhovid.errors import UsageError


def is_distributed() -> bool:
    """True when a default process group exists and has more than one member."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_distributed(device: str) -> tuple[int, int, torch.device, bool]:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; returns (rank, world, device, created)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but CUDA is not available; use --device cpu")
    created = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        created = True
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank(), world_size(), torch.device("cuda", local), created
    return rank(), world_size(), torch.device("cpu"), created


def gather_objects(obj, world: int) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (a one-element list without a process group)."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed upstream gradients.

    Each rank computes a loss over the gathered tensor, so the gradient of the *global* loss
    (the sum over ranks, which DDP then averages) w.r.t. this rank's input is the sum over ranks
    of their gradients for this slice: all_reduce(SUM) then take our slice. This is what SimCLR
    (Chen et al. 2020, Sec. 2 "global BN"/large batch) and PySlowFast's `AllGatherWithGradient` do.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank = dist.get_rank()
        ctx.n = x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (N, ...) from every rank in rank order -> (world * N, ...), keeping grads.

    Every rank must pass the same N. Returns `x` itself when not distributed.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Like `gather_with_grad` but detached (for MoCo keys entering the queue)."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum `x` over ranks in place (no-op without a process group); returns `x`."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


_SUBGROUPS: dict[int, object] = {}


def subgroup(size: int):
    """The process group of this rank's block of ``size`` consecutive ranks (created once, collectively).

    torchrun numbers the processes of one machine consecutively, so ``size = LOCAL_WORLD_SIZE``
    is this machine's group (PySlowFast's ``local=True`` gathers) and ``size = 8`` the groups of
    ``BN.NUM_SYNC_DEVICES: 8`` (NaiveSyncBatchNorm). None without a process group; the default
    group when ``size`` covers every rank.
    """
    if not is_distributed():
        return None
    world = world_size()
    if size <= 0 or size >= world:
        return dist.group.WORLD
    if world % size:
        raise ValueError(f"{world} processes cannot be split into groups of {size}")
    if size not in _SUBGROUPS:
        _SUBGROUPS[size], _ = dist.new_subgroups(group_size=size)
    return _SUBGROUPS[size]


def local_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE; the world size without it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


def _gather_in(group, x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts)


@torch.no_grad()
def shuffled_forward(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` with MoCo's shuffle BN over this machine's processes (He et al. 2020, Sec. 3.3).

    PySlowFast's ``_batch_shuffle`` / ``_batch_unshuffle`` with ``LOCAL_SHUFFLE_BN: True``
    (``slowfast/models/contrastive.py:168-224``): the inputs of the machine's processes are
    gathered, permuted by rank 0's random permutation (broadcast to every rank), each process
    encodes its slice of the permuted batch (so its BatchNorm sees other processes' samples),
    and the outputs are gathered and put back in the original order. Without a process group it
    is ``fn(x)`` (a permutation within one batch does not change BatchNorm).
    """
    if not is_distributed():
        return fn(x)
    group = subgroup(local_size())
    size, me = dist.get_world_size(group), dist.get_rank(group)
    xs = _gather_in(group, x)
    perm = torch.randperm(xs.shape[0]).to(x.device)
    dist.broadcast(perm, src=0)
    perm = perm.view(size, -1)
    ys = _gather_in(group, fn(xs[perm[me]]))
    restore = torch.argsort(perm.view(-1)).view(size, -1)
    return ys[restore[me]]
