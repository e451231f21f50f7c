"""Where and how tensors are computed: the device, the one mixed-precision policy, the memory layout,
numerics, moving a batch onto the device and unwrapping DDP / torch.compile.

Every forward pass of plbench (training steps, per-epoch evaluation, feature extraction, predict, evaluate,
export checks) takes its autocast dtype from :func:`amp_dtype` and its layout from :func:`channels_last`,
so the GPU path and the CPU path differ only where this module says so.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

import torch
from torch import nn

from plbench.engine.data import normalize
from plbench.errors import InputError

CHANNELS_LAST_ENV = "PLBENCH_CHANNELS_LAST"
"""``1`` forces channels-last image batches and models on the CPU too (CI runs the GPU layout there);
``0`` turns it off everywhere. Unset: channels-last on CUDA only."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; an unusable name is an
    :class:`InputError` naming ``--device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(None, "--device", f"expected auto, cpu, cuda or cuda:N, but got {name!r}",
                         "pass one of those") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device", f"{name!r} requested but CUDA is not available", "use --device cpu")
    return device


def amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of every forward pass: None (float32) without ``amp``; with it bfloat16, except
    float16 on a GPU without bfloat16 (training then needs a GradScaler, see :func:`needs_grad_scaler`).
    On the CPU ``amp`` means bfloat16 autocast, which is how CI exercises the GPU's dtype path."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16 and float32 need none."""
    return dtype is torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` (a no-op context for None)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def channels_last(device: torch.device, *, prefer: bool | None = None) -> bool:
    """Whether image batches and models use the channels-last layout (faster convolutions under autocast
    on GPUs); :data:`CHANNELS_LAST_ENV` overrides. ``prefer``: the caller's choice when the variable is
    unset (feature extraction prefers channels-last on the CPU too); default: CUDA only."""
    forced = os.environ.get(CHANNELS_LAST_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return device.type == "cuda" if prefer is None else prefer


def to_model_input(inputs: torch.Tensor, device: torch.device, mean: Sequence[float],
                   std: Sequence[float]) -> torch.Tensor:
    """A loader batch on the device, normalised (uint8 images (B, 3, H, W) become float32 in the model's
    mean / std; feature rows pass through as they are), image batches in the layout of :func:`channels_last`."""
    x = normalize(inputs.to(device, non_blocking=True), list(mean), list(std))
    if x.ndim == 4 and channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` in the layout of :func:`channels_last`."""
    model = model.to(device)
    if channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel and torch.compile wrappers (or the model itself)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)


@contextlib.contextmanager
def numerics(device: torch.device, *, linear: bool = False) -> Iterator[None]:
    """Deterministic kernels on the CPU (same seed, same weights); cuDNN autotuning on GPUs; one CPU thread
    for head-only (linear) runs, whose small matrix products run 5-8x slower when threads wait for each
    other on a busy machine. The caller's settings are restored afterwards."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        if linear:
            torch.set_num_threads(1)
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.set_num_threads(threads)
