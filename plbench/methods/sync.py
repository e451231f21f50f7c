"""Keeping a method's replicas identical under torchrun (``torch.distributed``); no-ops in one process.

Every process holds the whole method, per-image state for all N images included, indexed by the global
dataset index (:mod:`plbench.methods.api`). These helpers move what one process learns to all of them:

* :func:`gather_batch`: the global batch of a tensor with gradients (a loss over the whole batch);
* :func:`write_rows`: rows of per-image state written for this process's batch, gathered with
  ``all_gather`` as ``(indices, rows)`` pairs (padded to the largest batch) and written everywhere;
* :func:`average_gradients`: the gradients of the method's parameters, all-reduced and divided by the
  number of processes (what DDP does for the model's), so each process takes the same optimizer step;
* :func:`gather_scores`: the rows of an (N, C) score matrix that each process computed for its share of
  the training set, assembled on every process (epoch-end passes);
* :func:`check_replicas`: a cheap checksum per state tensor compared across processes; a method that
  wrote state without :func:`write_rows` is caught at the next checkpoint.

Every function is a collective call: all processes must call it, in the same order. Tensors travel on
the GPU under NCCL and on the CPU under gloo; bool tensors travel as uint8 (gloo has no bool).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as tdist
from torch import Tensor, nn

__all__ = ["is_distributed", "gather_batch", "gather_rows", "write_rows", "average_gradients", "gather_scores", "check_replicas"]


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def _wire_device() -> torch.device:
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather_padded(x: Tensor, differentiable: bool = False) -> list[Tensor]:
    """Every process's ``x`` (first dimensions may differ), in rank order, on ``x``'s device and dtype.

    ``differentiable``: gather with ``torch.distributed.nn.functional.all_gather``, whose backward sends each
    process's gradient of every part back to the part's owner, summed over processes (floating ``x`` only).
    """
    world, wire = tdist.get_world_size(), _wire_device()
    send = x.to(wire)
    if send.dtype == torch.bool:
        send = send.to(torch.uint8)
    n = torch.tensor([send.shape[0]], dtype=torch.int64, device=wire)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    tdist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    if differentiable:
        from torch.distributed.nn.functional import all_gather

        padded = torch.cat([send, send.new_zeros((longest - send.shape[0], *send.shape[1:]))])
        parts = list(all_gather(padded))
    else:
        padded = torch.zeros((longest, *send.shape[1:]), dtype=send.dtype, device=wire)
        padded[: send.shape[0]] = send
        parts = [torch.empty_like(padded) for _ in range(world)]
        tdist.all_gather(parts, padded)
    return [p[: int(s)].to(x.device, x.dtype) for p, s in zip(parts, sizes)]


def gather_batch(x: Tensor, differentiable: bool = True) -> Tensor:
    """The global batch: every process's rows ``x`` (B_r, ...) concatenated in rank order, with gradients.

    For a loss over the whole batch (an in-batch contrastive loss): every process computes the same loss
    of the gathered rows, and backward gives this process's rows the sum over processes of that loss's
    gradient, i.e. ``world_size`` times its gradient. Under DDP's gradient averaging, a loss backpropagated
    at weight 1 on every process therefore trains the parameters with exactly the single-process gradient
    of the global batch. ``x`` itself in one process.

    Args:
        x: (B_r, ...), floating when ``differentiable``; B_r may differ between processes and be 0.
        differentiable: False for tensors without gradients (dataset indices: any dtype).
    Returns:
        (sum B_r, ...).
    """
    if not is_distributed():
        return x
    return torch.cat(_all_gather_padded(x, differentiable=differentiable))


def gather_rows(indices: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Every process's ``(indices, rows)`` concatenated in rank order.

    Args:
        indices: int (B_r,) dataset indices of this process's rows.
        rows: (B_r, ...) values, any dtype.
    Returns:
        int64 (sum B_r,) and (sum B_r, ...); the inputs themselves in one process.
    Raises:
        ValueError: ``indices`` and ``rows`` of different lengths.
    """
    if indices.ndim != 1 or rows.shape[0] != indices.shape[0]:
        raise ValueError(f"expected indices (B,) and rows (B, ...), but got {tuple(indices.shape)} and "
                         f"{tuple(rows.shape)}")
    if not is_distributed():
        return indices.long(), rows
    return torch.cat(_all_gather_padded(indices.long())), torch.cat(_all_gather_padded(rows))


def write_rows(state: Tensor, indices: Tensor, rows: Tensor) -> None:
    """``state[indices] = rows`` for every process's ``(indices, rows)`` (see :func:`gather_rows`), in place."""
    idx, values = gather_rows(indices, rows)
    state[idx.to(state.device)] = values.to(state.device, state.dtype)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over processes (a missing gradient counts as zero
    where another process has one; a parameter without gradient on every process keeps None)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    world, wire = tdist.get_world_size(), _wire_device()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=wire)
    tdist.all_reduce(has, op=tdist.ReduceOp.MAX)
    used = [p for p, h in zip(params, has.tolist()) if h]
    if not used:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(wire, torch.float32)
                      for p in used])
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for p in used:
        n = p.numel()
        p.grad = flat[offset: offset + n].view_as(p).to(p.device, p.dtype)
        offset += n


def gather_scores(indices: Tensor, scores: Tensor, num_images: int) -> Tensor:
    """The (N, C) matrix of every process's scored rows; NaN rows where no process scored an image.

    Args:
        indices: int (B_r,) dataset indices this process scored.
        scores: float (B_r, C).
        num_images: N.
    Returns:
        float32 (N, C) on ``scores``' device, identical on every process.
    """
    idx, values = gather_rows(indices, scores.float())
    out = torch.full((int(num_images), scores.shape[1]), float("nan"), dtype=torch.float32, device=scores.device)
    out[idx.to(out.device)] = values.to(out.device)
    return out


def _checksum(t: Tensor) -> Tensor:
    x = t.detach().reshape(-1).to(torch.float64)
    weights = (torch.arange(x.numel(), device=x.device, dtype=torch.float64) % 1009) + 1.0  # order-sensitive
    return torch.stack([x.nan_to_num(0.0).sum(), (x.nan_to_num(0.0) * weights).sum(), x.isnan().sum().double()])


def check_replicas(module: nn.Module, what: str = "method") -> None:
    """Raise RuntimeError when the tensors of ``module.state_dict()`` differ between processes.

    The message names the first differing tensor; it means the method changed replicated state from one
    process's batch only (use :meth:`plbench.methods.api.Method.write_rows`).
    """
    if not is_distributed():
        return
    names, sums = [], []
    for name, t in module.state_dict().items():
        if isinstance(t, Tensor) and t.numel():
            names.append(name)
            sums.append(_checksum(t))
    if not sums:
        return
    local = torch.stack(sums).to(_wire_device())
    lo, hi = local.clone(), local.clone()
    tdist.all_reduce(lo, op=tdist.ReduceOp.MIN)
    tdist.all_reduce(hi, op=tdist.ReduceOp.MAX)
    differs = (lo != hi).any(dim=1).tolist()
    if any(differs):
        bad = [n for n, d in zip(names, differs) if d]
        raise RuntimeError(f"the {what}'s state differs between torchrun processes ({', '.join(bad[:3])}); "
                           "per-image state must be written with Method.write_rows so every process holds the same")
