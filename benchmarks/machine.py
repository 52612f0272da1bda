"""What machine produced a benchmark number (recorded with every result)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_machine() -> str:
    """'GPU <name>, <cores> cores, torch <version>' when CUDA is present, else 'CPU <model>, <cores> cores,
    <threads> torch threads, Python <version>'."""
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, {os.cpu_count()} cores, torch {torch.__version__}"
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor()
    )
    return (
        f"CPU {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}"
    )
