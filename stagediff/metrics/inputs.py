"""Shared input handling of the metrics: DataFrames to windows, shape and value checks, the [0, 1] scale.

Every metric takes windows of shape (n, length, channels). :func:`stagediff.metrics.evaluate` converts the
library's long DataFrames with :func:`to_windows`, checks both inputs with :func:`check_pair` and rescales
both with the per-channel range of the real windows (:class:`UnitScale`) before any metric runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from stagediff.errors import DataError
from stagediff.generator import SAMPLE_COLUMN

MIN_SPLIT_WINDOWS = 10
"""Fewest windows per input for the judges that split 80/20 (2 test windows each at 10)."""


def to_windows(frame: pd.DataFrame, time_column: str | None = None) -> np.ndarray:
    """Long DataFrame (columns ``sample``, a time column, then the channels; as ``StageDiff.sample``
    returns) -> float64 array (n, length, channels), samples in order of first appearance.

    time_column: the time column's name; default the column right after ``sample`` (the library's layout).
    Every sample must have the same number of rows, and rows keep their order within a sample.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"to_windows expects a pandas DataFrame, got {type(frame).__name__}")
    columns = list(frame.columns)
    if SAMPLE_COLUMN not in columns:
        raise DataError(
            f"the DataFrame has no '{SAMPLE_COLUMN}' column (columns: {columns}); pass the long frame "
            f"StageDiff.sample returns, or an array (n, length, channels)"
        )
    if time_column is None:
        position = columns.index(SAMPLE_COLUMN) + 1
        if position >= len(columns):
            raise DataError(f"the DataFrame has no time column after '{SAMPLE_COLUMN}' (columns: {columns})")
        time_column = columns[position]
    elif time_column not in columns:
        raise DataError(f"time column '{time_column}' is not in the DataFrame (columns: {columns})")
    channels = [c for c in columns if c not in (SAMPLE_COLUMN, time_column)]
    if not channels:
        raise DataError(f"the DataFrame has no channel columns besides '{SAMPLE_COLUMN}' and '{time_column}'")
    not_numeric = [c for c in channels if not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric:
        raise DataError(f"channel column(s) {not_numeric} are not numeric; drop them or convert them")
    counts = frame.groupby(SAMPLE_COLUMN, sort=False).size()
    if counts.nunique() != 1:
        raise DataError(
            f"samples have different lengths ({counts.min()} to {counts.max()} rows); windows must share one length"
        )
    order = pd.Index(counts.index)
    positions = np.argsort(order.get_indexer(frame[SAMPLE_COLUMN]), kind="stable")
    values = frame[channels].to_numpy(dtype=np.float64)[positions]
    return values.reshape(len(counts), int(counts.iloc[0]), len(channels))


def as_windows(data: np.ndarray | pd.DataFrame, name: str) -> np.ndarray:
    """``data`` as a finite float64 array (n, length, channels) with n, length, channels >= 1."""
    windows = to_windows(data) if isinstance(data, pd.DataFrame) else np.asarray(data, dtype=np.float64)
    if windows.ndim != 3:
        raise DataError(
            f"{name} must have shape (n, length, channels), got shape {windows.shape}; reshape a "
            f"single series with values[None] or a single channel with values[..., None]"
        )
    if min(windows.shape) < 1:
        raise DataError(f"{name} is empty (shape {windows.shape})")
    if not np.isfinite(windows).all():
        bad = np.argwhere(~np.isfinite(windows).all(axis=(0, 1))).ravel().tolist()
        raise DataError(f"{name} contains NaN or infinite values (channel index(es) {bad}); fill or drop them")
    return windows


def check_pair(real: np.ndarray, synthetic: np.ndarray, names: tuple[str, str] = ("real", "synthetic")) -> None:
    """Both (n, length, channels) with the same length and channel count (n may differ)."""
    (first, second), (a, b) = names, (real.shape, synthetic.shape)
    if a[2] != b[2]:
        raise DataError(f"{first} has {a[2]} channels but {second} has {b[2]}; compare windows of the same channels")
    if a[1] != b[1]:
        raise DataError(
            f"{first} windows have length {a[1]} but {second} windows have length {b[1]}; cut both to one window length"
        )


def check_split_size(windows: np.ndarray, name: str, metric: str) -> None:
    """Enough windows for a judge that splits 80/20 or trains on the windows."""
    if len(windows) < MIN_SPLIT_WINDOWS:
        raise DataError(
            f"{metric} needs at least {MIN_SPLIT_WINDOWS} {name} windows for its 80/20 split, got "
            f"{len(windows)}; pass more windows"
        )


@dataclass(frozen=True)
class UnitScale:
    """Per-channel min-max scale to [0, 1] fitted on the real windows (evaluation.md), applied to every input.

    ``scaled = (x - minimum) / (maximum - minimum)``; a constant channel uses range 1. Values outside the
    fitted range (synthetic or held-out windows) map outside [0, 1] and are not clipped.
    """

    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def fit(cls, windows: np.ndarray) -> UnitScale:
        """Fit on (n, length, channels)."""
        return cls(windows.min(axis=(0, 1)), windows.max(axis=(0, 1)))

    def transform(self, windows: np.ndarray) -> np.ndarray:
        span = self.maximum - self.minimum
        return (windows - self.minimum) / np.where(span > 0, span, 1.0)


def subsample(windows: np.ndarray, limit: int, rng: np.random.Generator | int) -> np.ndarray:
    """At most ``limit`` windows, chosen at random without replacement, in their original order (all of them if
    fewer). ``rng``: a generator, or a seed for one."""
    return windows[choose(len(windows), limit, rng)]


def choose(count: int, limit: int, rng: np.random.Generator | int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``count`` items, at random without replacement (all if fewer);
    ``rng``: a generator, or a seed for one."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(rng).choice(count, size=limit, replace=False))


def split_train_test(
    windows: np.ndarray,
    rng: np.random.Generator,
    train_fraction: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random 80/20 split of windows (TimeGAN's ``train_test_divide``)."""
    order = rng.permutation(len(windows))
    cut = int(round(train_fraction * len(windows)))
    return windows[order[:cut]], windows[order[cut:]]


def seeded_module(build, seed: int) -> torch.nn.Module:
    """``build()`` with torch's global RNG seeded by ``seed`` for the initial weights, restored afterwards, so
    that a judge's weights depend on its seed only and callers' random state is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def as_tensor(windows: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(windows), dtype=torch.float32)
