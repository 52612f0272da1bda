"""Autocorrelation distance: how far the mean per-channel autocorrelation functions of two sets differ."""

from __future__ import annotations

import numpy as np

from stagediff.errors import DataError
from stagediff.metrics.inputs import check_pair

DEFAULT_MAX_LAG = 50


def mean_autocorrelation(windows: np.ndarray, max_lag: int) -> np.ndarray:
    """Per-channel autocorrelation at lags 1..max_lag averaged over windows; (max_lag, channels).

    Each window's channel uses its own mean and the biased estimator
    ``r(k) = sum_t (x_t - m)(x_{t+k} - m) / sum_t (x_t - m)^2`` (computed with a zero-padded FFT); a constant
    window channel has r(k) = 0."""
    length = windows.shape[1]
    centered = windows - windows.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centered, n=2 * length, axis=1)
    covariance = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * length, axis=1)[:, : max_lag + 1]
    variance = covariance[:, :1]
    correlation = covariance[:, 1:] / np.where(variance > 1e-12, variance, np.inf)
    return correlation.mean(axis=0)


def autocorrelation_distance(real: np.ndarray, synthetic: np.ndarray, max_lag: int | None = None) -> float:
    """Mean absolute difference, over lags 1..max_lag and channels, of :func:`mean_autocorrelation` of ``real``
    and ``synthetic``; 0 is best, at most 2.

    Args:
        real, synthetic: (n, length, channels), (m, length, channels), length >= 2.
        max_lag: the lag budget, 1 <= max_lag <= length - 1; default min(length - 1, 50).
    """
    check_pair(real, synthetic)
    length = real.shape[1]
    if length < 2:
        raise DataError("autocorrelation_distance needs windows of at least 2 steps")
    max_lag = min(length - 1, DEFAULT_MAX_LAG) if max_lag is None else max_lag
    if not 1 <= max_lag <= length - 1:
        raise DataError(f"max_lag must be between 1 and length - 1 = {length - 1}, got {max_lag}")
    difference = mean_autocorrelation(real, max_lag) - mean_autocorrelation(synthetic, max_lag)
    return float(np.abs(difference).mean())
