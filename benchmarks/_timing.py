"""Timing helpers shared by the benchmark scripts (run them as `python benchmarks/bench_*.py`)."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], None], repeats: int, device: torch.device, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
