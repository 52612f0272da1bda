"""Stage 6, package: the trained generator saved into the BentoML model store, with its MLflow run id, registered
model version, data hash, evaluation metrics and request limits as metadata, and ``bentoml build`` of the
serving/ service into a Bento (offline). Writes reports/package.json."""

from __future__ import annotations

from flows import PROJECT, configure_environment

if __name__ == "__main__":  # `python -m flows.package`: before prefect, mlflow and torch read it
    configure_environment()

from pathlib import Path
from typing import Any

import mlflow

from flows.common import (
    METRICS,
    MODEL,
    PACKAGE_REPORT,
    RAW_DESCRIPTION,
    TRAINING_REPORT,
    logger,
    pipeline_flow,
    read_json,
    read_params,
    relative,
    run_stage,
    write_json,
)
from flows.params import PipelineParams
from serving.packaging import build_bento, store_model
from stagediff.config import StageDiffConfig
from stagediff.diffusion import sampling_choice


def package(
    params: PipelineParams,
    model_dir: Path = MODEL,
    training_report: Path = TRAINING_REPORT,
    metrics_path: Path = METRICS,
    raw_description: Path = RAW_DESCRIPTION,
    report_path: Path = PACKAGE_REPORT,
) -> dict[str, Any]:
    log = logger()
    training, metrics, raw = read_json(training_report), read_json(metrics_path), read_json(raw_description)
    settings = params.package
    metadata = {
        "mlflow_run_id": training["mlflow_run_id"],
        "registered_model": training["registered_model"],
        "model_version": training["model_version"],
        "data_hash": training["data_hash"],
        "dataset": raw["source"],
        "metrics": metrics,
        "metrics_sampling": dict(
            zip(
                ("sampler", "steps"),
                sampling_choice(StageDiffConfig.from_file(model_dir / "config.json"), None, params.evaluate.steps),
            )
        ),
        "limits": settings.limits().to_dict(),
    }
    model_tag = store_model(model_dir, settings.name, metadata)
    bento_tag = build_bento(model_tag, PROJECT)
    with mlflow.start_run(run_id=training["mlflow_run_id"]):
        mlflow.set_tags({"bentoml_model": model_tag, "bento": bento_tag})
    report = {"bentoml_model": model_tag, "bento": bento_tag, "raw_data_hash": raw["content_hash"], **metadata}
    write_json(report_path, report)
    log.info(
        "read %s; stored BentoML model %s, built Bento %s; wrote %s",
        relative(model_dir),
        model_tag,
        bento_tag,
        relative(report_path),
    )
    return report


@pipeline_flow("package")
def package_flow() -> dict[str, Any]:
    return package(read_params())


if __name__ == "__main__":
    run_stage(package_flow)
