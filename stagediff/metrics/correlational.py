"""Correlational score (Diffusion-TS, Yuan & Qiao, ICLR 2024: ``CrossCorrelLoss``)."""

from __future__ import annotations

import numpy as np

from stagediff.metrics.inputs import check_pair


def correlation_matrix(windows: np.ndarray) -> np.ndarray:
    """Lag-0 Pearson correlation between channels over all (window, step) points of (n, length, channels);
    (channels, channels). A constant channel has correlation 0 with every other channel (and 1 with itself)."""
    points = windows.reshape(-1, windows.shape[2])
    centered = points - points.mean(axis=0)
    scale = np.sqrt((centered**2).sum(axis=0))
    standardized = centered / np.where(scale > 0, scale, 1.0)
    correlation = standardized.T @ standardized
    np.fill_diagonal(correlation, 1.0)
    return correlation


def correlational_score(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``sum_{i > j} |C_real[i, j] - C_synthetic[i, j]| / 10`` with C the :func:`correlation_matrix`; 0 is best.

    This is Diffusion-TS's ``CrossCorrelLoss`` at lag 0: channels standardized over all (window, step) points,
    mean products = Pearson correlations, absolute differences summed over the lower triangle and divided by
    10. Diffusion-TS also sums the diagonal (equal in both up to a factor (N-1)/N, so it adds ~0) and averages
    the loss over random subsets of windows; here all windows are used once, so the score is deterministic.
    One channel gives 0.

    Args:
        real, synthetic: (n, length, channels), (m, length, channels).
    """
    check_pair(real, synthetic)
    difference = np.abs(correlation_matrix(real) - correlation_matrix(synthetic))
    return float(np.tril(difference, k=-1).sum() / 10.0)
