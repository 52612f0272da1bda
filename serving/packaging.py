"""Put a trained model into the BentoML model store and build the Bento that serves it.

Used by the pipeline's package stage (flows/package.py)::

    tag = store_model(Path("runs/model"), "stagediff", metadata={"mlflow_run_id": ..., "model_version": "3", ...})
    bento = build_bento(tag, project_root)

Both use the store under ``$BENTOML_HOME`` (default ``~/bentoml``); it must lie outside the build context
(the project folder), or the build copies the store into the Bento until the path is too long.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import bentoml

from serving.requests import RequestLimits
from stagediff import StageDiff
from stagediff.artifacts import FILES as MODEL_FILES  # what StageDiff.save(dir) writes
from stagediff.diffusion import SAMPLERS

BENTOFILE = Path("serving") / "bentofile.yaml"
METADATA_KEYS = (
    "mlflow_run_id",
    "registered_model",
    "model_version",
    "data_hash",
    "dataset",
    "metrics",
    "metrics_sampling",
    "limits",
)


def store_model(model_dir: Path, name: str = "stagediff", metadata: dict[str, Any] | None = None) -> str:
    """Copy the saved model folder ``model_dir`` into the BentoML store as a new version of ``name``.

    metadata: any of mlflow_run_id, registered_model, model_version, data_hash, dataset, metrics (flat
    dict of finite floats; None for a score not computed, left out), metrics_sampling ({"sampler", "steps"}: what
    the metrics' samples were drawn with) and limits ({"max_length", "max_values", "max_samples"}: the request
    limits of the service; defaults where absent). The folder must load, and the metadata must be valid, before anything
    is written. Returns the new tag, e.g. ``"stagediff:u3xq...``."""
    model_dir = Path(model_dir)
    metadata = dict(metadata or {})
    check_metadata(metadata)
    # BentoML's metadata takes no None: a value not known, or a score not computed, is left out.
    metadata = {
        key: ({k: v for k, v in value.items() if v is not None} if key == "metrics" else value)
        for key, value in metadata.items()
        if value is not None
    }
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise ValueError(
            f"{model_dir} is not a saved stagediff model (missing {missing}); write it with StageDiff.save"
        )
    StageDiff.load(model_dir)  # a folder that cannot be served fails here, not at the service's start
    with bentoml.models.create(name, metadata=metadata, labels={"framework": "stagediff"}) as model:
        for file in MODEL_FILES:
            shutil.copy2(model_dir / file, model.path_of(file))
    return str(model.tag)


def check_metadata(metadata: dict[str, Any]) -> None:
    unknown = sorted(set(metadata) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"unknown model metadata key(s) {unknown}; known: {list(METADATA_KEYS)}")
    metrics = metadata.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a flat dict of numbers, got {type(metrics).__name__}")
    bad = {
        k: v
        for k, v in metrics.items()
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))
    }
    if bad:
        raise ValueError(f"metrics must be a flat dict of finite numbers (or null for a score not computed), got {bad}")
    sampling = metadata.get("metrics_sampling", {"sampler": SAMPLERS[0], "steps": 1})
    if not (
        isinstance(sampling, dict)
        and set(sampling) == {"sampler", "steps"}
        and sampling["sampler"] in SAMPLERS
        and isinstance(sampling["steps"], int)
        and not isinstance(sampling["steps"], bool)
        and sampling["steps"] >= 1
    ):
        raise ValueError(
            f"metrics_sampling must be {{'sampler': one of {SAMPLERS}, 'steps': a positive integer}}, got {sampling!r}"
        )
    RequestLimits.from_dict(metadata.get("limits"))


def build_bento(model_tag: str, project_root: Path) -> str:
    """``bentoml build -f serving/bentofile.yaml`` in ``project_root`` for the model ``model_tag``; returns
    the Bento's tag. Runs offline (the bentofile does not lock packages); needs ``uv`` on PATH or in the
    interpreter's folder. The build runs in its own process, which imports the service with
    STAGEDIFF_MODEL_TAG set, so the Bento packs exactly this model."""
    project_root = Path(project_root).resolve()
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")).resolve()
    if home.is_relative_to(project_root):
        raise ValueError(
            f"BENTOML_HOME {home} lies inside the build context {project_root}; set it to a folder "
            "outside the project, or the build copies the store into itself"
        )
    bentoml.models.get(model_tag)  # a clear NotFound before a build starts
    binaries = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "STAGEDIFF_MODEL_TAG": model_tag,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "true",
        "PATH": binaries + os.pathsep + os.environ.get("PATH", ""),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bentoml",
            "build",
            "-f",
            str(project_root / BENTOFILE),
            "--label",
            f"model={model_tag.replace(':', '-')}",
            "--output",
            "tag",
            str(project_root),
        ],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed ({result.returncode}):\n{result.stderr[-4000:]}")
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    tag = lines[-1].removeprefix("__tag__:") if lines else ""
    if ":" not in tag:
        raise RuntimeError(f"bentoml build printed no tag:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return tag
