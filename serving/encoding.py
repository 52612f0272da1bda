"""Series frames to response bytes (JSON records, CSV, parquet, and line-by-line stream pieces), and the
provenance every response carries.

A frame has the columns ``sample``, the time column (or ``step``) and the channels, in data units, as
``StageDiff.sample`` returns it. JSON numbers carry 15 significant digits; CSV and parquet carry the
float64 values exactly.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
STREAM_MEDIA_TYPES = {"json": "application/x-ndjson", "csv": "text/csv"}
HEADER_PREFIX = "X-StageDiff-"
PARQUET_METADATA_KEY = b"stagediff"
JSON_DIGITS = 15


def provenance_headers(provenance: dict[str, Any]) -> dict[str, str]:
    """The provenance as response headers: X-StageDiff-Model-Version, -Seed, -Steps, ... (None left out)."""
    return {
        HEADER_PREFIX + "-".join(part.capitalize() for part in key.split("_")): str(value)
        for key, value in provenance.items()
        if value is not None
    }


def to_json(frame: pd.DataFrame, provenance: dict[str, Any]) -> bytes:
    """{"provenance": {...}, "columns": [...], "records": [{"sample": 0, "date": "...", "a": ...}, ...]}."""
    head = json.dumps({"provenance": provenance, "columns": list(map(str, frame.columns))})
    return (head[:-1] + ', "records": ' + records(frame) + "}").encode()


def records(frame: pd.DataFrame, lines: bool = False) -> str:
    """JSON records (an array, or one object per line ending in a newline); datetimes as ISO 8601 strings,
    to the second when every timestamp is whole seconds."""
    whole_seconds = all(
        not pd.api.types.is_datetime64_any_dtype(frame[c]) or (frame[c] == frame[c].dt.floor("s")).all()
        for c in frame.columns
    )
    text = frame.to_json(
        orient="records",
        lines=lines,
        date_format="iso",
        date_unit="s" if whole_seconds else "ns",
        double_precision=JSON_DIGITS,
    )
    return text if not lines or text.endswith("\n") else text + "\n"


def to_csv(frame: pd.DataFrame, header: bool = True) -> bytes:
    return frame.to_csv(index=False, header=header).encode()


def to_parquet(frame: pd.DataFrame, provenance: dict[str, Any]) -> bytes:
    """Parquet bytes; the provenance is JSON under the key ``stagediff`` of the Arrow schema metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), PARQUET_METADATA_KEY: json.dumps(provenance).encode()}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()


class NonFiniteOutput(ValueError):
    """Sampled values that are NaN or infinite: never encoded (JSON would carry them as null)."""


def require_finite(frame: pd.DataFrame) -> None:
    """The last check before any values are encoded: raise :class:`NonFiniteOutput` naming the first NaN or infinity."""
    values = frame.select_dtypes("number").drop(columns="sample", errors="ignore")
    bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteOutput(
            f"the model produced {values.iat[row, column]} for channel {values.columns[column]!r} of sample "
            f"{frame['sample'].iat[row]} (and {int(bad.sum()) - 1} more non-finite values); nothing of it was sent. "
            "This is a fault of the served model, not of the request: please report the request"
        )


def encode(frame: pd.DataFrame, provenance: dict[str, Any], format: str) -> bytes:
    require_finite(frame)
    if format == "json":
        return to_json(frame, provenance)
    if format == "csv":
        return to_csv(frame)
    return to_parquet(frame, provenance)


def encode_piece(frame: pd.DataFrame, format: str, first: bool) -> bytes:
    """One streamed piece: JSON lines, or CSV rows (with the header line on the first piece only)."""
    require_finite(frame)
    return records(frame, lines=True).encode() if format == "json" else to_csv(frame, header=first)
