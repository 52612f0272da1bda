"""The ingest step: read a data source into a plain table and describe it (schema, rows, time range, hash).

A source is a built-in dataset name, a CSV/parquet path, or an http(s) URL of a CSV/parquet file. A URL is
fetched only because the caller named one, and only by :func:`read_source`; nothing else here touches the network.

:func:`source_stamp` is what the pipeline's ``source`` stage writes to data/source.json on every ``dvc repro``:
it changes exactly when the source's content (or name) changes, so DVC re-runs ingest then and only then."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from stagediff.data.builtin import builtin_path, file_sha256, find_builtin
from stagediff.data.loading import CSV_SUFFIXES, PARQUET_SUFFIXES, load_frame
from stagediff.errors import DataError

DOWNLOAD_TIMEOUT_SECONDS = 60


class RawSource(NamedTuple):
    """What :func:`read_source` read: the table, its time column, a human description, and ``origin``, where the
    bytes came from (:func:`source_stamp` for a file or built-in; for a URL its ETag and the sha256 of the bytes
    downloaded)."""

    frame: pd.DataFrame
    time_column: str | None
    description: str
    origin: dict[str, Any]


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(str(source)).scheme in ("http", "https")


def source_stamp(source: str, *, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A small description of ``source`` that changes when its content does, read without the network.

    - a file: ``{"kind": "file", "source": <path as named>, "sha256": <of its bytes>, "bytes": <size>}``; the path
      is kept as named (not resolved), so the same project on another machine gives the same stamp;
    - a built-in benchmark file: its name, file name and sha256 (the file must match the published hash; its
      directory, which differs between machines, is left out);
    - the generated ``synthetic`` built-in: its name only (its generator is code that ingest depends on);
    - a URL: the URL only. Whether the remote file changed is not known without downloading it: ingest records
      its ETag and sha256 (:func:`read_source`); a forced ingest (``dvc repro --force ingest``) downloads it again.

    Raises:
        DataError: an unknown name, a missing file, or a benchmark file that does not match its published hash.
    """
    if is_url(source):
        return {"kind": "url", "source": source}
    dataset = find_builtin(source)
    if dataset is not None and not dataset.is_file:
        return {"kind": "builtin", "source": dataset.name}
    if dataset is not None:
        builtin_path(dataset, data_dir)  # raises if the file is missing or not the published one
        return {"kind": "builtin", "source": dataset.name, "file": dataset.filename, "sha256": dataset.sha256}
    path = Path(source).expanduser()
    if not path.is_file():
        load_frame(source)  # raises the loader's own message: unknown name, missing file, unsupported type
        raise DataError(f"data source {source!r} is not a file")
    return {"kind": "file", "source": str(source), "sha256": file_sha256(path), "bytes": path.stat().st_size}


def read_source(
    source: str,
    time_column: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
) -> RawSource:
    """``source`` read as it is (not validated: that is the validate step's job), with where it came from."""
    if not is_url(source):
        origin = source_stamp(source, data_dir=data_dir)
        frame, time_column, description = load_frame(source, time_column, data_dir=data_dir)
        return RawSource(frame, time_column, description, origin)
    suffix = Path(urllib.parse.urlparse(source).path).suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise DataError(f"the URL {source} must end in one of {CSV_SUFFIXES + PARQUET_SUFFIXES} so its format is known")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"download{suffix}"
        try:
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
                content = response.read()
                etag = response.headers.get("ETag")
        except OSError as error:  # URLError, HTTPError and timeouts are all OSErrors
            raise DataError(f"could not download {source}: {error}") from error
        path.write_bytes(content)
        frame, _, _ = load_frame(path, time_column)
    origin = {
        "kind": "url",
        "source": source,
        "etag": etag,
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
    }
    return RawSource(frame, time_column, source, origin)


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 hex of a table's column names, dtypes and values (row order matters, the index does not)."""
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def describe_frame(
    frame: pd.DataFrame, time_column: str | None, source: str, origin: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Schema, size, time range and content hash of a raw table, and where it came from (``origin``, see
    :class:`RawSource`)."""
    first = last = None
    if time_column is not None and time_column in frame.columns and len(frame):
        first, last = (str(frame[time_column].iloc[i]) for i in (0, -1))
    return {
        "source": source,
        "time_column": time_column,
        "rows": int(len(frame)),
        "columns": {str(name): str(dtype) for name, dtype in frame.dtypes.items()},
        "time_range": {"first": first, "last": last},
        "content_hash": frame_hash(frame),
        "origin": origin,
    }
