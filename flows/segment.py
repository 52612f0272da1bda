"""Stage 3, segment: the time split, the scaler fitted on the training part, and the scaled series and their
stage-segmented windows, written to data/prepared/ (stagediff.data.save_prepared)."""

from __future__ import annotations

from flows import configure_environment

if __name__ == "__main__":  # `python -m flows.segment`: before prefect, mlflow and torch read it
    configure_environment()

from pathlib import Path
from typing import Any

import pandas as pd

from flows.common import (
    PREPARED,
    RAW,
    RAW_DESCRIPTION,
    logger,
    pipeline_flow,
    read_json,
    read_params,
    relative,
    run_stage,
)
from stagediff.config import StageDiffConfig
from stagediff.data import prepare, save_prepared, validate_frame


def segment(
    config: StageDiffConfig, raw: Path = RAW, description_path: Path = RAW_DESCRIPTION, out: Path = PREPARED
) -> dict[str, Any]:
    log = logger()
    description = read_json(description_path)
    series = validate_frame(
        pd.read_parquet(raw),
        description["time_column"],
        missing=config.missing,
        max_channels=config.channels,
        min_length=config.window,
        source=description["source"],
    )
    prepared = prepare(series, config.window, config.validation_fraction)
    save_prepared(out, prepared, config.window, config.effective_stage_length)
    summary = {
        "train_rows": len(prepared.train),
        "validation_rows": len(prepared.validation),
        "channels": series.n_channels,
        "window": config.window,
        "stages": config.stages,
        "train_windows": max(0, len(prepared.train) - config.window + 1),
        "validation_windows": max(0, len(prepared.validation) - config.window + 1),
    }
    log.info("read %s; wrote %s: %s", relative(raw), relative(out), summary)
    return summary


@pipeline_flow("segment")
def segment_flow() -> dict[str, Any]:
    return segment(read_params().model)


if __name__ == "__main__":
    run_stage(segment_flow)
