"""Prepared training data: the time split, the scaler fitted on the training part only, the scaled splits, and
what a generator remembers about its series. ``StageDiff.fit`` prepares in memory; the pipeline's segment
stage writes the same thing to a folder (plus the stage-segmented windows) and its train stage reads it back.

Split by time, then scale, then window (docs: guide, habit 4)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stagediff.data.loading import Series
from stagediff.data.windows import MinMaxScaler, segment_stages, sliding_windows, split_by_time
from stagediff.errors import DataError

SPLIT_FILE, WINDOWS_FILE, SCALER_FILE, DESCRIPTION_FILE = "split.npz", "windows.npz", "scaler.json", "series.json"


@dataclass(frozen=True)
class PreparedData:
    """train: (rows, channels) and validation: (rows, channels), both scaled to [-1, 1] by ``scaler`` (fitted on
    train); description: the series' names, time axis, size and hash (:func:`describe_series`); missing: (train rows +
    validation rows, channels) True where a value was missing and is interpolated (``missing="mask"``), else None."""

    train: np.ndarray
    validation: np.ndarray
    scaler: MinMaxScaler
    description: dict[str, Any]
    missing: np.ndarray | None = None

    def missing_of(self, part: str) -> np.ndarray | None:
        """The ``missing`` rows of the "train" or "validation" split (None without missing values)."""
        if self.missing is None:
            return None
        return self.missing[: len(self.train)] if part == "train" else self.missing[len(self.train) :]

    @property
    def n_channels(self) -> int:
        return int(self.train.shape[1])


def prepare(series: Series, window: int, validation_fraction: float) -> PreparedData:
    """Split ``series`` by time, fit the scaler on the training part and scale both parts."""
    train, validation = split_by_time(series.values, validation_fraction)
    if len(train) < window:
        raise DataError(
            f"the training split ({len(train)} of {series.length} rows, validation_fraction "
            f"{validation_fraction}) is shorter than one window of {window}; "
            "lower validation_fraction or window"
        )
    scaler = MinMaxScaler.fit(train)
    return PreparedData(
        scaler.transform(train),
        scaler.transform(validation),
        scaler,
        describe_series(series, len(train)),
        series.missing,
    )


def save_prepared(directory: str | os.PathLike, prepared: PreparedData, window: int, stage_length: int) -> Path:
    """Write the prepared data to ``directory``: split.npz (scaled train/validation series), windows.npz (their
    stride-1 windows cut into stages, float32, (n, stages, stage_length, channels); validation empty when it is
    shorter than a window), scaler.json and series.json."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    missing = {} if prepared.missing is None else {"missing": prepared.missing}
    np.savez(target / SPLIT_FILE, train=prepared.train, validation=prepared.validation, **missing)
    np.savez(
        target / WINDOWS_FILE,
        **{
            name: stage_windows(part, window, stage_length)
            for name, part in (("train", prepared.train), ("validation", prepared.validation))
        },
    )
    (target / SCALER_FILE).write_text(json.dumps(prepared.scaler.to_dict(), indent=2))
    (target / DESCRIPTION_FILE).write_text(json.dumps(prepared.description, indent=2))
    return target


def load_prepared(directory: str | os.PathLike) -> PreparedData:
    """Read what :func:`save_prepared` wrote."""
    source = Path(directory)
    missing = [name for name in (SPLIT_FILE, SCALER_FILE, DESCRIPTION_FILE) if not (source / name).is_file()]
    if missing:
        raise DataError(f"{source} is not prepared data: {missing} missing (written by the segment stage)")
    with np.load(source / SPLIT_FILE) as split:
        train, validation = split["train"], split["validation"]
        absent = split["missing"] if "missing" in split.files else None
    return PreparedData(
        train,
        validation,
        MinMaxScaler.from_dict(json.loads((source / SCALER_FILE).read_text())),
        json.loads((source / DESCRIPTION_FILE).read_text()),
        absent,
    )


def stage_windows(values: np.ndarray, window: int, stage_length: int) -> np.ndarray:
    """(rows, channels) -> (n, window // stage_length, stage_length, channels) float32; n = 0 when too short."""
    if len(values) < window:
        return np.zeros((0, window // stage_length, stage_length, values.shape[1]), dtype=np.float32)
    return segment_stages(sliding_windows(values, window), stage_length).astype(np.float32)


def describe_series(series: Series, training_rows: int) -> dict[str, Any]:
    """What the generator remembers about its data (no values): names, time axis, size and hash."""
    timestamps = series.timestamps
    return {
        "channels": list(series.channels),
        "time_column": series.time_column,
        "frequency": encode_frequency(series.frequency),
        "first_time": None if timestamps is None else encode_time(timestamps[0]),
        "last_time": None if timestamps is None else encode_time(timestamps[-1]),
        "timezone": None if getattr(timestamps, "tz", None) is None else str(timestamps.tz),
        "rows": series.length,
        "training_rows": training_rows,
        "source": series.source,
        "content_hash": series.content_hash,
    }


def encode_frequency(frequency: Any) -> dict[str, Any] | None:
    if frequency is None:
        return None
    if isinstance(frequency, pd.Timedelta):
        return {"kind": "timedelta", "value": frequency.isoformat()}
    return {"kind": "number", "value": frequency.item() if hasattr(frequency, "item") else frequency}


def decode_frequency(encoded: dict[str, Any] | None) -> pd.Timedelta | float | int | None:
    if encoded is None:
        return None
    return pd.Timedelta(encoded["value"]) if encoded["kind"] == "timedelta" else encoded["value"]


def encode_time(value: Any) -> Any:
    return value.isoformat() if isinstance(value, pd.Timestamp) else (value.item() if hasattr(value, "item") else value)


def decode_time(value: Any, frequency: Any) -> Any:
    return pd.Timestamp(value) if isinstance(frequency, pd.Timedelta) else value
