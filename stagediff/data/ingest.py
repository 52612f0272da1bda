"""The ingest step: read a data source into a plain table and describe it (schema, rows, time range, hash).

A source is a built-in dataset name, a CSV/parquet path, or an http(s) URL of a CSV/parquet file. A URL is
fetched only because the caller named one; nothing else here touches the network."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd

from stagediff.data.loading import CSV_SUFFIXES, PARQUET_SUFFIXES, load_frame
from stagediff.errors import DataError

DOWNLOAD_TIMEOUT_SECONDS = 60


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https")


def read_source(source: str, time_column: str | None = None, *, data_dir: str | os.PathLike | None = None,
                ) -> tuple[pd.DataFrame, str | None, str]:
    """``(frame, time_column, description)`` of ``source``, not validated (that is the validate step's job)."""
    if not is_url(source):
        return load_frame(source, time_column, data_dir=data_dir)
    suffix = Path(urllib.parse.urlparse(source).path).suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(f"the URL {source} must end in one of {CSV_SUFFIXES + PARQUET_SUFFIXES} so its format is known")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"download{suffix}"
        try:
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                path.write_bytes(response.read())
        except OSError as error:  # URLError, HTTPError and timeouts are all OSErrors
            raise DataError(f"could not download {source}: {error}") from error
        frame, _, _ = load_frame(path, time_column)
    return frame, time_column, source


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 hex of a table's column names, dtypes and values (row order matters, the index does not)."""
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def describe_frame(frame: pd.DataFrame, time_column: str | None, source: str) -> dict[str, Any]:
    """Schema, size, time range and content hash of a raw table."""
    first = last = None
    if time_column is not None and time_column in frame.columns and len(frame):
        first, last = (str(frame[time_column].iloc[i]) for i in (0, -1))
    return {
        "source": source, "time_column": time_column, "rows": int(len(frame)),
        "columns": {str(name): str(dtype) for name, dtype in frame.dtypes.items()},
        "time_range": {"first": first, "last": last}, "content_hash": frame_hash(frame),
    }
