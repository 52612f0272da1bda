"""The whole pipeline, for real: `dvc repro` (through flows.repro, which starts and stops a temporary Prefect
server) in a temporary clone with tiny parameters, a real MLflow SQLite store and a temporary BentoML home.

One clone runs the pipeline, then checks that a second run does nothing and that a changed training parameter
re-runs only train, evaluate and package (`dvc exp run -S`). Another clone gets bad data and must stop at
validate with every problem named and no model produced."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stagediff.runtime import default_threads

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
BINARIES = Path(sys.executable).parent
STAGES = ("ingest", "validate", "segment", "train", "evaluate", "package")
THREADS = default_threads()
"""torch's threads in every flow, whatever OMP_NUM_THREADS says (the pipeline's clone runs with one more)."""
TINY_MODEL = dict(window=32, stage_length=8, context=2, patch_length=4, patch_stride=2, pool_kernels=[5, 1],
                  d_model=16, heads=2, feedforward=32, diffusion_steps=20, sampling_steps=5, batch_size=16,
                  warmup_steps=5, max_steps=30, checkpoint_every=10, validation_fraction=0.1)
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]


def make_clone(target: Path, data: dict) -> Path:
    """The project's files (tracked and untracked, not ignored; no run state) with a tiny params.yaml, committed."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=PROJECT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        source = PROJECT / name
        if name in ("dvc.lock", "reports/metrics.json") or name.startswith("tests/") or not source.is_file():
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["data"].update(data)
    params["model"] = {"preset": None, **TINY_MODEL, "missing": "error", "staged": True, "channels": None, "seed": 0}
    params["evaluate"].update(windows=10, repeats=1, fast=True)
    params["package"]["name"] = "stagediff-e2e"
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=target, check=True)
    commit(target, "clone")
    return target


def commit(clone: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", message], cwd=clone, check=True)


def environment(clone: Path, bentoml_home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PREFECT_", "MLFLOW_", "BENTOML_"))}
    env.update(PATH=f"{BINARIES}{os.pathsep}{env.get('PATH', '')}", BENTOML_HOME=str(bentoml_home),
               MLFLOW_TRACKING_URI=f"sqlite:///{clone / 'mlflow.db'}", OMP_WAIT_POLICY="PASSIVE")
    return env


def run(clone: Path, env: dict, *command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)


def repro(clone: Path, env: dict, *dvc_arguments: str) -> subprocess.CompletedProcess:
    return run(clone, env, sys.executable, "-m", "flows.repro", *dvc_arguments)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def assert_server_stopped(output: str) -> None:
    port = int(re.search(r"Prefect server ready at http://127\.0\.0\.1:(\d+)/api", output).group(1))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the temporary Prefect server is still listening"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    clone = make_clone(tmp_path_factory.mktemp("clone"), {"source": "synthetic"})
    env = environment(clone, tmp_path_factory.mktemp("bentoml"))
    env["OMP_NUM_THREADS"] = str(THREADS + 1)  # what a flow sees must not follow it
    result = repro(clone, env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    return clone, env, result


def test_dvc_repro_runs_every_stage_and_writes_every_output(pipeline):
    clone, env, result = pipeline
    output = result.stdout + result.stderr
    assert stages_run(output) == list(STAGES)
    assert re.findall(r"torch threads: (\d+)", output) == [str(THREADS)] * 6  # each flow's first line
    assert_server_stopped(output)
    for name in ("data/raw.parquet", "data/raw.json", "reports/validation.json", "reports/validation.md",
                 "data/prepared/split.npz", "data/prepared/windows.npz", "data/prepared/scaler.json",
                 "models/generator/weights.pt", "reports/training.json", "reports/loss.csv", "reports/metrics.json",
                 "reports/package.json"):
        assert (clone / name).is_file(), name
    assert {"overlays.png", "autocorrelation.png", "pca.png"} <= {p.name for p in (clone / "reports/evaluation").iterdir()}
    loss = pd.read_csv(clone / "reports/loss.csv")
    assert list(loss["step"]) == list(range(1, 31))
    metrics = json.loads((clone / "reports/metrics.json").read_text())
    assert 0 <= metrics["discriminative"] <= 0.5 and np.isfinite(metrics["predictive"])
    # Outputs live in DVC's cache and are ignored by git; only the lock file and the metrics are for git.
    ignored = run(clone, env, "git", "check-ignore", "data/raw.parquet", "data/prepared", "models/generator",
                  "reports/evaluation", "checkpoints", "mlflow.db")
    assert len(ignored.stdout.split()) == 6, ignored.stdout + ignored.stderr
    assert any((clone / ".dvc" / "cache").rglob("*"))
    shown = run(clone, env, "dvc", "metrics", "show", "--json")
    assert shown.returncode == 0 and "discriminative" in shown.stdout


def test_the_mlflow_run_holds_params_curves_metrics_and_the_registered_model(pipeline):
    clone, env, _ = pipeline
    training = json.loads((clone / "reports/training.json").read_text())
    check = f"""
import json, mlflow, pandas as pd
client = mlflow.MlflowClient()
served = mlflow.pyfunc.load_model("models:/stagediff-e2e/1").predict(
    pd.DataFrame([{{"n_samples": 2, "length": 64, "seed": 0}}]))
run = client.get_run({training['mlflow_run_id']!r})
versions = client.search_model_versions("name='stagediff-e2e'")
print(json.dumps({{"params": run.data.params, "metrics": run.data.metrics, "tags": run.data.tags,
    "loss_points": len(client.get_metric_history(run.info.run_id, "loss")),
    "versions": [[str(v.version), v.run_id] for v in versions],
    "predicted": [len(served), list(served.columns)]}}))
"""
    found = run(clone, env, sys.executable, "-c", check)
    assert found.returncode == 0, found.stderr[-3000:]
    data = json.loads(found.stdout.strip().splitlines()[-1])
    assert data["params"]["model.window"] == "32" and data["params"]["data.source"] == "synthetic"
    assert data["loss_points"] == 30 and "learning_rate" in data["metrics"]
    assert "eval_discriminative" in data["metrics"] and "eval_predictive" in data["metrics"]
    assert data["versions"] == [[training["model_version"], training["mlflow_run_id"]]]
    channels = ["temperature", "load", "wind", "solar", "price"]
    assert data["predicted"] == [2 * 64, ["sample", "date", *channels]]  # the registered model samples
    package = json.loads((clone / "reports/package.json").read_text())
    assert data["tags"]["bento"] == package["bento"] and data["tags"]["bentoml_model"] == package["bentoml_model"]


def test_the_model_and_the_bento_are_in_the_bentoml_store(pipeline):
    clone, env, _ = pipeline
    package = json.loads((clone / "reports/package.json").read_text())
    models = json.loads(run(clone, env, "bentoml", "models", "list", "-o", "json").stdout)
    bentos = json.loads(run(clone, env, "bentoml", "list", "-o", "json").stdout)
    assert package["bentoml_model"] in [m["tag"] for m in models]
    assert package["bento"] in [b["tag"] for b in bentos]
    training = json.loads((clone / "reports/training.json").read_text())
    assert package["mlflow_run_id"] == training["mlflow_run_id"] and package["data_hash"] == training["data_hash"]
    assert package["metrics"] == json.loads((clone / "reports/metrics.json").read_text())


def test_a_second_repro_does_nothing_and_a_training_parameter_reruns_only_what_follows(pipeline):
    clone, env, _ = pipeline
    again = run(clone, env, "dvc", "repro")
    assert again.returncode == 0 and stages_run(again.stdout) == [] and "up to date" in again.stdout
    commit(clone, "first run")
    changed = repro(clone, env, "exp", "run", "-S", "model.max_steps=40")
    output = changed.stdout + changed.stderr
    assert changed.returncode == 0, output[-6000:]
    assert stages_run(output) == ["train", "evaluate", "package"]
    diff = run(clone, env, "dvc", "params", "diff", "--json")
    assert json.loads(diff.stdout)["params.yaml"]["model.max_steps"] == {"old": 30, "new": 40, "diff": 10}
    assert len(pd.read_csv(clone / "reports/loss.csv")) == 40
    assert json.loads((clone / "reports/training.json").read_text())["model_version"] == "2"


def test_bad_data_stops_the_pipeline_at_validate_naming_each_problem(tmp_path):
    rows = 400
    frame = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
                          "a": np.sin(np.arange(rows) / 10), "b": np.cos(np.arange(rows) / 7)})
    frame.loc[100, "time"] = frame.loc[99, "time"]
    frame.loc[200, "b"] = np.nan
    frame["comment"] = "free text"
    source = tmp_path / "bad.csv"
    frame.to_csv(source, index=False)
    clone = make_clone(tmp_path / "clone", {"source": str(source), "time_column": "time"})
    env = environment(clone, tmp_path / "bentoml")
    result = repro(clone, env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert stages_run(output) == ["ingest", "validate"]
    assert "no duplicate timestamps in 'time'" in output and "row=100" in output
    assert "channel 'b' has at most 0.0% missing values" in output and "row=200" in output
    assert "channel 'comment' is numeric" in output
    assert not (clone / "models/generator").exists() and not (clone / "reports/training.json").exists()
    assert json.loads((clone / "reports/validation.json").read_text())["success"] is False
    assert_server_stopped(output)
