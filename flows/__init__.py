"""Prefect flows: one per pipeline stage (dvc.yaml runs ``python -m flows.<stage>``) plus scheduled retraining.

Thin glue: each flow reads params.yaml, calls the library, and talks to the trackers (MLflow, Great
Expectations, BentoML). Importing this package first sets the offline, telemetry-free environment of
shared/docs/stack.md, before prefect, mlflow or bentoml read their settings."""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PARAMS = PROJECT / "params.yaml"

for _name, _value in {
    "DO_NOT_TRACK": "true", "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_HOME": str(PROJECT / ".prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "MLFLOW_TRACKING_URI": f"sqlite:///{PROJECT / 'mlflow.db'}", "OMP_WAIT_POLICY": "PASSIVE",
    "GX_ANALYTICS_ENABLED": "false", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}.items():
    os.environ.setdefault(_name, _value)
