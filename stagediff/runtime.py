"""Process-level runtime choices, made by the entry points (the CLI, the pipeline's flows, the service) and never
on import: OpenMP's wait policy and torch's CPU thread count (the measurements:
results/decisions.md, "Speed of the library; threads").

This module does not import torch (configure_threads imports it when called), so that an entry point can call
:func:`configure_environment` before anything loads torch."""

from __future__ import annotations

import os

ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}
"""The process environment the entry points set where it is not set: OpenMP threads that busy-wait made small
tensor ops 5-200x slower on a shared 2-core machine. OpenMP reads it once, when torch loads it."""


def configure_environment() -> None:
    """Set :data:`ENVIRONMENT` where not already set. Call it before torch is first imported: later it reaches only
    the processes this one starts."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """1 on machines with up to 2 cores, else half the cores (at most 8).

    Measured on a shared 2-core machine (results/decisions.md, "Speed of the library; threads"): 2 threads
    sampled a 10,000-step series 5x slower than 1 thread and 64 windows 1.4x slower; training was no faster.
    Above 2 cores the choice is not measured yet."""
    cores = available_cores()
    return 1 if cores <= 2 else min(cores // 2, 8)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given, else :func:`default_threads`."""
    import torch

    chosen = threads if threads is not None else default_threads()
    if chosen < 1:
        raise ValueError(f"threads must be at least 1, got {chosen}")
    torch.set_num_threads(chosen)
    return chosen
