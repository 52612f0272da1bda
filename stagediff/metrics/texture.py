"""Texture figures: the step (first difference) distribution and the channel structure of synthetic windows
against real ones, with plain-language warnings when they are far off.

:func:`texture` returns the figures (per channel and summarised); :func:`texture_warnings` turns the clearly
broken ones into sentences that name the channel and what to try.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stagediff.errors import DataError
from stagediff.metrics.correlational import correlation_matrix
from stagediff.metrics.inputs import UnitScale, as_windows, check_pair

ROUGHNESS_RANGE = (0.5, 2.0)
"""texture_warnings: a channel's roughness ratio (synthetic / real mean absolute step) outside this range."""
STEP_CORRELATION_LIMIT = 0.25
"""texture_warnings: mean absolute error of the step correlations above this."""
STRONG_CORRELATION = 0.5
"""texture_warnings: a real channel pair at least this correlated (absolute) ..."""
CORRELATION_SHIFT = 0.4
"""... whose synthetic correlation differs by more than this, or flips sign (to at least FLIP_SIZE)."""
FLIP_SIZE = 0.1
TAIL_KURTOSIS, TAIL_RATIO = 8.0, 4.0
"""texture_warnings: kurtosis (not excess) of one set's steps at least TAIL_KURTOSIS and TAIL_RATIO times the
other's: the jumps (or spikes) of one set are missing in the other."""
_TINY = 1e-12


def _ratio(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """synthetic / real, 1 where both are 0 and large where only the real one is 0."""
    return (synthetic + _TINY) / (real + _TINY)


def _excess_kurtosis(steps: np.ndarray) -> np.ndarray:
    centred = steps - steps.mean(axis=0)
    variance = (centred**2).mean(axis=0)
    return np.where(variance > 0, (centred**4).mean(axis=0) / np.where(variance > 0, variance, 1.0) ** 2 - 3.0, 0.0)


def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(len(matrix), k=1)]


def texture(real: np.ndarray, synthetic: np.ndarray, channels: Sequence[str] | None = None) -> dict[str, Any]:
    """Step distribution and channel structure of synthetic against real windows (n, length, channels).

    Steps are first differences within windows, pooled over windows and time per channel. Per channel: the
    step standard deviation ratio (synthetic / real, "spread"), the mean absolute step ratio ("roughness"), the
    steps' excess kurtosis of each set. Across channels: the mean absolute difference between the two sets'
    correlation matrices (upper triangle, Pearson over all pooled points) of steps and of levels.

    Args:
        real, synthetic: windows on one scale (evaluate: [0, 1] on the real range); length at least 2.
        channels: names for ``per_channel`` (default ``"0"``, ``"1"``, ...).

    Returns:
        ``roughness_error`` (the headline: mean over channels of abs(ln(roughness ratio)), 0 best),
        ``step_spread_ratio`` and ``roughness_ratio`` (geometric means over channels, 1 best), ``kurtosis``
        (``{"real", "synthetic"}``: mean step excess kurtosis over channels), ``step_correlation_error`` and
        ``level_correlation_error`` (0 best; 0 with one channel) and ``per_channel`` (``{name: {...}}``).
    """
    check_pair(real, synthetic)
    if real.shape[1] < 2:
        raise DataError(f"texture needs windows of at least 2 steps, got length {real.shape[1]}")
    count = real.shape[2]
    names = [str(c) for c in channels] if channels is not None else [str(i) for i in range(count)]
    if len(names) != count:
        raise DataError(f"{len(names)} channel names for {count} channels")
    real_steps, synthetic_steps = (np.diff(w, axis=1).reshape(-1, count) for w in (real, synthetic))
    spread = _ratio(synthetic_steps.std(axis=0), real_steps.std(axis=0))
    roughness = _ratio(np.abs(synthetic_steps).mean(axis=0), np.abs(real_steps).mean(axis=0))
    kurtosis_real, kurtosis_synthetic = _excess_kurtosis(real_steps), _excess_kurtosis(synthetic_steps)
    step_correlations = [correlation_matrix(s[:, None, :]) for s in (real_steps, synthetic_steps)]
    level_correlations = [correlation_matrix(w) for w in (real, synthetic)]
    step_error = float(np.abs(_upper(step_correlations[0]) - _upper(step_correlations[1])).mean()) if count > 1 else 0.0
    level_error = (
        float(np.abs(_upper(level_correlations[0]) - _upper(level_correlations[1])).mean()) if count > 1 else 0.0
    )
    per_channel = {
        name: {
            "step_spread_ratio": float(spread[i]),
            "roughness_ratio": float(roughness[i]),
            "kurtosis_real": float(kurtosis_real[i]),
            "kurtosis_synthetic": float(kurtosis_synthetic[i]),
        }
        for i, name in enumerate(names)
    }
    return {
        "roughness_error": float(np.abs(np.log(roughness)).mean()),
        "step_spread_ratio": float(np.exp(np.log(spread).mean())),
        "roughness_ratio": float(np.exp(np.log(roughness).mean())),
        "kurtosis": {"real": float(kurtosis_real.mean()), "synthetic": float(kurtosis_synthetic.mean())},
        "step_correlation_error": step_error,
        "level_correlation_error": level_error,
        "per_channel": per_channel,
        "step_correlations": {"real": step_correlations[0].tolist(), "synthetic": step_correlations[1].tolist()},
        "level_correlations": {"real": level_correlations[0].tolist(), "synthetic": level_correlations[1].tolist()},
    }


def texture_warnings(
    real: np.ndarray, synthetic: np.ndarray, channels: Sequence[str], channel_independent: bool | None = None
) -> list[str]:
    """Sentences on what is clearly broken in the texture or channel structure of ``synthetic``; [] when
    nothing is (two samples of one process stay quiet).

    Args:
        real, synthetic: (n, length, channels) windows in data units; both are scaled per channel with the
            minimum and maximum of ``real`` first.
        channels: the channel names, used in the sentences.
        channel_independent: how the generator modelled the channels (its config), for the advice; None: unknown.

    Warns when a channel's roughness ratio (synthetic / real mean absolute step) is outside
    :data:`ROUGHNESS_RANGE`; when the step correlations differ by more than :data:`STEP_CORRELATION_LIMIT` on
    average; when a real pair correlated at least :data:`STRONG_CORRELATION` (levels or steps) moves more than
    :data:`CORRELATION_SHIFT` or flips sign in the synthetic windows; when one set's steps are heavy-tailed
    (kurtosis at least 8) and the other's at least 4 times less.
    """
    real, synthetic = as_windows(real, "real"), as_windows(synthetic, "synthetic")
    check_pair(real, synthetic)
    names = [str(c) for c in channels]
    if len(names) != real.shape[2]:
        raise DataError(f"{len(names)} channel names for {real.shape[2]} channels")
    scale = UnitScale.fit(real)
    figures = texture(scale.transform(real), scale.transform(synthetic), names)
    warnings = []
    low, high = ROUGHNESS_RANGE
    smooth = [(n, c["roughness_ratio"]) for n, c in figures["per_channel"].items() if c["roughness_ratio"] < low]
    rough = [(n, c["roughness_ratio"]) for n, c in figures["per_channel"].items() if c["roughness_ratio"] > high]
    if smooth:
        warnings.append(
            f"synthetic {_list(smooth)} much smoother than the data (mean absolute step "
            f"{_ratios(smooth)} of the real one): train longer (max_steps / max_minutes), or with the "
            f"ddim sampler sample with more steps (sampling_steps)"
        )
    if rough:
        warnings.append(
            f"synthetic {_list(rough)} much rougher than the data (mean absolute step "
            f"{_ratios(rough)} of the real one), usually leftover noise of an undertrained model: train "
            f"longer (max_steps / max_minutes), or with the ddim sampler sample with more steps "
            f"(sampling_steps)"
        )
    for name, c in figures["per_channel"].items():
        real_k, synthetic_k = c["kurtosis_real"] + 3.0, c["kurtosis_synthetic"] + 3.0
        if real_k >= TAIL_KURTOSIS and real_k >= TAIL_RATIO * max(synthetic_k, _TINY):
            warnings.append(
                f"synthetic '{name}' lacks the sudden jumps of the data (step kurtosis {synthetic_k:.1f} "
                f"against {real_k:.1f}): train longer (max_steps / max_minutes)"
            )
        elif synthetic_k >= TAIL_KURTOSIS and synthetic_k >= TAIL_RATIO * max(real_k, _TINY):
            warnings.append(
                f"synthetic '{name}' has spikes the data does not (step kurtosis {synthetic_k:.1f} "
                f"against {real_k:.1f}): train longer (max_steps / max_minutes)"
            )
    joint = {
        True: "the model treats the channels separately (channel_independent=true): set "
        "channel_independent=false to model them jointly, or train longer (max_steps / max_minutes)",
        False: "the channels are modelled jointly already: train longer (max_steps / max_minutes)",
        None: "if the model treats the channels separately (channel_independent=true), set "
        "channel_independent=false to model them jointly; else train longer (max_steps / max_minutes)",
    }[channel_independent]
    if figures["step_correlation_error"] > STEP_CORRELATION_LIMIT:
        warnings.append(
            f"the channels' steps move together differently than in the data (mean absolute error of "
            f"their correlations {figures['step_correlation_error']:.2f}): {joint}"
        )
    broken: dict[tuple[int, int], list[str]] = {}
    for kind, label in (("level_correlations", "levels"), ("step_correlations", "steps")):
        real_c, synthetic_c = (np.asarray(figures[kind][s]) for s in ("real", "synthetic"))
        for i, j in zip(*np.triu_indices(len(names), k=1)):
            r, s = real_c[i, j], synthetic_c[i, j]
            flipped = np.sign(s) != np.sign(r) and abs(s) >= FLIP_SIZE
            if abs(r) >= STRONG_CORRELATION and (abs(s - r) > CORRELATION_SHIFT or flipped):
                broken.setdefault((i, j), []).append(f"{label} {r:+.2f} real, {s:+.2f} synthetic")
    if broken:
        pairs = [f"'{names[i]}' and '{names[j]}' ({'; '.join(kinds)})" for (i, j), kinds in broken.items()]
        shown = ", ".join(pairs[:5]) + (f" and {len(pairs) - 5} more pairs" if len(pairs) > 5 else "")
        warnings.append(f"strongly correlated channels lost their correlation in the samples: {shown}; {joint}")
    return warnings


def _list(items: list[tuple[str, float]]) -> str:
    quoted = [f"'{name}'" for name, _ in items]
    return (
        ("channel " if len(quoted) == 1 else "channels ") + ", ".join(quoted) + (" is" if len(quoted) == 1 else " are")
    )


def _ratios(items: list[tuple[str, float]]) -> str:
    return ", ".join(f"{ratio:.2f}x" for _, ratio in items)
