"""The default recipe: the settings a configuration leaves open (None), chosen from the window and from the training
data, and the named presets of the benchmark cells (:func:`cell_config` gives a cell's configuration).

- From the window (when the configuration is made): ``stage_length`` (the largest of 32, 16, 8 that gives at least
  3 stages, else the largest divisor of the window from 4 to 32 that does), then from the stage length the
  patches, the context and the decomposition's pooling kernels, and the width (``d_model`` 64 and ``feedforward``
  128 from window 128 on, else 32 and 64).
- From the training split (at fit time, :func:`data_choices`): ``channel_independent`` (channels modelled jointly
  where their steps or levels move together and the series holds enough windows to learn them jointly without
  copying) and ``range_margin`` (how far samples may leave the training range); from its time axis, ``calendar``
  (the calendar cycles the data's step samples and its training split repeats, stagediff.calendar). Each choice is
  logged and saved with the model beside the numbers it was made from; a value the user sets is kept.

Where these rules come from (which data tuned what): results/decisions.md.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from stagediff.errors import ConfigError

if TYPE_CHECKING:
    from stagediff.config import StageDiffConfig

logger = logging.getLogger(__name__)

WINDOW_FIELDS = ("stage_length", "context", "patch_length", "patch_stride", "pool_kernels", "d_model", "feedforward")
"""Fields that None means "follow the window" (or the stage length)."""
DATA_FIELDS = ("channel_independent", "range_margin")
"""Fields that None means "choose from the training split at fit time"."""

COUPLED_STEPS, COUPLED_LEVELS = 0.5, 0.8
"""Channels are coupled when some pair's step-to-step changes correlate at least 0.5, or their levels at least 0.8
(in absolute value): a user's temperature and humidity (levels -0.88) lost their relation modelled apart."""
JOINT_MIN_WINDOWS = 60
"""Channels are modelled jointly only when the training split holds at least this many non-overlapping windows:
a joint model sees one sequence per window instead of one per channel, and on fewer it copied training windows."""
HELD_SHARE, HELD_TOLERANCE = 0.1, 0.005
"""A channel holds a bound when at least 10 % of its training rows lie within 0.5 % of its range from it (a sine
spends under 5 % there)."""
MARGIN_BOUNDS = (0.05, 0.5)
"""The automatic range margin, as a share of each channel's training range, lies within these bounds."""

DDPM = {"sampler": "ddpm"}
DDIM_50 = {"sampler": "ddim", "ddim_eta": 0.0, "sampling_steps": 50}
PRESETS: dict[str, dict[str, Any]] = {
    # The benchmark cells (dataset-window) where their measured configuration differs from the default recipe;
    # every other setting is the default's. Each keeps the sampler it was measured with. Numbers and history:
    # results/decisions.md.
    "etth1-24": {"window": 24, "channel_independent": True, "skip_parametrization": False, **DDIM_50},
    "etth1-64": {"window": 64, "channel_independent": True, "skip_parametrization": False, **DDIM_50},
    "etth1-128": {"window": 128, "channel_independent": False, **DDPM},
    "etth1-256": {"window": 256, "channel_independent": False, "stage_attention": True, **DDPM},
    "stock-24": {"window": 24, "channel_independent": True, **DDPM},
    "stock-64": {"window": 64, "channel_independent": True, **DDPM},
    "stock-128": {"window": 128, "channel_independent": True, **DDPM},
    "stock-256": {
        "window": 256,
        "channel_independent": True,
        "stage_attention": True,
        "d_model": 32,
        "feedforward": 64,
        **DDPM,
    },
    "exchange-24": {"window": 24, "channel_independent": True, **DDPM},
    "exchange-64": {"window": 64, "channel_independent": True, **DDPM},
    "exchange-128": {"window": 128, "channel_independent": True, **DDPM},
    "exchange-256": {
        "window": 256,
        "channel_independent": True,
        "stage_length": 64,
        "pool_kernels": (25, 1),
        "d_model": 32,
        "feedforward": 64,
        **DDPM,
    },
}


def preset(name: str) -> dict[str, Any]:
    """The settings of a named preset (a copy)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; the presets are: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


RECIPES = ("preset", "default")
"""How a benchmark cell is configured (:func:`cell_config`): its named preset where it has one, or the default
recipe everywhere."""


def cell_config(dataset: str, window: int, steps: int, recipe: str = "preset", **changes) -> StageDiffConfig:
    """The configuration of a cell: under ``recipe`` "preset" the cell's named preset (stagediff.recipe.PRESETS,
    ``dataset-window``) where it has one, else (and under "default") the default recipe at the window; then
    ``max_steps`` and ``changes``. Training steps are 64 windows a batch and a checkpoint every 500 steps."""
    from stagediff.config import StageDiffConfig  # config imports this module

    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    name = f"{dataset}-{window}"
    settings = {"batch_size": 64, "checkpoint_every": 500, "max_steps": steps, **changes}
    if recipe == "preset" and name in PRESETS:
        return StageDiffConfig.preset(name, **settings)
    return StageDiffConfig(window=window, **settings)


def stage_length_for(window: int) -> int:
    """The default stage length of a window (see the module docstring)."""
    for stage in (32, 16, 8):
        if window % stage == 0 and window // stage >= 3:
            return stage
    for stage in range(min(32, window // 3), 3, -1):
        if window % stage == 0:
            return stage
    raise ConfigError(
        f"window {window} cannot be cut into 3 or more stages of 4 to 32 steps; choose a window that "
        f"is a multiple of 8 (e.g. {max(24, window // 8 * 8)}) or set stage_length yourself"
    )


def stage_settings(stage_length: int) -> dict[str, Any]:
    """Patches, context and pooling kernels that follow a stage length: patches of 4 (stages up to 8 steps) or 8
    (else the largest divisor up to 8), a context of a quarter stage between 4 and 8 steps that the patches tile,
    and a coarse pooling kernel of about 0.8 stage lengths (odd) before the finest scale."""
    limit = 4 if stage_length <= 8 else 8
    patch = max(p for p in range(1, limit + 1) if stage_length % p == 0)
    step = patch // math.gcd(2, patch)  # 2 * context must be a multiple of the patch for the patches to tile
    target = min(stage_length // 2, max(4, min(8, stage_length // 4)))
    context = -(-target // step) * step
    if context > stage_length // 2:
        context = stage_length // 2 // step * step
    kernel = 2 * round((0.8 * stage_length - 1) / 2) + 1
    return {
        "patch_length": patch,
        "patch_stride": patch,
        "context": context,
        "pool_kernels": (kernel, 1) if kernel > 1 else (1,),
    }


def window_settings(window: int, given: dict[str, Any]) -> dict[str, Any]:
    """Values for the window-dependent fields that ``given`` leaves None."""
    chosen: dict[str, Any] = {}
    stage = given.get("stage_length") or stage_length_for(window)
    if given.get("stage_length") is None:
        chosen["stage_length"] = stage
    for name, value in stage_settings(stage).items():
        if given.get(name) is None:
            chosen[name] = value
    wide = window >= 128
    if given.get("d_model") is None:
        chosen["d_model"] = 64 if wide else 32
    if given.get("feedforward") is None:
        chosen["feedforward"] = 2 * (given.get("d_model") or chosen["d_model"])
    return chosen


def data_choices(
    train: np.ndarray, window: int, given: dict[str, Any], description: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """The data-dependent choices for the fields ``given`` leaves None, from the scaled training split
    (rows, channels) in [-1, 1] and the series' ``description`` (its time axis,
    :func:`stagediff.data.prepared.describe_series`): ``{field: {"value": ..., "because": "...", **numbers}}``."""
    from stagediff.calendar import choose_cycles

    choices: dict[str, dict[str, Any]] = {}
    if given.get("calendar") is None:
        choices["calendar"] = choose_cycles(description or {})
    if given.get("channel_independent") is None:
        choices["channel_independent"] = _channel_choice(train, window)
    if given.get("range_margin") is None:
        choices["range_margin"] = _margin_choice(train, window)
    for name, choice in choices.items():
        logger.info("chose %s = %s: %s", name, choice["value"], choice["because"])
    return choices


def held_bounds(train: np.ndarray) -> dict[str, list[bool]]:
    """Per channel, whether the series piles up against its minimum ("low") or maximum ("high"): at least
    HELD_SHARE of the training rows lie within HELD_TOLERANCE of the range from that extreme (a floor such as zero
    for solar power, or a ceiling such as 100 %). Samples never cross such a bound, whatever the margin."""
    low, high = train.min(axis=0), train.max(axis=0)
    tolerance = HELD_TOLERANCE * np.maximum(high - low, 1e-12)
    return {
        "low": [bool(v) for v in np.mean(train <= low + tolerance, axis=0) >= HELD_SHARE],
        "high": [bool(v) for v in np.mean(train >= high - tolerance, axis=0) >= HELD_SHARE],
    }


def largest_correlation(values: np.ndarray) -> float:
    """The largest absolute correlation between two channels of (rows, channels) values (0 for one channel;
    constant channels are left out)."""
    values = values[:, values.std(axis=0) > 0] if len(values) > 1 else values[:, :0]
    if values.shape[1] < 2:
        return 0.0
    correlation = np.corrcoef(values.T)
    np.fill_diagonal(correlation, 0.0)
    return float(np.nanmax(np.abs(correlation)))


def step_coupling(values: np.ndarray) -> float:
    """The largest absolute correlation between two channels' step-to-step changes."""
    return largest_correlation(np.diff(values, axis=0))


def _channel_choice(train: np.ndarray, window: int) -> dict[str, Any]:
    steps, levels, windows = step_coupling(train), largest_correlation(train), len(train) / window
    coupled = steps >= COUPLED_STEPS or levels >= COUPLED_LEVELS
    joint = coupled and windows >= JOINT_MIN_WINDOWS
    together = (
        f"the channels' steps correlate up to {steps:.2f} (coupled from {COUPLED_STEPS}) and their levels up "
        f"to {levels:.2f} (from {COUPLED_LEVELS})"
    )
    if train.shape[1] < 2:
        because = "one channel"
    elif joint:
        because = (
            f"{together}, and the training split holds {windows:.0f} windows (>= {JOINT_MIN_WINDOWS}): "
            "channels modelled jointly"
        )
    elif coupled:
        because = (
            f"{together}, but the training split holds only {windows:.0f} windows (< {JOINT_MIN_WINDOWS}), too "
            "few to model them jointly without copying: each channel modelled on its own, fused between stages"
        )
    else:
        because = f"{together}: each channel modelled on its own, fused between stages"
    return {
        "value": not joint,
        "because": because,
        "step_coupling": round(steps, 4),
        "level_coupling": round(levels, 4),
        "training_windows": round(windows, 1),
    }


def _margin_choice(train: np.ndarray, window: int) -> dict[str, Any]:
    """How far the series went beyond its own earlier range: the later part of the split against the range of
    the first four fifths, as a share of the whole split's range (largest over channels), within MARGIN_BOUNDS.
    A series that drifts or trends earns a wider margin than one that stays in its range."""
    cut = max(window, int(0.8 * len(train)))
    early, late = train[:cut], train[cut:]
    span = np.maximum(train.max(axis=0) - train.min(axis=0), 1e-12)
    beyond = 0.0
    if len(late):
        above = np.maximum(late.max(axis=0) - early.max(axis=0), 0.0)
        below = np.maximum(early.min(axis=0) - late.min(axis=0), 0.0)
        beyond = float(np.max(np.maximum(above, below) / span))
    value = float(np.clip(beyond, *MARGIN_BOUNDS))
    return {
        "value": round(value, 4),
        "because": f"the last fifth of the training split went {beyond:.1%} of the "
        f"range beyond the first four fifths' range (bounded to {MARGIN_BOUNDS[0]:.0%}-{MARGIN_BOUNDS[1]:.0%})",
        "observed": round(beyond, 4),
    }
