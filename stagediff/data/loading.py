"""Reading tables (DataFrame, CSV, parquet, built-ins) and validating them into a :class:`Series`.

Every check runs in :func:`validate_frame` before any conversion or interpolation, and each failure
raises :class:`~stagediff.errors.DataError` naming the problem, the offending columns or rows and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stagediff.data.builtin import BUILTIN_DATASETS, BuiltinDataset, builtin_path, find_builtin, synthetic_frame
from stagediff.data.rules import check_finite, check_times, examples, is_numeric, most_common_step, read_times
from stagediff.errors import DataError

logger = logging.getLogger(__name__)

MISSING_OPTIONS: tuple[str, ...] = ("error", "interpolate", "mask")
"""What to do with NaN/inf in the data: refuse it, fill it by linear interpolation in time, or fill it so and leave it
out of the training loss (:attr:`Series.missing`)."""
CSV_SUFFIXES: tuple[str, ...] = (".csv",)
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
LONG_GAP = 24
"""Missing values in a row beyond which missing="interpolate" warns (a day of hourly data)."""


@dataclass(frozen=True, eq=False)
class Series:
    """A validated multivariate series ready for modelling.

    Attributes:
        values: (length, channels) float64, finite, read-only.
        channels: channel names, in column order.
        time_column: name of the time column, ``None`` if the data had none.
        timestamps: strictly increasing ``DatetimeIndex`` (or numeric ``Index`` for a numeric time column)
            of length ``length``; ``None`` without a time column.
        frequency: most common step between timestamps: ``pd.Timedelta`` for datetimes, ``int``/``float``
            for numeric time; ``None`` without a time column or with a single row.
        source: human description: builtin name, file path, or ``"DataFrame"``.
        content_hash: sha256 hex of the values' bytes and the channel names (stable for the same data).
        missing: (length, channels) True where a value was missing and ``values`` holds its interpolation
            (``missing="mask"``, which trains on the observed values only); ``None`` otherwise.
    """

    values: np.ndarray
    channels: tuple[str, ...]
    time_column: str | None
    timestamps: pd.Index | None
    frequency: pd.Timedelta | float | int | None
    source: str
    content_hash: str
    missing: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Number of rows (time steps)."""
        return int(self.values.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.values.shape[1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Series):
            return NotImplemented
        same_timestamps = (self.timestamps is None and other.timestamps is None) or (
            self.timestamps is not None and other.timestamps is not None and self.timestamps.equals(other.timestamps)
        )
        return (
            self.content_hash == other.content_hash
            and self.channels == other.channels
            and self.time_column == other.time_column
            and self.frequency == other.frequency
            and same_timestamps
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays, like numpy arrays it is unhashable


def compute_content_hash(values: np.ndarray, channels: tuple[str, ...]) -> str:
    """sha256 hex of float64 C-ordered ``values`` (length, channels) followed by the channel names."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    for name in channels:
        digest.update(b"\x1f")  # unit separator keeps ("ab", "c") apart from ("a", "bc")
        digest.update(name.encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- loading


def load_frame(
    source: str | os.PathLike | pd.DataFrame,
    time_column: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, str | None, str]:
    """Read the raw table without validating it.

    Args:
        source: a DataFrame, a built-in name (case-insensitive: synthetic, etth1, stock, exchange) or a path
            to a ``.csv`` / ``.parquet`` / ``.pq`` file. A string that names a built-in is the built-in.
        time_column: name of the time column; for built-ins ``None`` means the dataset's own
            (``"date"`` for synthetic, etth1 and exchange; none for stock).
        data_dir: directory of the benchmark files (see :func:`resolve_data_dir`).

    Returns:
        ``(frame, time_column, source_description)``.

    Raises:
        DataError: unknown name, missing or modified benchmark file, unsupported extension, unreadable file.
    """
    if isinstance(source, pd.DataFrame):
        return source, time_column, "DataFrame"
    if isinstance(source, str):
        dataset = find_builtin(source)
        if dataset is not None:
            return _load_builtin(dataset, time_column, data_dir)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(
            f"source must be a pandas DataFrame, a builtin name ({_builtin_names()}) or a path to a "
            f".csv/.parquet file, got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    return _read_table(path), time_column, str(path)


def load_series(
    source: str | os.PathLike | pd.DataFrame,
    time_column: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    missing: str = "error",
    max_channels: int | None = None,
    min_length: int | None = None,
    columns: Sequence[str] | None = None,
) -> Series:
    """Read ``source`` with :func:`load_frame` and validate it with :func:`validate_frame` (``columns``: the
    channel columns; default every column but the time column).

    Returns:
        Series with values of shape (length, channels).
    """
    _check_missing_option(missing)
    frame, resolved_time_column, description = load_frame(source, time_column, data_dir=data_dir)
    return validate_frame(
        frame,
        resolved_time_column,
        missing=missing,
        max_channels=max_channels,
        min_length=min_length,
        source=description,
        columns=columns,
    )


def _load_builtin(
    dataset: BuiltinDataset, time_column: str | None, data_dir: str | os.PathLike | None
) -> tuple[pd.DataFrame, str | None, str]:
    """Frame of a built-in dataset; benchmark files are checked for presence and sha256 first."""
    chosen_time_column = dataset.time_column if time_column is None else time_column
    if not dataset.is_file:
        return synthetic_frame(), chosen_time_column, f"builtin {dataset.name!r} (generated, seed 0)"
    path = builtin_path(dataset, data_dir)
    logger.debug("reading builtin dataset %s from %s", dataset.name, path)
    # Stock keeps the file's row order (oldest first); TimeGAN's reversal is deliberately not applied.
    return _read_table(path), chosen_time_column, f"builtin {dataset.name!r} ({path})"


def _read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or parquet file into a DataFrame, turning every failure into a DataError."""
    suffix = path.suffix.lower()
    supported = CSV_SUFFIXES + PARQUET_SUFFIXES
    if suffix not in supported:
        if not path.exists():
            raise DataError(
                f"unknown data source {str(path)!r}: it is not a builtin dataset ({_builtin_names()}) "
                f"and no such file exists; pass a builtin name or the path of a .csv/.parquet file"
            )
        raise DataError(
            f"unsupported file type {suffix or '(no extension)'!r} for {path}; supported: "
            f"{', '.join(supported)}. Convert the file to CSV or parquet, or load it yourself and pass a DataFrame"
        )
    if not path.is_file():
        raise DataError(f"data file {path} does not exist (or is not a file); check the path")
    try:
        if suffix in CSV_SUFFIXES:
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except Exception as error:  # parsers and pyarrow raise many error types; all mean "unreadable file"
        raise DataError(f"could not read {path} as {suffix[1:]}: {error}; check that the file is valid") from error


def _builtin_names() -> str:
    return ", ".join(BUILTIN_DATASETS)


# ------------------------------------------------------------------------------------------ validation


def validate_frame(
    frame: pd.DataFrame,
    time_column: str | None = None,
    *,
    missing: str = "error",
    max_channels: int | None = None,
    min_length: int | None = None,
    source: str = "DataFrame",
    columns: Sequence[str] | None = None,
) -> Series:
    """Check a table and turn it into a :class:`Series`.

    Every check runs before any conversion: frame type, options, time column (present, parseable, no
    missing, no duplicates, strictly increasing, one regular step), length (at least one row, at least
    ``min_length``), channel columns (present, numeric, at least one, at most ``max_channels``), and missing
    values (NaN and +-inf). With ``missing="interpolate"`` infinities count as missing and are filled by linear
    interpolation in time (against the timestamps when there are any); the edges take the nearest observed value.
    ``missing="mask"`` fills them alike and records where they were (:attr:`Series.missing`), so that training
    leaves them out of its loss.
    A constant channel, and a filled gap longer than LONG_GAP rows, only warn (``UserWarning``).

    Args:
        frame: table of shape (length, columns): an optional time column plus numeric channels.
        time_column: name of the time column, or ``None`` when the frame has none.
        columns: the channel columns, in this order; ``None``: every column except the time column.
        missing: ``"error"``, ``"interpolate"`` or ``"mask"``.
        max_channels: the number of channels the model is configured for, if any.
        min_length: the shortest usable series (one window), if any.
        source: human description carried into the Series and error messages.

    Returns:
        Series with values of shape (length, channels), float64.

    Raises:
        DataError: naming the problem, the first few offending columns/rows and the fix.
    """
    _check_is_frame(frame)
    frame, time_column = time_index_as_column(frame, time_column, source)
    _check_missing_option(missing)
    _check_optional_positive("max_channels", max_channels)
    _check_optional_positive("min_length", min_length)
    _check_unique_columns(frame, source)
    _check_time_column_present(frame, time_column, source)
    _check_length(len(frame), min_length, source)
    channel_columns = channel_columns_of(frame, columns, time_column, source)
    _check_channel_columns(frame, channel_columns, time_column, source)
    _check_channel_count(len(channel_columns), max_channels, source)
    timestamps = None if time_column is None else check_times(frame[time_column], time_column, source)
    values = frame[channel_columns].to_numpy(dtype=np.float64, na_value=np.nan)
    channels = tuple(str(column) for column in channel_columns)
    _check_missing_values(values, channels, missing, source)
    absent = None
    if missing == "mask" and not np.isfinite(values).all():
        absent = ~np.isfinite(values)
        absent.setflags(write=False)
    if missing != "error":
        values = _interpolate_missing(values, channels, timestamps, source, warn=missing == "interpolate")
    _warn_constant_channels(values, channels, source)
    values = np.ascontiguousarray(values)
    values.setflags(write=False)
    return Series(
        values=values,
        channels=channels,
        time_column=time_column,
        timestamps=timestamps,
        frequency=None if timestamps is None else most_common_step(timestamps),
        source=source,
        content_hash=compute_content_hash(values, channels),
        missing=absent,
    )


def _check_is_frame(frame: object) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"expected a pandas DataFrame, got {type(frame).__name__}; wrap arrays with "
            f"pd.DataFrame(values, columns=names) or pass a file path / builtin name to load_series"
        )


def time_index_as_column(frame: pd.DataFrame, time_column: str | None, source: str) -> tuple[pd.DataFrame, str | None]:
    """A frame whose index holds the times (a DatetimeIndex, as ``df.set_index("timestamp")`` makes) with the index
    as its time column, named as the index is ("time" if unnamed); other frames as they are."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        return frame, time_column
    name = "time" if index.name is None else index.name
    if time_column is not None and time_column != name:
        raise DataError(
            f"{source}: the frame's index holds times ({name!r}) and time_column names another column "
            f"({time_column!r}); pass time_column={name!r} or reset the index"
        )
    if name in frame.columns:
        raise DataError(
            f"{source}: the frame's index holds times and a column is also named {name!r}; rename one of them"
        )
    return frame.reset_index(names=name), name


def _check_missing_option(missing: object) -> None:
    if missing not in MISSING_OPTIONS:
        raise DataError(f"missing must be one of {', '.join(map(repr, MISSING_OPTIONS))}, got {missing!r}")


def _check_optional_positive(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{name} must be a positive integer or None, got {value!r}")


def _check_unique_columns(frame: pd.DataFrame, source: str) -> None:
    duplicated = frame.columns[frame.columns.duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"{source}: duplicated column names {examples(duplicated)}; rename them so each is unique")


def _check_time_column_present(frame: pd.DataFrame, time_column: str | None, source: str) -> None:
    if time_column is not None and time_column not in frame.columns:
        raise DataError(
            f"{source}: time column {time_column!r} is not a column; columns are {list(map(str, frame.columns))}. "
            f"Pass one of them as time_column, or time_column=None if the data has no time column"
        )


def channel_columns_of(
    frame: pd.DataFrame, columns: Sequence[str] | None, time_column: str | None, source: str
) -> list:
    """The channel columns: ``columns`` (each present, once, not the time column), else all but the time column."""
    if columns is None:
        return [column for column in frame.columns if column != time_column]
    if isinstance(columns, str):
        raise DataError(
            f"columns must be a list of column names, got the string {columns!r}; write columns=[{columns!r}]"
        )
    columns = list(columns)
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise DataError(
            f"{source}: column(s) {examples(absent)} named in columns are not in the data; its "
            f"columns are {examples(list(map(str, frame.columns)))}"
        )
    repeated = sorted({str(column) for column in columns if columns.count(column) > 1})
    if repeated:
        raise DataError(f"{source}: columns names {repeated} more than once; name each channel once")
    if time_column is not None and time_column in columns:
        raise DataError(f"{source}: columns names the time column {time_column!r}; list only the channels")
    return columns


def _check_channel_columns(frame: pd.DataFrame, channel_columns: list, time_column: str | None, source: str) -> None:
    if not channel_columns:
        raise DataError(
            f"{source}: no channel columns (columns: {list(map(str, frame.columns))}); "
            f"the data needs at least one numeric column besides the time column"
        )
    non_numeric = [column for column in channel_columns if not is_numeric(frame[column])]
    if non_numeric:
        described = [f"{str(column)!r} ({frame[column].dtype})" for column in non_numeric]
        times = [column for column in non_numeric if time_column is None and _holds_times(frame[column])]
        if times:
            hint = (
                f"or pass the time column: {str(times[0])!r} holds timestamps (time_column={str(times[0])!r}; on the "
                f"command line --time-column {times[0]})"
            )
        elif time_column is None:
            hint = "or pass the time column as time_column=... (on the command line --time-column NAME)"
        else:
            hint = f"(the time column is {time_column!r})"
        raise DataError(
            f"{source}: non-numeric channel column(s) {examples(described)}; every column except the time column "
            f"must be numeric. Drop these columns (frame.drop(columns=[...])), convert them to numbers, {hint}"
        )


def _holds_times(column: pd.Series) -> bool:
    """Whether every value of a non-numeric column reads as a timestamp (pandas' warnings about text that is none
    left out)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return bool(read_times(column).notna().all())
    except DataError:
        return False


def _check_channel_count(n_channels: int, max_channels: int | None, source: str) -> None:
    if max_channels is not None and n_channels > max_channels:
        raise DataError(
            f"{source}: data has {n_channels} channels but the model is configured for {max_channels}; "
            f"select at most {max_channels} channel columns or configure the model for {n_channels} channels"
        )


def _check_length(length: int, min_length: int | None, source: str) -> None:
    if length == 0:
        raise DataError(f"{source}: the data has no rows; pass a non-empty table")
    if min_length is not None and length < min_length:
        raise DataError(
            f"{source}: series has {length} rows, shorter than one window of {min_length} rows; "
            f"provide a longer series or configure a window of at most {length} rows"
        )


def _check_missing_values(values: np.ndarray, channels: tuple[str, ...], missing: str, source: str) -> None:
    """Raise for NaN/inf (missing="error") or for columns with nothing to interpolate from."""
    if missing == "error":
        fix = 'clean the data, or pass missing="interpolate" to fill them by linear interpolation in time'
        return check_finite(values, channels, source, fix)
    empty = [repr(name) for name, column in zip(channels, values.T) if not np.isfinite(column).any()]
    if empty:
        raise DataError(
            f"{source}: channel(s) {examples(empty)} have no finite value at all, so there is nothing to "
            f"interpolate from; drop those columns"
        )


def _interpolate_missing(
    values: np.ndarray, channels: tuple[str, ...], timestamps: pd.Index | None, source: str, warn: bool = True
) -> np.ndarray:
    """Fill NaN/inf per channel by linear interpolation in time; edges take the nearest observed value. A gap
    longer than LONG_GAP rows warns: the model learns its straight line as data.

    Args:
        values: (length, channels) with at least one finite value per channel.
        channels: channel names, for the log and the warning.
        timestamps: positions in time (length,), or ``None`` to interpolate by row position.
        source: description of the data, for the warning.

    Returns:
        (length, channels) finite float64 copy.
    """
    positions = _time_positions(timestamps, len(values))
    filled = values.copy()
    for index in range(values.shape[1]):
        observed = np.isfinite(values[:, index])
        if observed.all():
            continue
        # np.interp holds the first/last observed value beyond the edges, which is the nearest-value fill.
        filled[~observed, index] = np.interp(positions[~observed], positions[observed], values[observed, index])
        logger.info("interpolated %d missing value(s) in channel %r", int((~observed).sum()), channels[index])
        first, length = _longest_run(~observed)
        if warn and length > LONG_GAP:
            warnings.warn(
                f"{source}: channel {channels[index]!r} misses {length} values in a row (rows {first}-"
                f'{first + length - 1}); missing="interpolate" fills them with a straight line, which the model '
                f"will learn as if it were data. Drop that stretch (or split the series there) or fill it yourself",
                UserWarning,
                stacklevel=4,
            )
    return filled


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(first row, length) of the longest run of True in ``mask`` (length 0 if none)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not starts.size:
        return 0, 0
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest] - starts[longest])


def _time_positions(timestamps: pd.Index | None, length: int) -> np.ndarray:
    """Increasing float positions of the rows (length,): elapsed time when known, else row numbers."""
    if timestamps is None:
        return np.arange(length, dtype=np.float64)
    if isinstance(timestamps, pd.DatetimeIndex):
        return np.asarray((timestamps - timestamps[0]) / pd.Timedelta(1, "s"), dtype=np.float64)
    return timestamps.to_numpy(dtype=np.float64)


def _warn_constant_channels(values: np.ndarray, channels: tuple[str, ...], source: str) -> None:
    constant = [repr(channels[index]) for index in np.flatnonzero(np.ptp(values, axis=0) == 0)]
    if constant:
        warnings.warn(
            f"{source}: channel(s) {examples(constant)} are constant (zero variance); they carry no signal "
            f"and will be scaled to 0. Consider dropping them",
            UserWarning,
            stacklevel=3,
        )
