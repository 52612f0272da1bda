"""Scores of generation with known values (issue 32): known channels and imputation against the real held-out values.

Errors are in units of each channel's standard deviation (of the training data), so channels weigh alike: the mean
absolute error of the draws' median, the CRPS of the draws (the energy form, E|X - y| - E|X - X'| / 2, which is the
absolute error for a single point), and the share of real values inside the draws' 10-90 % band (0.8 when the
spread is right).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

GAP_STEPS = (24, 168)
"""Gaps removed for the imputation score: 24 to 168 steps (a day to a week of hourly data), at most a quarter of
the series."""
MISSING_SHARE = 0.1
"""Share of each channel's values removed for the imputation score."""


def draw_scores(draws: np.ndarray, real: np.ndarray, scale: np.ndarray, scored: np.ndarray | None = None) -> dict:
    """draws (n, steps, channels), real (steps, channels), scale (channels,), scored (steps, channels) True where
    scored (every value if None) -> {"mae", "crps", "coverage"}."""
    draws, real = draws / scale, real / scale
    scored = np.ones(real.shape, dtype=bool) if scored is None else scored
    median = np.median(draws, axis=0)
    low, high = np.quantile(draws, [0.1, 0.9], axis=0)
    spread = np.abs(draws[:, None] - draws[None, :]).mean(axis=(0, 1))
    crps = np.abs(draws - real).mean(axis=0) - 0.5 * spread
    return {
        "mae": round(float(np.abs(median - real)[scored].mean()), 4),
        "crps": round(float(crps[scored].mean()), 4),
        "coverage": round(float(((real >= low) & (real <= high))[scored].mean()), 3),
    }


def point_scores(guess: np.ndarray, real: np.ndarray, scale: np.ndarray, scored: np.ndarray | None = None) -> dict:
    """A point estimate's {"mae", "crps"} (equal for a point) in units of ``scale``."""
    scored = np.ones(real.shape, dtype=bool) if scored is None else scored
    error = round(float((np.abs(guess - real) / scale)[scored].mean()), 4)
    return {"mae": error, "crps": error}


def remove_gaps(rows: int, channels: int, rng: np.random.Generator, share: float = MISSING_SHARE) -> np.ndarray:
    """(rows, channels) True where removed: per channel, gaps of GAP_STEPS steps (at most rows // 4) at random places
    until ``share`` of the channel is gone; the first step is always kept."""
    shortest, longest = min(GAP_STEPS[0], max(1, rows // 8)), min(GAP_STEPS[1], max(1, rows // 4))
    removed = np.zeros((rows, channels), dtype=bool)
    for channel in range(channels):
        while removed[:, channel].mean() < share:
            length = int(rng.integers(shortest, longest + 1))
            first = int(rng.integers(1, max(2, rows - length)))
            removed[first : first + length, channel] = True
    return removed


def interpolate_gaps(values: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``values`` with the removed ones linearly interpolated in time (held at the last one after the end)."""
    filled = values.copy()
    positions = np.arange(len(values))
    for channel in range(values.shape[1]):
        gone = removed[:, channel]
        if gone.any():
            filled[gone, channel] = np.interp(positions[gone], positions[~gone], values[~gone, channel])
    return filled


def conditional_scores(
    model: Any,
    heldout: np.ndarray,
    scale: np.ndarray,
    times: pd.Index | None = None,
    seed: int = 0,
    draws: int = 10,
    windows: int = 4,
) -> dict[str, float]:
    """The scores the pipeline's evaluate stage reports for generation with known values, on the held-out part
    ``heldout`` (rows, channels, data units; ``times`` its timestamps where the model has a time axis):

    - ``known_*``: the last channel generated given the others, over ``windows`` held-out windows, ``draws``
      draws each (none with one channel);
    - ``impute_*``: the held-out part with MISSING_SHARE of each channel removed in gaps (:func:`remove_gaps`),
      imputed ``draws`` times; ``impute_interpolation_mae`` is linear interpolation's error on the same values."""
    channels = list(model.metadata["channels"])
    time_column = model.metadata.get("time_column") if times is not None else None
    length = model.config.window
    found: dict[str, float] = {}

    def frame(values: np.ndarray, columns: list[str], first: int) -> pd.DataFrame:
        table = pd.DataFrame(values, columns=columns)
        if time_column is not None:
            table.insert(0, time_column, times[first : first + len(values)])
        return table

    if len(channels) > 1 and len(heldout) >= length:
        rows = []
        for number, first in enumerate(np.linspace(0, len(heldout) - length, windows).astype(int)):
            real = heldout[first : first + length]
            known = frame(real[:, :-1], channels[:-1], first)
            start = None if time_column is not None else 0  # a numbered model: not after the data
            sampled = model.sample_array(draws, length, seed=seed + number, known=known, start=start, progress=False)
            rows.append(draw_scores(sampled[..., -1:], real[:, -1:], scale[-1:]))
        found |= {f"known_{key}": round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
    removed = remove_gaps(len(heldout), len(channels), np.random.default_rng(seed))
    gapped = frame(np.where(removed, np.nan, heldout), channels, 0)
    imputed = model.impute(gapped, draws, seed=seed, progress=False)[channels].to_numpy()
    scores = draw_scores(imputed.reshape(draws, len(heldout), -1), heldout, scale, removed)
    found |= {f"impute_{key}": value for key, value in scores.items()}
    found["impute_interpolation_mae"] = point_scores(interpolate_gaps(heldout, removed), heldout, scale, removed)["mae"]
    return found
