"""Data-parallel training under ``torchrun`` (DistributedDataParallel); no-ops in a single process.

``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT ...] -m plbench train ...`` starts N
processes per machine with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set; :func:`init_from_env` joins the
process group (NCCL on GPUs, gloo on CPUs). What changes against one process:

* every rank reads its slice of each global batch of the single-process epoch order
  (:func:`plbench.engine.data.epoch_batches`), so the global batch sequence is unchanged;
* DDP averages gradients over ranks; a loss summed over the batch (P-ASL, ASL, BCE) is multiplied by the
  world size so the gradient is that of the global batch sum, a mean-reduced loss is left as is;
* batch-level statistics become per rank: the Selective mode's likelihood top-k (``likelihood_topk`` per
  image, counted over the local batch), the EPR regulariser (mean over the local batch) and, on CPUs,
  BatchNorm statistics (on GPUs BatchNorm is converted to SyncBatchNorm: global-batch statistics);
* CLIP-Decoder's in-batch alignment loss is the global batch's (gathered with gradients,
  :mod:`plbench.engine.zero_shot_alignment`), as in one process;
* validation images are sharded (rank r scores images r, r + N, ...) and gathered on rank 0, so each image
  is scored exactly once; only rank 0 writes files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.utils.data import Dataset


def is_distributed() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment of a torchrun worker with more than one process is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str = "auto") -> None:
    """Join the process group torchrun describes (no-op outside torchrun or when already joined)."""
    if not launched_by_torchrun() or is_distributed():
        return
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend="nccl" if use_cuda else "gloo")


def shutdown() -> None:
    if is_distributed():
        tdist.destroy_process_group()


def device_for_rank(name: str) -> torch.device:
    """``cuda:LOCAL_RANK`` when this rank uses a GPU, else the CPU."""
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def barrier() -> None:
    if is_distributed():
        tdist.barrier()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` under torchrun, else ``model`` itself.

    On GPUs, BatchNorm layers become SyncBatchNorm (converted in place, same parameters), so batch
    statistics are those of the global batch, as in one process; PyTorch has no SyncBatchNorm on CPUs.
    """
    if not is_distributed():
        return model
    if device.type == "cuda":
        for name, child in list(model.named_children()):
            model.add_module(name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(model)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is set on any rank (Ctrl-C reaches the ranks at different steps)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)


class RankShard(Dataset):
    """Items ``rank, rank + world, ...`` of a dataset (which keeps its ``labels`` attribute).

    A batch of the shard is read as one batch of the dataset when the dataset reads batches
    (``__getitems__``: a feature store's rows in one sorted pass), as without the shard.
    """

    def __init__(self, dataset: Dataset, rank: int, world: int) -> None:
        self.dataset, self.indices = dataset, list(range(rank, len(dataset), world))  # type: ignore[arg-type]
        self.labels = dataset.labels  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        mapped = [self.indices[i] for i in indices]
        read = getattr(self.dataset, "__getitems__", None)
        return read(mapped) if read is not None else [self.dataset[i] for i in mapped]


def shard_dataset(dataset: Dataset) -> Dataset:
    """This rank's share of an evaluation dataset (the dataset itself in one process)."""
    return RankShard(dataset, rank(), world_size()) if is_distributed() else dataset


def gather_predictions(scores: np.ndarray, targets: np.ndarray,
                       index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate every rank's predictions, ordered by dataset index (each image once)."""
    if not is_distributed():
        return scores, targets, index
    parts: list[Any] = [None] * world_size()
    tdist.all_gather_object(parts, (scores, targets, index))
    s = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    i = np.concatenate([p[2] for p in parts])
    order = np.argsort(i, kind="stable")
    return s[order], t[order], i[order]
