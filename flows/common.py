"""What every stage shares: the project's paths, params.yaml, JSON files, and a flow's logger."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.exceptions import MissingContextError

from flows import PARAMS, PROJECT
from flows.params import PipelineParams
from stagediff.errors import StageDiffError
from stagediff.runtime import configure_threads

RAW = PROJECT / "data" / "raw.parquet"
RAW_DESCRIPTION = PROJECT / "data" / "raw.json"
PREPARED = PROJECT / "data" / "prepared"
VALIDATION_REPORT = PROJECT / "reports" / "validation.json"
VALIDATION_SUMMARY = PROJECT / "reports" / "validation.md"
MODEL = PROJECT / "models" / "generator"
CHECKPOINTS = PROJECT / "checkpoints"
TRAINING_REPORT = PROJECT / "reports" / "training.json"
LOSS_CURVE = PROJECT / "reports" / "loss.csv"
METRICS = PROJECT / "reports" / "metrics.json"
EVALUATION = PROJECT / "reports" / "evaluation"
PACKAGE_REPORT = PROJECT / "reports" / "package.json"


def read_params(path: Path = PARAMS) -> PipelineParams:
    return PipelineParams.from_file(path)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    temporary.replace(path)
    return path


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise StageDiffError(f"{relative(path)} is missing: run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text())


def logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow (shown in the Prefect UI), else a plain one (tests, plain calls)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT))
    except ValueError:
        return str(path)


def pipeline_flow(name: str) -> Callable[[Callable[..., Any]], Flow]:
    """``@pipeline_flow("train")``: a Prefect flow (``log_prints``) whose every run first sets torch's threads by
    the library's rule (stagediff.runtime.configure_threads: one on a 2-core machine, where torch's own default of
    one per core made training steps twice as slow beside the Prefect server) and logs the count. Results then do
    not depend on OMP_NUM_THREADS, however the run starts: ``python -m flows.<stage>``, a test, or a deployment's
    run, which Prefect starts in a fresh process (``python -m flows.retrain serve``). Every flow here uses it
    (tests/flows/test_stages.py checks)."""

    def decorate(function: Callable[..., Any]) -> Flow:
        @functools.wraps(function)
        def with_threads(*args: Any, **kwargs: Any) -> Any:
            logger().info("torch threads: %d (stagediff.runtime.configure_threads)", configure_threads())
            return function(*args, **kwargs)

        with_threads.sets_threads = True  # type: ignore[attr-defined]
        return flow(name=name, log_prints=True)(with_threads)

    return decorate


def run_stage(flow: Callable[[], Any]) -> None:
    """``python -m flows.<stage>``: run the flow; a StageDiffError (bad data or parameters) ends with its message
    and exit status 1, which stops ``dvc repro``."""
    try:
        flow()
    except StageDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
