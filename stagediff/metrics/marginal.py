"""Per-channel marginal distance: Wasserstein-1 between the value distributions of real and synthetic data."""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from stagediff.metrics.inputs import check_pair


def marginal_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Mean over channels of the Wasserstein-1 distance (``scipy.stats.wasserstein_distance``) between all
    values of a channel in ``real`` and in ``synthetic`` (every step of every window pooled); 0 is best.

    On the [0, 1] scale evaluate uses, the distance is in units of the real range of each channel (at most 1
    while both sets stay in range).

    Args:
        real, synthetic: (n, length, channels), (m, length, channels).
    """
    check_pair(real, synthetic)
    channels = real.shape[2]
    return float(
        np.mean([wasserstein_distance(real[..., c].ravel(), synthetic[..., c].ravel()) for c in range(channels)])
    )
