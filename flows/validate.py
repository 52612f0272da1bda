"""Stage 2, validate: a Great Expectations suite built from the data and params.yaml (time column present,
parseable, strictly increasing, regular; channels numeric, finite, missing values within the policy; enough
rows for the windows). Writes reports/validation.json and reports/validation.md, and fails the stage (which
stops ``dvc repro``) naming each failed expectation with example offending rows."""

from __future__ import annotations

from flows import configure_environment

if __name__ == "__main__":  # `python -m flows.validate`: before prefect, mlflow and torch read it
    configure_environment()

import logging
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd

from flows.common import (
    RAW,
    RAW_DESCRIPTION,
    VALIDATION_REPORT,
    VALIDATION_SUMMARY,
    logger,
    pipeline_flow,
    read_json,
    read_params,
    relative,
    run_stage,
    write_json,
)
from flows.params import PipelineParams
from stagediff.data.expectations import PARSED_TIME, STEP, Expectation, build_suite, channel_ranges, check_frame
from stagediff.errors import ConfigError, DataError

EXAMPLE_ROWS = 5


class ValidationFailed(DataError):
    """The data broke at least one expectation; nothing downstream may run on it."""


def validate(
    params: PipelineParams,
    raw: Path = RAW,
    description_path: Path = RAW_DESCRIPTION,
    report_path: Path = VALIDATION_REPORT,
    summary_path: Path = VALIDATION_SUMMARY,
) -> dict[str, Any]:
    """Run the suite on the ingested table; write the reports; raise ValidationFailed when any expectation fails."""
    log = logger()
    if params.data.max_missing_fraction > 0 and params.model.missing == "error":
        raise ConfigError(
            "data.max_missing_fraction > 0 allows missing values, but model.missing is 'error'; "
            "set model.missing: mask (left out of the training loss) or interpolate (or max_missing_fraction: 0)"
        )
    description = read_json(description_path)
    frame = pd.read_parquet(raw)
    time_column = description["time_column"]
    log.info("validating %s (%d rows) from %s", relative(raw), len(frame), description["source"])
    checked = check_frame(frame, time_column)
    suite = build_suite(
        checked,
        time_column,
        window=params.model.window,
        validation_fraction=params.model.validation_fraction,
        frequency=params.data.frequency,
        max_missing_fraction=params.data.max_missing_fraction,
    )
    results = [
        summarise(expectation, result, frame, time_column)
        for expectation, result in zip(suite, run_suite(checked, suite))
    ]
    failed = [r for r in results if not r["success"]]
    report = {
        "success": not failed,
        "source": description["source"],
        "rows": len(frame),
        "content_hash": description["content_hash"],
        "expectations": results,
        "failed": [r["meaning"] for r in failed],
        "channel_ranges": channel_ranges(frame, time_column),
    }
    write_json(report_path, report)
    summary_path.write_text(markdown(report))
    log.info(
        "wrote %s and %s: %d of %d expectations met",
        relative(report_path),
        relative(summary_path),
        len(results) - len(failed),
        len(results),
    )
    if failed:
        raise ValidationFailed(
            f"{description['source']} failed {len(failed)} of {len(results)} expectations "
            f"(report: {relative(report_path)}):\n" + "\n".join(f"  - {describe_failure(r)}" for r in failed)
        )
    return report


def run_suite(checked: pd.DataFrame, suite: list[Expectation]) -> list[dict[str, Any]]:
    """Each expectation's Great Expectations result (as JSON), in suite order, on an ephemeral context."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (
        context.data_sources.add_pandas("pipeline")
        .add_dataframe_asset("raw")
        .add_batch_definition_whole_dataframe("all")
    )
    expectations = context.suites.add(gx.ExpectationSuite(name="stagediff"))
    for expectation in suite:
        expectations.add_expectation(expectation_class(expectation.type)(**expectation.kwargs))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="raw", data=batch, suite=expectations))
    result = definition.run(batch_parameters={"dataframe": checked}, result_format={"result_format": "COMPLETE"})
    return result.to_json_dict()["results"]


def expectation_class(snake_case: str) -> type:
    return getattr(gx.expectations, "".join(part.title() for part in snake_case.split("_")))


def summarise(
    expectation: Expectation, result: dict[str, Any], frame: pd.DataFrame, time_column: str | None
) -> dict[str, Any]:
    """One expectation's outcome with up to EXAMPLE_ROWS offending rows of the original table."""
    outcome = result.get("result", {})
    exception = result.get("exception_info", {})
    rows = outcome.get("unexpected_index_list") or []
    column = expectation.kwargs.get("column")
    shown = [
        c
        for c in ([time_column] if time_column in frame.columns else [])
        + ([column] if column in frame.columns and column != time_column else [])
    ]
    examples = [
        {"row": int(row), **{c: str(frame[c].iloc[int(row)]) for c in shown}}
        for row in rows[:EXAMPLE_ROWS]
        if isinstance(row, int) and row < len(frame)
    ]
    return {
        "type": expectation.type,
        "column": {PARSED_TIME: time_column, STEP: time_column}.get(column, column),
        "meaning": expectation.meaning,
        "success": bool(result["success"]),
        "unexpected_count": outcome.get("unexpected_count"),
        "element_count": outcome.get("element_count"),
        "observed_value": outcome.get("observed_value"),
        "examples": examples,
        "error": exception.get("exception_message") if exception.get("raised_exception") else None,
    }


def describe_failure(result: dict[str, Any]) -> str:
    text = f"{result['meaning']}: FAILED"
    if result["unexpected_count"]:
        text += f" ({result['unexpected_count']} of {result['element_count']} rows)"
    elif result["observed_value"] is not None:
        text += f" (observed {result['observed_value']})"
    if result["examples"]:
        text += "; e.g. " + "; ".join(
            ", ".join(f"{k}={v}" for k, v in example.items()) for example in result["examples"]
        )
    if result["error"]:
        text += f"; {result['error']}"
    return text


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Validation of {report['source']}",
        "",
        f"**{'PASSED' if report['success'] else 'FAILED'}**: {report['rows']} rows, "
        f"content hash `{report['content_hash'][:12]}`",
        "",
        "| expectation | result | details |",
        "|---|---|---|",
    ]
    for result in report["expectations"]:
        details = describe_failure(result).split(": FAILED", 1)[-1].strip(" ;") if not result["success"] else ""
        lines.append(f"| {result['meaning']} | {'ok' if result['success'] else '**failed**'} | {details} |")
    lines += [
        "",
        "## Channel ranges",
        "",
        "| channel | min | max | mean | std | missing |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in report["channel_ranges"].items():
        cells = ["" if r[key] is None else f"{r[key]:.6g}" for key in ("min", "max", "mean", "std")]
        lines.append(f"| {name} | {' | '.join(cells)} | {r['missing']} |")
    return "\n".join(lines) + "\n"


@pipeline_flow("validate")
def validate_flow() -> dict[str, Any]:
    return validate(read_params())


if __name__ == "__main__":
    run_stage(validate_flow)
