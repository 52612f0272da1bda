"""The rules a time series must keep, in one place: the library checks them when it loads data
(:func:`~stagediff.data.loading.validate_frame`), the pipeline's Great Expectations suite is generated from them
(:mod:`stagediff.data.expectations`), and the service checks a request's prefix and start with them
(serving/requests.py). Each failure raises :class:`~stagediff.errors.DataError` naming the rule, the rows and the fix.

The rules: the time column is numeric (finite) or parses as times, has no missing value, no duplicate, is strictly
increasing and keeps one step (the most common one, or the one given); channels are numeric and finite."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from stagediff.errors import DataError

EXAMPLES_SHOWN = 5
STEP_TOLERANCE = 1e-6
"""Relative tolerance of a numeric time step (steps of 0.1 do not add up exactly); datetime steps are exact."""


def is_numeric(column: pd.Series) -> bool:
    """True for real-valued numeric dtypes (bool and complex excluded): what a channel or a numeric time must be."""
    dtype = column.dtype
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def iso_timestamp(value: object) -> pd.Timestamp:
    """An ISO 8601 string as a Timestamp, as ``datetime.fromisoformat`` reads it; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a string")
    return pd.Timestamp(datetime.fromisoformat(value))


def read_times(column: pd.Series, *, iso: bool = False) -> pd.Series:
    """The time column as datetimes, NaT where a value is not a time; numeric and datetime columns stay as they are.

    ``iso`` is the one difference between data and requests. ``iso=False`` (files and frames) reads what pandas
    reads, with the format it infers from the first value, else value by value (``format="mixed"``): files carry
    the dates their producers wrote, e.g. exchange_rate.csv's "1990/1/1 0:00". ``iso=True`` (the service, whose
    JSON has no date type) reads only ISO 8601 strings (:func:`iso_timestamp`): pandas would also read "now" and
    "today", a different time at each call, and guess the order of day and month.
    """
    if not iso and (is_numeric(column) or pd.api.types.is_datetime64_any_dtype(column.dtype)):
        return column
    try:
        if iso:
            return pd.to_datetime(column.map(_iso_or_nat))
        parsed = pd.to_datetime(column, errors="coerce")
        if parsed.isna().any():  # the format inferred from the first row may not fit the others
            parsed = pd.to_datetime(column, errors="coerce", format="mixed")
        return parsed
    except (TypeError, ValueError) as error:
        raise DataError(
            f"time column {column.name!r} of dtype {column.dtype} cannot be read as dates ({error})"
        ) from error


def _iso_or_nat(value: object) -> pd.Timestamp:
    try:
        return iso_timestamp(value)
    except (ValueError, OverflowError):
        return pd.NaT


def check_times(
    column: pd.Series, time_column: str, source: str, *, iso: bool = False, step: object = None
) -> pd.Index:
    """The time column as a strictly increasing DatetimeIndex (or numeric Index) with one step, after every rule:
    no missing value, finite numbers or times (:func:`read_times`, ``iso`` as there), no duplicate, increasing,
    and every step equal to ``step`` (a Timedelta or a number, e.g. the model's frequency) or, without one, to
    the most common step."""
    missing_rows = np.flatnonzero(column.isna().to_numpy())
    if missing_rows.size:
        raise DataError(
            f"{source}: time column {time_column!r} has {missing_rows.size} missing value(s), first at row(s) "
            f"{examples(missing_rows.tolist())}; drop or fill those rows"
        )
    if not iso and is_numeric(column):
        timestamps = pd.Index(column.to_numpy(), name=time_column)
        bad_rows = np.flatnonzero(~np.isfinite(timestamps.to_numpy(dtype=np.float64)))
        if bad_rows.size:
            raise DataError(
                f"{source}: time column {time_column!r} has infinite values at row(s) {examples(bad_rows.tolist())}; "
                f"fix or drop those rows"
            )
    else:
        try:
            parsed = read_times(column, iso=iso)
        except DataError as error:
            raise DataError(
                f"{source}: {error}; pass a column of date strings, datetimes or numbers, or time_column=None"
            ) from error
        unparseable = np.flatnonzero(parsed.isna().to_numpy())
        if unparseable.size:
            shown = "; ".join(f"row {row}: {column.iloc[row]!r}" for row in unparseable[:EXAMPLES_SHOWN])
            fix = "send them as e.g. 2024-01-31T13:00:00" if iso else "pass time_column=None if the column is not time"
            raise DataError(
                f"{source}: time column {time_column!r} has {unparseable.size} value(s) that are not "
                f"{'ISO 8601 timestamps' if iso else 'dates'} ({shown}); fix them, or {fix}"
            )
        timestamps = pd.DatetimeIndex(parsed, name=time_column)
    check_unique(timestamps, time_column, source)
    check_increasing(timestamps, time_column, source)
    check_regular(timestamps, time_column, source, step)
    return timestamps


def check_unique(timestamps: pd.Index, time_column: str, source: str) -> None:
    duplicated = timestamps[timestamps.duplicated()].unique()
    if len(duplicated):
        raise DataError(
            f"{source}: time column {time_column!r} has {len(duplicated)} duplicated timestamp(s), e.g. "
            f"{examples([str(value) for value in duplicated])}; keep one row per timestamp "
            f"(aggregate them or frame.drop_duplicates(subset=[{time_column!r}]))"
        )


def check_increasing(timestamps: pd.Index, time_column: str, source: str) -> None:
    if timestamps.is_monotonic_increasing:
        return  # with duplicates already excluded, this is strictly increasing
    row = int(np.flatnonzero(timestamps[1:] < timestamps[:-1])[0]) + 1
    raise DataError(
        f"{source}: time column {time_column!r} is not strictly increasing: it goes back at row {row} "
        f"({timestamps[row]} comes after {timestamps[row - 1]}); sort the rows by time first "
        f"(frame.sort_values({time_column!r}))"
    )


def check_regular(timestamps: pd.Index, time_column: str, source: str, step: object = None) -> None:
    """Every step between rows equals ``step`` (or the most common one): the model samples on a regular grid."""
    given = step is not None
    step = step if given else most_common_step(timestamps)
    irregular = off_steps(timestamps, step)
    if not irregular.size:
        return
    row = int(irregular[0])
    if given:
        raise DataError(
            f"{source}: time column {time_column!r} must be {describe_step(step)} apart (the model's frequency); rows "
            f"{row - 1} and {row} are {describe_step(timestamps[row] - timestamps[row - 1])} apart"
        )
    shown = "; ".join(f"row {row}: {timestamps[row]} after {timestamps[row - 1]}" for row in irregular[:3])
    resample = (
        f"frame.set_index({time_column!r}).resample({_offset(step)!r}).mean().reset_index(), which leaves "
        'NaN in the gaps, then missing="interpolate"'
        if isinstance(step, pd.Timedelta)
        else "put the rows on a regular grid first"
    )
    raise DataError(
        f"{source}: time column {time_column!r} is not regular: most steps are {describe_step(step)}, but "
        f"{irregular.size} differ ({shown}). Samples continue on a regular grid, so the data must lie on one: "
        f"{resample}; or pass time_column=None to treat the rows as consecutive steps"
    )


def off_steps(timestamps: pd.Index, step: pd.Timedelta | float | int | None) -> np.ndarray:
    """The rows whose step from the row before is not ``step`` (exactly for datetimes, to STEP_TOLERANCE for
    numbers); none without a step."""
    if step is None or len(timestamps) < 2:
        return np.array([], dtype=int)
    steps = np.asarray(timestamps[1:] - timestamps[:-1])
    if isinstance(step, pd.Timedelta):
        return np.flatnonzero(steps != step.to_timedelta64()) + 1
    close = np.isclose(steps.astype(np.float64), float(step), rtol=STEP_TOLERANCE, atol=0.0)
    return np.flatnonzero(~close) + 1


def most_common_step(timestamps: pd.Index) -> pd.Timedelta | float | int | None:
    """Mode of the steps between consecutive timestamps (smallest on ties, missing ones left out); None for one
    row."""
    steps = pd.Series(timestamps[1:] - timestamps[:-1]).dropna()
    if steps.empty:
        return None
    step = steps.mode().iloc[0]
    if isinstance(step, pd.Timedelta):
        return step
    return step.item() if hasattr(step, "item") else step


def check_finite(values: np.ndarray, channels: tuple[str, ...], source: str, fix: str) -> None:
    """Every value (length, channels) is a finite number; else name each channel's count and first row, then ``fix``
    (what the caller can do about it)."""
    not_finite = ~np.isfinite(values)
    if not not_finite.any():
        return
    details = [
        f"{channels[index]!r}: {int(not_finite[:, index].sum())} missing/infinite, first at row "
        f"{int(np.argmax(not_finite[:, index]))}"
        for index in np.flatnonzero(not_finite.any(axis=0))
    ]
    raise DataError(
        f"{source}: channels contain NaN or infinite values ({'; '.join(details[:EXAMPLES_SHOWN])}"
        f"{'; ...' if len(details) > EXAMPLES_SHOWN else ''}); {fix}"
    )


STEP_UNITS = (("day", pd.Timedelta(days=1)), ("hour", pd.Timedelta(hours=1)), ("minute", pd.Timedelta(minutes=1)))


def describe_step(step: object) -> str:
    """A step between timestamps as people write it ("1 hour", "15 minutes", "1 day 6 hours", "0.5 seconds"); a
    number as it is."""
    if not isinstance(step, pd.Timedelta):
        return f"{step:g}" if isinstance(step, float) else str(step)
    if step < pd.Timedelta(0):
        return f"-{describe_step(-step)}"
    parts, rest = [], step
    for unit, size in STEP_UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    if rest or not parts:
        seconds = rest.total_seconds()
        parts.append(f"{seconds:g} second{'' if seconds == 1 else 's'}")
    return " ".join(parts)


def _offset(step: pd.Timedelta) -> str:
    """A pandas frequency string for a step, e.g. "1h"."""
    return pd.tseries.frequencies.to_offset(step).freqstr


def examples(items: list) -> str:
    """The first few items as a readable list, with a count of the rest."""
    shown = ", ".join(map(str, items[:EXAMPLES_SHOWN]))
    rest = len(items) - EXAMPLES_SHOWN
    return f"[{shown}{f', ... and {rest} more' if rest > 0 else ''}]"
