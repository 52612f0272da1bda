"""stagediff: stage-wise diffusion (Stage-Diff, arXiv 2508.21330) for long multivariate time series.

    import stagediff
    model = stagediff.StageDiff(stagediff.StageDiffConfig(window=256)).fit("etth1")
    frame = model.sample(n=4, length=1024, seed=0, steps=50)

Importing stagediff sets nothing and does not load torch: StageDiff, SampleRequest and evaluate are imported on
first use, so that an entry point (the CLI) can set the process environment before torch loads
(stagediff.runtime.configure_environment).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stagediff.config import StageDiffConfig
from stagediff.errors import ConfigError, DataError, StageDiffError

__version__ = "0.1.0"

_LAZY = {"SampleRequest": "stagediff.generator", "StageDiff": "stagediff.generator", "evaluate": "stagediff.metrics"}
"""The names whose modules import torch, and those modules."""

if TYPE_CHECKING:
    from stagediff.generator import SampleRequest, StageDiff
    from stagediff.metrics import evaluate


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'stagediff' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ConfigError",
    "DataError",
    "SampleRequest",
    "StageDiff",
    "StageDiffConfig",
    "StageDiffError",
    "__version__",
    "evaluate",
]
