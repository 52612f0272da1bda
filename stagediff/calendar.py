"""Calendar features: where each time step stands in the day, the week and the year (issue 32).

A model trained on a series with a datetime time column sees, beside the values, a sine/cosine pair per calendar
cycle at every step, so samples follow the calendar of their timestamps: the daily peak falls at the right hour
of whatever ``start`` a sample has. The features are those of the local wall clock (a time-zone-aware series keeps
its zone, so the hour of day is right across daylight-saving changes) and of the real length of each year (366
days in a leap year).

Which cycles a model uses is chosen from its training data (:func:`choose_cycles`) and saved in its configuration
(``StageDiffConfig.calendar``); ``calendar=[]`` switches them off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from stagediff.data.rules import describe_step

CYCLES: dict[str, pd.Timedelta] = {
    "day": pd.Timedelta(days=1),
    "week": pd.Timedelta(days=7),
    "year": pd.Timedelta(days=365.2425),
}
"""The calendar cycles a model can condition on, and their (mean) length."""
STEPS_PER_CYCLE = 4
"""A cycle is used only where the data's step samples it at least this often (hourly data: day, week and year;
daily data: week and year; weekly data: year)."""
REPEATS = 3
"""... and where the training split repeats it at least this often: with fewer, its phase would point at one or two
stretches of the training data, which the model could learn to copy (so a yearly cycle needs 3 years of data)."""


def choose_cycles(description: dict[str, Any]) -> dict[str, Any]:
    """The cycles a model of the series ``description`` (:func:`stagediff.data.prepared.describe_series`) conditions
    on, as a data choice ``{"value": [...], "because": "..."}``: those that the step samples at least
    STEPS_PER_CYCLE times and that the training split repeats at least REPEATS times. None without a datetime time
    axis (no time column, or a numeric one)."""
    step = _frequency(description)
    if step is None:
        return {"value": [], "because": "the data has no datetime time column, so there is no calendar"}
    span = step * int(description["training_rows"])
    chosen = [name for name, length in CYCLES.items() if step * STEPS_PER_CYCLE <= length and REPEATS * length <= span]
    left = [name for name in CYCLES if name not in chosen]
    because = f"a step of {describe_step(step)} over {description['training_rows']} training rows ({span.days} days)"
    if left:
        because += (
            f"; not {', '.join(left)}: sampled fewer than {STEPS_PER_CYCLE} times a cycle, or repeated fewer than "
            f"{REPEATS} times"
        )
    return {"value": chosen, "because": because}


def calendar_features(times: pd.DatetimeIndex, cycles: tuple[str, ...] | list[str]) -> np.ndarray:
    """(len(times), 2 * len(cycles)) float32: per cycle, sin and cos of the phase (0 at its start: midnight, Monday
    midnight, 1 January midnight) of each timestamp's local wall-clock time."""
    if not cycles:
        return np.zeros((len(times), 0), dtype=np.float32)
    local = times.tz_localize(None) if times.tz is not None else times  # the wall clock of the series' own zone
    seconds = np.asarray((local - local.normalize()) / pd.Timedelta(1, "s"), dtype=np.float64)
    day = seconds / 86_400
    phases = {
        "day": day,
        "week": (np.asarray(local.day_of_week, dtype=np.float64) + day) / 7,
        "year": (np.asarray(local.day_of_year, dtype=np.float64) - 1 + day)
        / np.where(np.asarray(local.is_leap_year), 366.0, 365.0),
    }
    angles = [2 * np.pi * phases[name] for name in cycles]
    pairs = [part for angle in angles for part in (np.sin(angle), np.cos(angle))]
    return np.stack(pairs, axis=1).astype(np.float32)


def series_times(description: dict[str, Any], first_row: int, rows: int) -> pd.Index | None:
    """The timestamps of rows ``first_row`` .. ``first_row + rows`` of the series ``description`` describes: datetimes
    (in its time zone, if it had one) or numbers, as its time column holds; None for a series without a time axis."""
    encoded = description.get("frequency")
    if encoded is None or description.get("first_time") is None:
        return None
    if encoded["kind"] != "timedelta":
        return pd.Index(description["first_time"] + encoded["value"] * np.arange(first_row, first_row + rows))
    step = pd.Timedelta(encoded["value"])
    first = local_time(description["first_time"], description.get("timezone"))
    return pd.date_range(first + step * first_row, periods=rows, freq=step)


def local_time(value: Any, timezone: str | None) -> pd.Timestamp:
    """A saved timestamp (ISO 8601) as a Timestamp in ``timezone`` (a named zone keeps its daylight-saving rules,
    where the saved text has only the offset of that moment)."""
    stamp = pd.Timestamp(value)
    if timezone is None:
        return stamp
    return stamp.tz_localize(timezone) if stamp.tz is None else stamp.tz_convert(timezone)


def _frequency(description: dict[str, Any]) -> pd.Timedelta | None:
    encoded = description.get("frequency")
    if encoded is None or encoded.get("kind") != "timedelta" or description.get("first_time") is None:
        return None
    return pd.Timedelta(encoded["value"])
