"""Stage 4, train: the library's training loop (GPU when present, else CPU) on data/prepared/, tracked in MLflow
(parameters; per-step loss, learning rate and time; the model, logged and registered). Checkpoints under
checkpoints/ let an interrupted stage resume, in the same MLflow run (never a run of other parameters, data or library
code)."""

from __future__ import annotations

from flows import PROJECT, configure_environment

if __name__ == "__main__":  # `python -m flows.train`: before prefect, mlflow and torch read it
    configure_environment()

import csv
import hashlib
import importlib.metadata
import shutil
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

import stagediff
from flows.common import (
    CHECKPOINTS,
    LOSS_CURVE,
    MODEL,
    PREPARED,
    TRAINING_REPORT,
    logger,
    pipeline_flow,
    read_params,
    relative,
    run_stage,
    write_json,
)
from flows.params import PipelineParams
from stagediff import StageDiff
from stagediff.data import PreparedData, load_prepared
from stagediff.distributed import is_main_process
from stagediff.train import TrainProgress

RUN_ID_FILE = "mlflow_run_id"
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("long", "n_samples"),
            ColSpec("long", "length"),
            ColSpec("long", "seed", required=False),
            ColSpec("long", "steps", required=False),
            ColSpec("string", "start", required=False),
        ]
    )
)
"""What flows/mlflow_model.py's predict takes: one row per request."""
LOG_EVERY = 50
"""Training metrics go to MLflow in batches of this many steps (one database write per batch)."""


class MetricBatcher:
    """Training progress callback: buffers loss, learning rate and elapsed time, writes them in batches."""

    def __init__(self, run_id: str, every: int = LOG_EVERY):
        self.client, self.run_id, self.every, self.pending = mlflow.MlflowClient(), run_id, every, []

    def __call__(self, progress: TrainProgress) -> None:
        if not is_main_process():
            return  # under torchrun every process reports the same numbers; one copy is enough
        now = int(time.time() * 1000)
        self.pending += [
            Metric("loss", progress.loss, now, progress.step),
            Metric("learning_rate", progress.learning_rate, now, progress.step),
            Metric("train_seconds", progress.seconds, now, progress.step),
        ]
        if progress.validation_loss is not None:
            self.pending.append(Metric("validation_loss", progress.validation_loss, now, progress.step))
        if progress.step % self.every == 0 or progress.step == progress.max_steps:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.client.log_batch(self.run_id, metrics=self.pending)
            self.pending = []


def checkpoint_folder(params: PipelineParams, prepared: PreparedData, root: Path = CHECKPOINTS) -> Path:
    """One folder per (model parameters, data, library code): a changed parameter or a changed stagediff starts
    afresh, an interruption resumes. (Without the code a `dvc repro` after a change to the model's code resumed the
    finished run of the old code, and its lock recorded a model that a fresh clone does not train.)"""
    text = params.model.to_json() + prepared.description["content_hash"] + code_fingerprint()
    return root / hashlib.sha256(text.encode()).hexdigest()[:16]


def code_fingerprint() -> str:
    """A hash of the stagediff library's source files, names and contents."""
    package = Path(stagediff.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def flat_params(params: PipelineParams) -> dict[str, Any]:
    sections = params.to_dict()
    return {f"{section}.{key}": value for section in ("data", "model") for key, value in sections[section].items()}


def train(
    params: PipelineParams,
    prepared_dir: Path = PREPARED,
    model_dir: Path = MODEL,
    checkpoints: Path = CHECKPOINTS,
    report_path: Path = TRAINING_REPORT,
    loss_path: Path = LOSS_CURVE,
) -> dict[str, Any]:
    log = logger()
    prepared = load_prepared(prepared_dir)
    folder = checkpoint_folder(params, prepared, checkpoints)
    for stale in checkpoints.glob("*") if checkpoints.is_dir() else []:
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)  # another configuration's checkpoints
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_ID_FILE
    resumed_run = run_file.read_text().strip() if run_file.is_file() else None
    log.info(
        "read %s (%d training rows, %d channels); checkpoints in %s%s",
        relative(prepared_dir),
        len(prepared.train),
        prepared.n_channels,
        relative(folder),
        f", resuming MLflow run {resumed_run}" if resumed_run else "",
    )
    mlflow.set_experiment(params.package.name)
    with mlflow.start_run(run_id=resumed_run, run_name=None if resumed_run else f"train-{folder.name[:8]}") as run:
        run_file.write_text(run.info.run_id)
        if resumed_run is None:
            mlflow.log_params(flat_params(params))
            mlflow.set_tags(
                {"data_hash": prepared.description["content_hash"], "source": prepared.description["source"]}
            )
        batcher = MetricBatcher(run.info.run_id)
        generator = StageDiff(params.model).fit_prepared(prepared, checkpoint_dir=folder, callback=batcher)
        batcher.flush()
        generator.save(model_dir)
        write_loss_curve(loss_path, generator.losses)
        training = generator.metadata["training"]
        mlflow.log_metrics({"final_loss": training["final_loss"], "parameters": training["parameters"]})
        logged = mlflow.pyfunc.log_model(
            name="generator",
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"generator": str(model_dir)},
            registered_model_name=params.package.name,
            code_paths=[str(PROJECT / "stagediff")],
            pip_requirements=library_requirements(),
            signature=SIGNATURE,
        )
        report = {
            "mlflow_run_id": run.info.run_id,
            "experiment": params.package.name,
            "registered_model": params.package.name,
            "model_version": str(logged.registered_model_version),
            "model_uri": f"models:/{params.package.name}/{logged.registered_model_version}",
            "data_hash": prepared.description["content_hash"],
            "steps": training["steps"],
            "seconds": training["seconds"],
            "device": training["device"],
            "final_loss": training["final_loss"],
            "parameters": training["parameters"],
        }
    write_json(report_path, report)
    log.info(
        "trained %d steps in %.1f s on %s; wrote %s, %s, %s; registered %s version %s",
        training["steps"],
        training["seconds"],
        training["device"],
        relative(model_dir),
        relative(loss_path),
        relative(report_path),
        params.package.name,
        report["model_version"],
    )
    return report


def library_requirements() -> list[str]:
    """The library's own pinned dependencies (its code travels with the MLflow model through code_paths)."""
    return [r for r in importlib.metadata.requires("stagediff") or [] if "extra ==" not in r]


def write_loss_curve(path: Path, losses: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss"])
        writer.writerows((step, f"{loss:.6g}") for step, loss in enumerate(losses, start=1))


@pipeline_flow("train")
def train_flow() -> dict[str, Any]:
    return train(read_params())


if __name__ == "__main__":
    run_stage(train_flow)
