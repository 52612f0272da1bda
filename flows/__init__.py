"""Prefect flows: one per pipeline stage (dvc.yaml runs ``python -m flows.<stage>``) plus scheduled retraining.

Thin glue: each flow reads params.yaml, calls the library, and talks to the trackers (MLflow, Great
Expectations, BentoML). Importing this package sets nothing: every entry point calls
:func:`configure_environment` first."""

import os
from pathlib import Path

from stagediff import runtime

PROJECT = Path(__file__).resolve().parents[1]
PARAMS = PROJECT / "params.yaml"

ENVIRONMENT = {
    **runtime.ENVIRONMENT,
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "PREFECT_HOME": str(PROJECT / ".prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "MLFLOW_TRACKING_URI": f"sqlite:///{PROJECT / 'mlflow.db'}",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
"""The pipeline's environment where not set: offline and telemetry-free (shared/docs/stack.md), Prefect's home
and MLflow's store in the project, and the library's (stagediff.runtime.ENVIRONMENT)."""


def configure_environment() -> None:
    """Set :data:`ENVIRONMENT` where not already set.

    Prefect reads its settings, and torch's OpenMP its wait policy, when they are imported, so an entry point calls
    this before it imports them: ``python -m flows.<stage>`` and ``python -m flows.retrain`` at the top of the
    module, ``python -m flows.repro`` in its main. The processes they start inherit it: dvc's stages, and the runs of
    the retrain deployment (``python -m flows.retrain serve``)."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
