"""Spectral distance: how far the mean normalized power spectra of two sets differ, on a log scale."""

from __future__ import annotations

import numpy as np

from stagediff.errors import DataError
from stagediff.metrics.inputs import check_pair

SPECTRUM_FLOOR = 1e-8
"""Added before the log so that empty frequency bins do not give -inf (a power share of 1e-8 counts as none)."""


def mean_spectrum(windows: np.ndarray) -> np.ndarray:
    """Mean normalized periodogram per channel; (length // 2, channels), frequencies 1..length // 2.

    Each window's channel is centred, ``P(f) = |rfft(x)(f)|^2`` for f >= 1 (the DC bin is dropped), and
    divided by its sum so that every window channel contributes a power share summing to 1 (a constant window
    channel contributes zeros); the shares are averaged over windows."""
    centered = windows - windows.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(centered, axis=1)[:, 1:]) ** 2
    total = power.sum(axis=1, keepdims=True)
    return (power / np.where(total > 0, total, np.inf)).mean(axis=0)


def spectral_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``mean_{f, c} |ln(S_real(f, c) + 1e-8) - ln(S_synthetic(f, c) + 1e-8)|`` with S the
    :func:`mean_spectrum`; 0 is best. It weighs every frequency equally on a log scale, so missing
    high-frequency texture counts as much as a wrong dominant period.

    Args:
        real, synthetic: (n, length, channels), (m, length, channels), length >= 2.
    """
    check_pair(real, synthetic)
    if real.shape[1] < 2:
        raise DataError("spectral_distance needs windows of at least 2 steps")
    difference = np.log(mean_spectrum(real) + SPECTRUM_FLOOR) - np.log(mean_spectrum(synthetic) + SPECTRUM_FLOOR)
    return float(np.abs(difference).mean())
