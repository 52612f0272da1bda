"""Process-level runtime choices: CPU thread count (see docs/benchmarks.md for the measurements)."""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else one per available core, at most 8.

    OpenMP's wait policy is set to PASSIVE on import of stagediff (before torch loads): with busy-waiting
    threads, small ops on a shared 2-core machine ran 5-200x slower."""
    chosen = threads if threads is not None else min(available_cores(), 8)
    if chosen < 1:
        raise ValueError(f"threads must be at least 1, got {chosen}")
    torch.set_num_threads(chosen)
    return chosen
