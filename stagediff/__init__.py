"""stagediff: stage-wise diffusion (Stage-Diff, arXiv 2508.21330) for long multivariate time series.

    import stagediff
    model = stagediff.StageDiff(stagediff.StageDiffConfig(window=256)).fit("etth1")
    frame = model.sample(n=4, length=1024, seed=0, steps=50)
"""

import os

# OpenMP threads that busy-wait make small tensor ops 5-200x slower on a shared 2-core machine
# (docs/benchmarks.md); this must be set before torch is first imported to take effect.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from stagediff.config import StageDiffConfig  # noqa: E402
from stagediff.errors import ConfigError, DataError, StageDiffError  # noqa: E402
from stagediff.generator import SampleRequest, StageDiff  # noqa: E402
from stagediff.metrics import evaluate  # noqa: E402

__all__ = ["ConfigError", "DataError", "SampleRequest", "StageDiff", "StageDiffConfig", "StageDiffError", "__version__", "evaluate"]
