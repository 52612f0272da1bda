"""The validate step's expectation suite, as data.

Which expectations a raw table must meet for the pipeline's parameters, and the derived columns they run on
(the parsed time and the step between rows). flows/validate.py turns each :class:`Expectation` into a Great
Expectations expectation of the same type and runs the suite; the library itself never imports it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stagediff.data.rules import STEP_TOLERANCE, describe_step, is_numeric, most_common_step, read_times
from stagediff.errors import ConfigError

PARSED_TIME = "__time"
"""The time column parsed (datetimes, or numbers for a numeric time column); NaT/NaN where unparseable."""
STEP = "__step"
"""Step from the previous row: seconds for datetimes, time units for numbers; empty on the first row."""
NUMERIC_TYPES = [
    "float64",
    "float32",
    "float16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint64",
    "uint32",
    "uint16",
    "uint8",
    "Float64",
    "Float32",
    "Int64",
    "Int32",
    "Int16",
    "Int8",
]
LARGEST = float(np.finfo(np.float64).max)
HELD_OUT_WINDOWS = 10
"""The evaluate stage scores at least this many held-out windows."""


@dataclass(frozen=True)
class Expectation:
    """One expectation: its Great Expectations type (snake_case), arguments, and what it means in words."""

    type: str
    kwargs: dict[str, Any]
    meaning: str
    notes: dict[str, Any] = field(default_factory=dict)


def required_rows(window: int, validation_fraction: float) -> int:
    """Fewest rows whose time split leaves one training window and, when there is a held-out part,
    HELD_OUT_WINDOWS held-out windows (the pipeline evaluates on held-out data)."""
    held_out = window + HELD_OUT_WINDOWS - 1 if validation_fraction > 0 else 0
    rows = max(window, math.ceil(held_out / validation_fraction) if held_out else window)
    while rows - math.floor(rows * validation_fraction) < window or math.floor(rows * validation_fraction) < held_out:
        rows += 1
    return rows


def check_frame(frame: pd.DataFrame, time_column: str | None) -> pd.DataFrame:
    """The table plus the derived columns PARSED_TIME and STEP (when it has its time column), the time read by
    :func:`~stagediff.data.rules.read_times` as the library reads it."""
    checked = frame.reset_index(drop=True).copy()
    if time_column is None or time_column not in frame.columns:
        return checked
    parsed = read_times(checked[time_column])  # as the library reads it
    if is_numeric(parsed):
        parsed = parsed.astype("float64")
        checked[STEP] = parsed.diff()
    else:
        checked[STEP] = parsed.diff().dt.total_seconds()
    checked[PARSED_TIME] = parsed
    return checked


def declared_step(frequency: str | None, checked: pd.DataFrame) -> float | None:
    """The step every row must keep: the declared frequency, else the most common step as the library finds it
    (:func:`~stagediff.data.rules.most_common_step`); None without time."""
    if STEP not in checked.columns:
        return None
    if frequency is not None:
        try:
            return pd.Timedelta(pd.tseries.frequencies.to_offset(frequency)).total_seconds()
        except (ValueError, TypeError) as error:
            raise ConfigError(
                f"data.frequency {frequency!r} is not a fixed pandas frequency such as '1h', '15min' or '1D': {error}"
            ) from error
    step = most_common_step(pd.Index(checked[PARSED_TIME]))
    return None if step is None else float(step.total_seconds() if isinstance(step, pd.Timedelta) else step)


def channel_columns(frame: pd.DataFrame, time_column: str | None) -> list[str]:
    return [str(c) for c in frame.columns if c != time_column and c not in (PARSED_TIME, STEP)]


def build_suite(
    checked: pd.DataFrame,
    time_column: str | None,
    *,
    window: int,
    validation_fraction: float,
    frequency: str | None = None,
    max_missing_fraction: float = 0.0,
) -> list[Expectation]:
    """The expectations for ``checked`` (from :func:`check_frame`)."""
    suite = [
        Expectation(
            "expect_table_row_count_to_be_between",
            {"min_value": required_rows(window, validation_fraction)},
            f"enough rows for one training window of {window} and {HELD_OUT_WINDOWS} held-out windows "
            f"(validation_fraction {validation_fraction})",
        )
    ]
    if time_column is not None:
        suite.append(
            Expectation(
                "expect_column_to_exist", {"column": time_column}, f"the time column {time_column!r} is present"
            )
        )
    if PARSED_TIME in checked.columns:
        step = declared_step(frequency, checked)
        suite += [
            Expectation(
                "expect_column_values_to_not_be_null",
                {"column": PARSED_TIME},
                f"every value of {time_column!r} parses as a time",
            ),
            Expectation(
                "expect_column_values_to_be_unique",
                {"column": PARSED_TIME},
                f"no duplicate timestamps in {time_column!r}",
            ),
            Expectation(
                "expect_column_values_to_be_increasing",
                {"column": PARSED_TIME, "strictly": True},
                f"{time_column!r} is strictly increasing",
            ),
        ]
        if step is not None:
            dated = pd.api.types.is_datetime64_any_dtype(checked[PARSED_TIME])
            slack = 0.0 if dated else STEP_TOLERANCE * abs(step)  # the library's tolerance
            suite.append(
                Expectation(
                    "expect_column_values_to_be_between",
                    {"column": STEP, "min_value": step - slack, "max_value": step + slack},
                    f"a regular step of {step_text(step, checked)} between rows "
                    f"({'declared' if frequency else 'the most common step'})",
                    {"step": step},
                )
            )
    channels = channel_columns(checked, time_column)
    if not channels:
        suite.append(
            Expectation(
                "expect_column_to_exist",
                {"column": "<a channel column>"},
                "at least one channel column besides the time column",
            )
        )
    for name in channels:
        suite.append(
            Expectation(
                "expect_column_values_to_be_in_type_list",
                {"column": name, "type_list": NUMERIC_TYPES},
                f"channel {name!r} is numeric",
            )
        )
        suite.append(
            Expectation(
                "expect_column_values_to_not_be_null",
                {"column": name, "mostly": 1.0 - max_missing_fraction},
                f"channel {name!r} has at most {max_missing_fraction:.1%} missing values",
            )
        )
        if is_numeric(checked[name]):
            suite.append(
                Expectation(
                    "expect_column_values_to_be_between",
                    {"column": name, "min_value": -LARGEST, "max_value": LARGEST},
                    f"channel {name!r} is finite (no infinities)",
                )
            )
    return suite


def step_text(step: float, checked: pd.DataFrame) -> str:
    if pd.api.types.is_datetime64_any_dtype(checked[PARSED_TIME]):
        return describe_step(pd.Timedelta(seconds=step))
    return describe_step(step)


def channel_ranges(frame: pd.DataFrame, time_column: str | None) -> dict[str, dict[str, float | None]]:
    """Per numeric channel: min, max, mean, standard deviation and missing count (recorded in the report)."""
    ranges = {}
    for name in channel_columns(frame, time_column):
        column = frame[name]
        if not is_numeric(column):
            continue
        finite = column[np.isfinite(column.astype("float64"))]
        ranges[name] = {
            "min": _number(finite.min()),
            "max": _number(finite.max()),
            "mean": _number(finite.mean()),
            "std": _number(finite.std()),
            "missing": int(column.isna().sum()),
        }
    return ranges


def _number(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)
