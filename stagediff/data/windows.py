"""Time split, stride-1 windows, stage segmentation and the per-channel min-max scaler.

The order is fixed by habit (GluonTS): split by time, then window, then scale, with the scaler fitted
on the training split only so that no validation statistics leak into training.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stagediff.errors import DataError


@dataclass(frozen=True, eq=False)
class MinMaxScaler:
    """Per-channel min-max scaling to [-1, 1] on the fitted range (Diffusion-TS / Stage-Diff convention).

    ``scaled = 2 * (x - center) / range`` with ``center = (maximum + minimum) / 2`` and
    ``range = maximum - minimum``; a constant channel uses range 1, so it maps to 0 without dividing by 0.
    Values outside the fitted range (e.g. validation data) map outside [-1, 1]; nothing is clipped.

    Attributes:
        minimum: (channels,) float64 per-channel minimum of the training split.
        maximum: (channels,) float64 per-channel maximum of the training split.
    """

    minimum: np.ndarray
    maximum: np.ndarray

    def __post_init__(self) -> None:
        minimum = _as_read_only_vector("minimum", self.minimum)
        maximum = _as_read_only_vector("maximum", self.maximum)
        if minimum.shape != maximum.shape:
            raise DataError(
                f"scaler minimum has shape {minimum.shape} but maximum has {maximum.shape}; both must be (channels,)"
            )
        if np.any(maximum < minimum):
            channels = np.flatnonzero(maximum < minimum).tolist()
            raise DataError(f"scaler maximum is below minimum for channel index(es) {channels}; refit the scaler")
        object.__setattr__(self, "minimum", minimum)
        object.__setattr__(self, "maximum", maximum)

    @property
    def n_channels(self) -> int:
        """Number of channels the scaler was fitted on."""
        return int(self.minimum.shape[0])

    @classmethod
    def fit(cls, values: np.ndarray) -> MinMaxScaler:
        """Fit on the training split ``values`` of shape (length, channels), finite, length >= 1."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise DataError(
                f"MinMaxScaler.fit expects a non-empty (length, channels) array, got shape {values.shape}; "
                f"pass the training split before windowing"
            )
        if not np.all(np.isfinite(values)):
            raise DataError("MinMaxScaler.fit got NaN or infinite values; validate the data with load_series first")
        return cls(minimum=values.min(axis=0), maximum=values.max(axis=0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale (..., channels) data units to [-1, 1] on the fitted range; returns float64 (..., channels)."""
        values = self._check_channels(values, "transform")
        return 2.0 * (values - self._center) / self._safe_range

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """Map scaled (..., channels) values back to data units; the exact inverse of :meth:`transform`."""
        values = self._check_channels(values, "inverse_transform")
        return values * self._safe_range / 2.0 + self._center

    def to_dict(self) -> dict:
        """JSON-serialisable ``{"minimum": [...], "maximum": [...]}``."""
        return {"minimum": self.minimum.tolist(), "maximum": self.maximum.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> MinMaxScaler:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or set(data) != {"minimum", "maximum"}:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(
                f"scaler data must be a dict with exactly the keys 'minimum' and 'maximum', got {keys}; "
                f"use the output of MinMaxScaler.to_dict()"
            )
        return cls(minimum=np.asarray(data["minimum"]), maximum=np.asarray(data["maximum"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MinMaxScaler):
            return NotImplemented
        return np.array_equal(self.minimum, other.minimum) and np.array_equal(self.maximum, other.maximum)

    __hash__ = None  # type: ignore[assignment]  # holds arrays, like numpy arrays it is unhashable

    @property
    def _center(self) -> np.ndarray:
        return (self.maximum + self.minimum) / 2.0

    @property
    def _safe_range(self) -> np.ndarray:
        span = self.maximum - self.minimum
        return np.where(span == 0, 1.0, span)  # constant channel: range 1 avoids division by zero

    def _check_channels(self, values: np.ndarray, method: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 0 or values.shape[-1] != self.n_channels:
            raise DataError(
                f"MinMaxScaler.{method} expects (..., {self.n_channels}) values (channels last), "
                f"got shape {values.shape}; pass data with the channels the scaler was fitted on"
            )
        return values


def split_by_time(values: np.ndarray, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Chronological split: the first rows train, the last ``floor(length * validation_fraction)`` validate.

    Args:
        values: (length, channels).
        validation_fraction: in [0, 1); 0 gives an empty (0, channels) validation split.

    Returns:
        ``(train, validation)`` of shapes (length - n_validation, channels) and (n_validation, channels),
        views into ``values``.
    """
    values = _check_two_dimensional(values, "split_by_time")
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, numbers.Real)
        or not 0.0 <= float(validation_fraction) < 1.0
    ):
        raise DataError(
            f"validation_fraction must be a number in [0, 1), got {validation_fraction!r}; e.g. 0.1 keeps the "
            f"last 10% of the series for validation"
        )
    n_validation = int(np.floor(len(values) * float(validation_fraction)))
    n_train = len(values) - n_validation
    return values[:n_train], values[n_train:]


def sliding_windows(values: np.ndarray, window: int) -> np.ndarray:
    """Stride-1 windows over time.

    Args:
        values: (length, channels).
        window: window length, 1 <= window <= length.

    Returns:
        Read-only view of shape (length - window + 1, window, channels); window ``i`` is ``values[i:i + window]``.
    """
    values = _check_two_dimensional(values, "sliding_windows")
    _check_positive_integer("window", window)
    if len(values) < window:
        raise DataError(
            f"series has {len(values)} rows, shorter than one window of {window} rows; "
            f"use a window of at most {len(values)} rows or a longer series"
        )
    # sliding_window_view appends the window axis last: (n_windows, channels, window) -> (n_windows, window, channels)
    return sliding_window_view(values, window, axis=0).transpose(0, 2, 1)


def segment_stages(windows: np.ndarray, stage_length: int) -> np.ndarray:
    """Cut each window into consecutive stages of ``stage_length`` steps (Stage-Diff, arXiv 2508.21330).

    Args:
        windows: (n, window, channels) with ``window % stage_length == 0``.
        stage_length: steps per stage.

    Returns:
        (n, window // stage_length, stage_length, channels); stage ``s`` of window ``i`` is
        ``windows[i, s * stage_length:(s + 1) * stage_length]``. A view when possible, otherwise a copy.
    """
    windows = np.asarray(windows)
    if windows.ndim != 3:
        raise DataError(
            f"segment_stages expects windows of shape (n, window, channels), got shape {windows.shape}; "
            f"build them with sliding_windows"
        )
    _check_positive_integer("stage_length", stage_length)
    n_windows, window, channels = windows.shape
    if window % stage_length != 0:
        lower = (window // stage_length) * stage_length
        upper = lower + stage_length
        suggestions = " or ".join(str(length) for length in (lower, upper) if length > 0)
        raise DataError(
            f"window length {window} is not a multiple of stage_length {stage_length}; choose a window that is a "
            f"multiple of the stage length (e.g. {suggestions}) or a stage length that divides {window}"
        )
    return windows.reshape(n_windows, window // stage_length, stage_length, channels)


def _check_two_dimensional(values: np.ndarray, function: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise DataError(
            f"{function} expects a (length, channels) array, got shape {values.shape}; "
            f"use Series.values or reshape a single channel with values[:, None]"
        )
    return values


def _check_positive_integer(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} must be an integer of at least 1, got {value!r}")


def _as_read_only_vector(name: str, values: np.ndarray) -> np.ndarray:
    vector = np.array(values, dtype=np.float64)  # a private copy, so freezing it cannot affect the caller
    if vector.ndim != 1 or vector.size == 0:
        raise DataError(f"scaler {name} must be a non-empty (channels,) vector, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise DataError(f"scaler {name} contains NaN or infinite values; refit the scaler on finite data")
    vector.setflags(write=False)
    return vector
