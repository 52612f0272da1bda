"""Stage 1, ingest: read the source named in params.yaml (data.source) and write data/raw.parquet plus
data/raw.json (schema, row count, time range, content hash, and the origin: the source file's sha256, or a URL's
ETag and the sha256 of the bytes downloaded). DVC re-runs it when data/source.json (flows/source.py) changes."""

from __future__ import annotations

from flows import configure_environment

if __name__ == "__main__":  # `python -m flows.ingest`: before prefect, mlflow and torch read it
    configure_environment()

from pathlib import Path
from typing import Any

from flows.common import RAW, RAW_DESCRIPTION, logger, pipeline_flow, read_params, relative, run_stage, write_json
from flows.params import DataParams
from stagediff.data.ingest import describe_frame, is_url, read_source
from stagediff.data.loading import channel_columns_of


def ingest(data: DataParams, out: Path = RAW, description_out: Path = RAW_DESCRIPTION) -> dict[str, Any]:
    """Read ``data.source`` as it is (types untouched; validate judges them) and write it with its description."""
    log = logger()
    if is_url(data.source):
        log.info("downloading %s (a URL named in params.yaml)", data.source)
    frame, time_column, source, origin = read_source(data.source, data.time_column)
    if data.columns is not None:  # data.columns: the channels to keep, in this order
        chosen = channel_columns_of(frame, data.columns, time_column, source)
        frame = frame[([time_column] if time_column in frame.columns else []) + chosen]
    log.info("read %s: %d rows, columns %s; origin %s", source, len(frame), list(frame.columns), origin)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    frame.to_parquet(temporary, index=False)
    temporary.replace(out)
    description = describe_frame(frame, time_column, source, origin)
    write_json(description_out, description)
    log.info(
        "wrote %s and %s (content hash %s)", relative(out), relative(description_out), description["content_hash"][:12]
    )
    return description


@pipeline_flow("ingest")
def ingest_flow() -> dict[str, Any]:
    return ingest(read_params().data)


if __name__ == "__main__":
    run_stage(ingest_flow)
