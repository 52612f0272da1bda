"""Data ingestion for Stage-Diff: loading, validation, built-in datasets, time split, windows, scaler.

Typical use (split by time, then window, then scale)::

    series = load_series("etth1", min_length=window)
    train, validation = split_by_time(series.values, 0.1)
    scaler = MinMaxScaler.fit(train)
    stages = segment_stages(sliding_windows(scaler.transform(train), window), stage_length)
"""

from stagediff.data.builtin import BUILTIN_DATASETS, BuiltinDataset, resolve_data_dir, synthetic_frame
from stagediff.data.loading import Series, load_frame, load_series, validate_frame
from stagediff.data.prepared import PreparedData, load_prepared, prepare, save_prepared
from stagediff.data.windows import MinMaxScaler, segment_stages, sliding_windows, split_by_time

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "MinMaxScaler",
    "PreparedData",
    "Series",
    "load_frame",
    "load_prepared",
    "load_series",
    "prepare",
    "resolve_data_dir",
    "save_prepared",
    "segment_stages",
    "sliding_windows",
    "split_by_time",
    "synthetic_frame",
    "validate_frame",
]
