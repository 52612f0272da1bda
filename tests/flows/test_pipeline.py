"""The whole pipeline, for real: `dvc repro` (through flows.repro, which starts and stops a temporary Prefect
server) in a temporary clone with tiny parameters, a real MLflow SQLite store and a temporary BentoML home.

One clone runs the pipeline on a CSV file (the built-in synthetic data, written out), then checks that a second run
does nothing, that a changed training parameter re-runs only train, evaluate and package (`dvc exp run -S`), and
that one edited value in the CSV re-runs ingest and everything after it. Another clone gets bad data and must stop at
validate with every problem named and no model produced; a third reads a URL from a local HTTP server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_stages import hourly, serve_folder

from flows.params import PipelineParams
from serving.requests import RequestLimits
from stagediff.data.builtin import synthetic_frame
from stagediff.runtime import default_threads

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
BINARIES = Path(sys.executable).parent
STAGES = ("source", "ingest", "validate", "segment", "train", "evaluate", "package")
THREADS = default_threads()
"""torch's threads in every flow, whatever OMP_NUM_THREADS says (the pipeline's clone runs with one more)."""
TINY_MODEL = dict(
    window=32,
    stage_length=8,
    context=2,
    patch_length=4,
    patch_stride=2,
    pool_kernels=[5, 1],
    d_model=16,
    heads=2,
    feedforward=32,
    diffusion_steps=20,
    sampling_steps=5,
    batch_size=16,
    warmup_steps=5,
    max_steps=30,
    checkpoint_every=10,
    validation_fraction=0.1,
)
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]


def make_clone(target: Path, data: dict) -> Path:
    """The project's files (tracked and untracked, not ignored; no run state) with a tiny params.yaml, committed."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
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
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "MLFLOW_", "BENTOML_"))}
    env.update(
        PATH=f"{BINARIES}{os.pathsep}{env.get('PATH', '')}",
        BENTOML_HOME=str(bentoml_home),
        MLFLOW_TRACKING_URI=f"sqlite:///{clone / 'mlflow.db'}",
        OMP_WAIT_POLICY="PASSIVE",
    )
    return env


def run(clone: Path, env: dict, *command: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)


def repro(clone: Path, env: dict, *dvc_arguments: str) -> subprocess.CompletedProcess:
    return run(clone, env, sys.executable, "-m", "flows.repro", *dvc_arguments)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def stages_skipped(output: str) -> list[str]:
    return re.findall(r"Stage '(\w+)' didn't change, skipping", output)


def status(clone: Path, env: dict) -> dict:
    shown = run(clone, env, "dvc", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def assert_server_stopped(output: str) -> None:
    port = int(re.search(r"Prefect server ready at http://127\.0\.0\.1:(\d+)/api", output).group(1))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the temporary Prefect server is still listening"


@pytest.fixture(scope="module")
def source_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source") / "series.csv"
    synthetic_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, source_csv):
    clone = make_clone(tmp_path_factory.mktemp("clone"), {"source": str(source_csv), "time_column": "date"})
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
    for name in (
        "data/source.json",
        "data/raw.parquet",
        "data/raw.json",
        "reports/validation.json",
        "reports/validation.md",
        "data/prepared/split.npz",
        "data/prepared/windows.npz",
        "data/prepared/scaler.json",
        "models/generator/weights.pt",
        "reports/training.json",
        "reports/loss.csv",
        "reports/metrics.json",
        "reports/package.json",
    ):
        assert (clone / name).is_file(), name
    assert {"overlays.png", "autocorrelation.png", "pca.png"} <= {
        p.name for p in (clone / "reports/evaluation").iterdir()
    }
    loss = pd.read_csv(clone / "reports/loss.csv")
    assert list(loss["step"]) == list(range(1, 31))
    metrics = json.loads((clone / "reports/metrics.json").read_text())
    assert 0 <= metrics["discriminative"] <= 0.5 and np.isfinite(metrics["predictive"])
    # Outputs live in DVC's cache and are ignored by git; only the lock file and the metrics are for git.
    ignored = run(
        clone,
        env,
        "git",
        "check-ignore",
        "data/source.json",
        "data/raw.parquet",
        "data/prepared",
        "models/generator",
        "reports/evaluation",
        "checkpoints",
        "mlflow.db",
    )
    assert len(ignored.stdout.split()) == 7, ignored.stdout + ignored.stderr
    assert any((clone / ".dvc" / "cache").rglob("*"))
    shown = run(clone, env, "dvc", "metrics", "show", "--json")
    assert shown.returncode == 0 and "discriminative" in shown.stdout


def test_the_mlflow_run_holds_params_curves_metrics_and_the_registered_model(pipeline, source_csv):
    clone, env, _ = pipeline
    training = json.loads((clone / "reports/training.json").read_text())
    check = f"""
import json, mlflow, pandas as pd
client = mlflow.MlflowClient()
served = mlflow.pyfunc.load_model("models:/stagediff-e2e/1").predict(
    pd.DataFrame([{{"n_samples": 2, "length": 64, "seed": 0}}]))
run = client.get_run({training["mlflow_run_id"]!r})
versions = client.search_model_versions("name='stagediff-e2e'")
print(json.dumps({{"params": run.data.params, "metrics": run.data.metrics, "tags": run.data.tags,
    "loss_points": len(client.get_metric_history(run.info.run_id, "loss")),
    "versions": [[str(v.version), v.run_id] for v in versions],
    "predicted": [len(served), list(served.columns)]}}))
"""
    found = run(clone, env, sys.executable, "-c", check)
    assert found.returncode == 0, found.stderr[-3000:]
    data = json.loads(found.stdout.strip().splitlines()[-1])
    assert data["params"]["model.window"] == "32" and data["params"]["data.source"] == str(source_csv)
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
    limits = PipelineParams.from_file(clone / "params.yaml").package.limits()
    assert package["limits"] == limits.to_dict() and set(package["limits"]) == set(RequestLimits().to_dict())


def test_a_second_repro_does_nothing_and_a_training_parameter_reruns_only_what_follows(pipeline):
    clone, env, _ = pipeline
    again = run(clone, env, "dvc", "repro")
    # Only the source stamp runs (always_changed); it is unchanged, so every other stage is skipped.
    assert again.returncode == 0 and stages_run(again.stdout) == ["source"], again.stdout + again.stderr
    assert stages_skipped(again.stdout) == list(STAGES[1:])
    assert status(clone, env) == {"source": ["always changed"]}  # what `dvc status` says when all is up to date
    commit(clone, "first run")
    changed = repro(clone, env, "exp", "run", "-S", "model.max_steps=40")
    output = changed.stdout + changed.stderr
    assert changed.returncode == 0, output[-6000:]
    assert stages_run(output) == ["source", "train", "evaluate", "package"]
    diff = run(clone, env, "dvc", "params", "diff", "--json")
    assert json.loads(diff.stdout)["params.yaml"]["model.max_steps"] == {"old": 30, "new": 40, "diff": 10}
    assert len(pd.read_csv(clone / "reports/loss.csv")) == 40
    assert json.loads((clone / "reports/training.json").read_text())["model_version"] == "2"


def test_an_edited_source_file_reruns_ingest_and_every_later_stage_then_nothing(pipeline, source_csv):
    clone, env, _ = pipeline
    outputs = [
        clone / name
        for name in (
            "data/raw.parquet",
            "reports/validation.json",
            "data/prepared/windows.npz",
            "models/generator/weights.pt",
            "reports/metrics.json",
            "reports/package.json",
        )
    ]
    before = [path.stat().st_mtime_ns for path in outputs]
    lines = source_csv.read_text().splitlines()
    row = lines[100].split(",")
    row[1] = f"{float(row[1]) + 0.5:.6f}"  # one value of one channel
    lines[100] = ",".join(row)
    source_csv.write_text("\n".join(lines) + "\n")
    assert status(clone, env) == {"source": ["always changed"]}  # dvc status cannot know before the stamp runs

    edited = repro(clone, env)
    output = edited.stdout + edited.stderr
    assert edited.returncode == 0, output[-6000:]
    assert stages_run(output) == list(STAGES)
    assert all(after > earlier for after, earlier in zip((p.stat().st_mtime_ns for p in outputs), before))
    sha256 = hashlib.sha256(source_csv.read_bytes()).hexdigest()
    assert json.loads((clone / "data/source.json").read_text())["sha256"] == sha256
    assert json.loads((clone / "data/raw.json").read_text())["origin"]["sha256"] == sha256
    assert json.loads((clone / "reports/training.json").read_text())["model_version"] == "3"

    started = time.monotonic()
    again = run(clone, env, "dvc", "repro")
    seconds = time.monotonic() - started
    assert again.returncode == 0 and stages_run(again.stdout) == ["source"], again.stdout + again.stderr
    assert stages_skipped(again.stdout) == list(STAGES[1:])
    print(f"a dvc repro with nothing changed took {seconds:.1f} s")


def test_a_url_source_is_read_again_when_ingest_is_forced(tmp_path, prefect_api):
    """What docs/pipeline.md promises for a URL: `dvc repro` does not download it again, `dvc repro --force ingest`
    does, and data/raw.json records the ETag and sha256 of what was downloaded."""
    hourly().to_csv(tmp_path / "served.csv", index=False)
    server = serve_folder(tmp_path)
    url = f"http://127.0.0.1:{server.server_port}/served.csv"
    try:
        clone = make_clone(tmp_path / "clone", {"source": url, "time_column": "time"})
        env = {**environment(clone, tmp_path / "bentoml"), "PREFECT_API_URL": prefect_api}
        raw = clone / "data/raw.json"

        first = run(clone, env, "dvc", "repro", "ingest")
        assert first.returncode == 0 and stages_run(first.stdout) == ["source", "ingest"], first.stdout + first.stderr
        origin = json.loads(raw.read_text())["origin"]
        assert origin["sha256"] == hashlib.sha256((tmp_path / "served.csv").read_bytes()).hexdigest()
        assert origin["kind"] == "url" and origin["source"] == url and origin["etag"]
        assert json.loads((clone / "data/source.json").read_text()) == {"kind": "url", "source": url}

        hourly(seed=1).to_csv(tmp_path / "served.csv", index=False)  # the remote file changes
        unseen = run(clone, env, "dvc", "repro", "ingest")
        assert unseen.returncode == 0 and stages_run(unseen.stdout) == ["source"]  # not downloaded again
        assert json.loads(raw.read_text())["origin"] == origin

        forced = run(clone, env, "dvc", "repro", "--force", "ingest")
        assert forced.returncode == 0 and stages_run(forced.stdout) == ["source", "ingest"], forced.stderr
        new = json.loads(raw.read_text())["origin"]
        assert new["sha256"] == hashlib.sha256((tmp_path / "served.csv").read_bytes()).hexdigest() != origin["sha256"]
        assert new["etag"] != origin["etag"]
    finally:
        server.shutdown()


def test_bad_data_stops_the_pipeline_at_validate_naming_each_problem(tmp_path):
    rows = 400
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=rows, freq="h").astype(str),
            "a": np.sin(np.arange(rows) / 10),
            "b": np.cos(np.arange(rows) / 7),
        }
    )
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
    assert stages_run(output) == ["source", "ingest", "validate"]
    assert "no duplicate timestamps in 'time'" in output and "row=100" in output
    assert "channel 'b' has at most 0.0% missing values" in output and "row=200" in output
    assert "channel 'comment' is numeric" in output
    assert not (clone / "models/generator").exists() and not (clone / "reports/training.json").exists()
    assert json.loads((clone / "reports/validation.json").read_text())["success"] is False
    assert_server_stopped(output)
