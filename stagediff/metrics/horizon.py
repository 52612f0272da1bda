"""Long horizons: do long synthetic samples keep their rolling statistics inside the range the real series shows?

:func:`horizon_excursions` compares rolling means and rolling standard deviations over one training window of
long synthetic samples with the 1-99 % range of the same statistics over the real series. The samples are drawn
by the generator (``stagediff.evaluation`` scores them as the metric ``horizon``); this module only scores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stagediff.errors import DataError

RANGE_PERCENTILES = (1.0, 99.0)
"""The real range of each rolling statistic: these percentiles over the real series' rolling windows."""


def rolling_statistics(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and standard deviation (ddof 0) over every ``window`` consecutive rows (stride 1) of
    (rows, channels), or of each sample of (n, rows, channels): arrays (..., rows - window + 1, channels)."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=-2, keepdims=True)  # cumulative sums of centred values: little rounding
    zero = np.zeros(centred.shape[:-2] + (1, centred.shape[-1]))
    first = np.concatenate([zero, np.cumsum(centred, axis=-2)], axis=-2)
    second = np.concatenate([zero, np.cumsum(centred**2, axis=-2)], axis=-2)
    mean = (first[..., window:, :] - first[..., :-window, :]) / window
    square = (second[..., window:, :] - second[..., :-window, :]) / window
    std = np.sqrt(np.maximum(square - mean**2, 0.0))
    return mean + values.mean(axis=-2, keepdims=True), std


def real_ranges(series: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """``{"mean": (2, channels), "std": (2, channels)}``: the 1 % and 99 % points of the real series' rolling mean
    and rolling standard deviation over ``window`` rows."""
    mean, std = rolling_statistics(series, window)
    return {name: np.percentile(values, RANGE_PERCENTILES, axis=0) for name, values in (("mean", mean), ("std", std))}


def horizon_excursions(
    series: np.ndarray, long_sample: np.ndarray, window: int, channels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Share of the long samples' rolling windows whose mean or standard deviation leaves the real range.

    The real series gives the 1-99 % range (:data:`RANGE_PERCENTILES`) of the rolling mean and of the rolling
    standard deviation over ``window`` rows (stride 1); the same statistics of every stride-1 rolling window
    of the synthetic samples are compared with it, per channel.

    Args:
        series: (rows, channels) the real series, in the units of the samples; at least ``window`` rows.
        long_sample: (length, channels) or (n, length, channels) long synthetic samples; length at least
            ``window``.
        window: rows per rolling window (the generator's training window).
        channels: names for ``per_channel`` (default ``"0"``, ``"1"``, ...).

    Returns:
        ``mean``: the share outside over every (rolling window, channel, statistic), 0 best; the real series
        against itself gives about 0.02. ``mean_outside`` and ``std_outside``: the share of (rolling window,
        channel) whose mean (standard deviation) is outside; ``per_channel``: ``{name: share}`` over both
        statistics; ``real_range``: the ranges, ``{"mean": {name: [low, high]}, "std": ...}``.
    """
    series = np.asarray(series, dtype=np.float64)
    sample = np.asarray(long_sample, dtype=np.float64)
    if sample.ndim == 2:
        sample = sample[None]
    if series.ndim != 2 or sample.ndim != 3:
        raise DataError(
            f"horizon_excursions needs the series as (rows, channels) and the samples as (length, "
            f"channels) or (n, length, channels), got shapes {series.shape} and {sample.shape}"
        )
    if series.shape[1] != sample.shape[2]:
        raise DataError(f"the series has {series.shape[1]} channels but the samples have {sample.shape[2]}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise DataError(f"window must be a positive integer, got {window!r}")
    if len(series) < window or sample.shape[1] < window:
        raise DataError(
            f"horizon_excursions needs at least one window of {window} rows in the series "
            f"({len(series)} rows) and in the samples ({sample.shape[1]} rows)"
        )
    if not (np.isfinite(series).all() and np.isfinite(sample).all()):
        raise DataError("horizon_excursions: the series or the samples contain NaN or infinite values")
    names = [str(c) for c in channels] if channels is not None else [str(i) for i in range(series.shape[1])]
    ranges = real_ranges(series, window)
    mean, std = rolling_statistics(sample, window)
    outside = {}
    for name, values in (("mean", mean), ("std", std)):
        low, high = ranges[name]
        tolerance = 1e-9 * np.maximum(np.abs(high - low), np.abs(high))  # a constant channel stays inside
        outside[name] = ((values < low - tolerance) | (values > high + tolerance)).reshape(-1, len(names))
    per_channel = 0.5 * (outside["mean"].mean(axis=0) + outside["std"].mean(axis=0))
    return {
        "mean": float(per_channel.mean()),
        "mean_outside": float(outside["mean"].mean()),
        "std_outside": float(outside["std"].mean()),
        "per_channel": {name: float(share) for name, share in zip(names, per_channel)},
        "real_range": {
            stat: {name: [float(ranges[stat][0, i]), float(ranges[stat][1, i])] for i, name in enumerate(names)}
            for stat in ("mean", "std")
        },
        "rolling_windows": int(mean.shape[0] * mean.shape[1]),
    }
