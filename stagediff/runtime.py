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


def default_threads() -> int:
    """1 on machines with up to 2 cores, else half the cores (at most 8).

    Measured on a shared 2-core machine (docs/benchmarks.md): 2 threads sampled a 10,000-step series
    5x slower than 1 thread and 64 windows 1.4x slower; training was no faster. Above 2 cores the
    choice is not measured yet."""
    cores = available_cores()
    return 1 if cores <= 2 else min(cores // 2, 8)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else :func:`default_threads`.

    OpenMP's wait policy is set to PASSIVE on import of stagediff (before torch loads): with busy-waiting
    threads, small ops on a shared 2-core machine ran 5-200x slower."""
    chosen = threads if threads is not None else default_threads()
    if chosen < 1:
        raise ValueError(f"threads must be at least 1, got {chosen}")
    torch.set_num_threads(chosen)
    return chosen
