"""Stage 5, evaluate: the evaluation metrics and pictures on held-out data (the validation part of the time
split, never trained on), with the scores of generation with known values (known_*, impute_*), written to
reports/metrics.json (DVC metrics) and reports/evaluation/ (PNGs, DVC plots), and logged to the training run in
MLflow."""

from __future__ import annotations

from flows import configure_environment

if __name__ == "__main__":  # `python -m flows.evaluate`: before prefect, mlflow and torch read it
    configure_environment()

from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from flows.common import (
    EVALUATION,
    METRICS,
    MODEL,
    PREPARED,
    TRAINING_REPORT,
    logger,
    pipeline_flow,
    read_json,
    read_params,
    relative,
    run_stage,
    write_json,
)
from flows.params import EvaluateParams
from stagediff import StageDiff
from stagediff.calendar import series_times
from stagediff.data import load_prepared
from stagediff.evaluation import evaluate_windows, heldout_windows, window_starts
from stagediff.metrics.conditional import conditional_scores


def flat_metrics(scores: dict[str, Any], repeats: int) -> dict[str, float]:
    """{metric: mean, metric_std: std (with repeats), metric_real_baseline / metric_real_own: the floors} of the
    numeric scores (what ``dvc metrics`` and MLflow show)."""
    flat = {}
    for name, value in scores.items():
        if isinstance(value, dict) and isinstance(value.get("mean"), (int, float)):
            flat[name] = round(float(value["mean"]), 6)
            if repeats > 1 and isinstance(value.get("std"), (int, float)):
                flat[f"{name}_std"] = round(float(value["std"]), 6)
            for floor in ("real_baseline", "real_own"):  # the detectors' real-vs-real and training-vs-held-out
                if isinstance(value.get(floor), (int, float)):
                    flat[f"{name}_{floor}"] = round(float(value[floor]), 6)
    return flat


def score_held_out(
    generator: StageDiff, settings: EvaluateParams, prepared_dir: Path, out: Path, pictures: bool = True
) -> dict[str, float]:
    """``generator``'s held-out metrics, the full scores and, with ``pictures``, the PNGs written to ``out``: what the
    evaluate stage reports, and what the retraining gate scores champion and challenger with (same windows, seed and
    settings). The held-out part is the validation part of the time split (never trained on): up to
    settings.windows of its windows, each sampled at its first timestamp where the data have a datetime time axis,
    judged (:func:`flat_metrics` of :func:`stagediff.evaluation.evaluate_windows`), and the generation with known
    values on the whole part (:func:`stagediff.metrics.conditional.conditional_scores`)."""
    prepared = load_prepared(prepared_dir)
    train = prepared.scaler.inverse_transform(prepared.train)
    heldout = prepared.scaler.inverse_transform(prepared.validation)
    times = series_times(prepared.description, len(train), len(heldout))
    window, count, seed = generator.config.window, settings.windows, settings.seed
    real, training = heldout_windows(train, heldout, window, count, seed)
    logger().info("scoring %d held-out windows (repeats %d, fast %s)", len(real), settings.repeats, settings.fast)
    scores = evaluate_windows(
        generator,
        real,
        training,
        np.concatenate([train, heldout]),
        out,
        protocol="heldout",
        starts=window_starts(times, window, count, seed),
        repeats=settings.repeats,
        seed=seed,
        fast=settings.fast,
        steps=settings.steps,
        pictures=pictures,
    )
    scale = np.maximum(train.std(axis=0), 1e-12)
    return flat_metrics(scores, settings.repeats) | conditional_scores(generator, heldout, scale, times, seed)


def evaluate(
    settings: EvaluateParams,
    model_dir: Path = MODEL,
    prepared_dir: Path = PREPARED,
    training_report: Path = TRAINING_REPORT,
    metrics_path: Path = METRICS,
    pictures: Path = EVALUATION,
) -> dict[str, float]:
    log = logger()
    generator = StageDiff.load(model_dir)
    log.info("read %s and %s", relative(model_dir), relative(prepared_dir))
    metrics = score_held_out(generator, settings, prepared_dir, pictures)
    write_json(metrics_path, metrics)
    run_id = read_json(training_report)["mlflow_run_id"]
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"eval_{name}": value for name, value in metrics.items()})
        mlflow.log_artifacts(str(pictures), "evaluation")
    log.info(
        "wrote %s and %s; logged to MLflow run %s: %s",
        relative(metrics_path),
        relative(pictures),
        run_id,
        {k: v for k, v in metrics.items() if not k.endswith("_std")},
    )
    return metrics


@pipeline_flow("evaluate")
def evaluate_flow() -> dict[str, float]:
    return evaluate(read_params().evaluate)


if __name__ == "__main__":
    run_stage(evaluate_flow)
