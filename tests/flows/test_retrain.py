"""Scheduled retraining (flows/retrain.py): the quality gate as plain functions, the MLflow records against a
temporary SQLite store, and, for real, a sequence of `python -m flows.retrain run` in one temporary clone with tiny
parameters (test_pipeline.py's helpers) and one shared Prefect server:

1. the first run promotes its model (no champion yet) and builds a Bento;
2. bad new data stops the run at validate: the run fails, the alias, the versions and the Bentos are unchanged;
3. a crash in training (the stage's process killed after its first checkpoint) fails the run the same way;
4. the rerun skips the finished stages, resumes training from the checkpoint, and the challenger (trained with a
   learning rate too small to learn anything, margin 0) is rejected: the champion stays; the challenger, scored
   side by side with the champion in the flow, gets exactly its evaluate-stage metrics.

The slow tests run in file order and build on each other's state."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_pipeline import environment, make_clone, run

from flows.params import PipelineParams
from flows.retrain import (
    FAILED,
    LOWER_IS_BETTER,
    PROMOTED,
    REJECTED,
    TOLERANCE,
    UNCHANGED,
    check_metric_names,
    comparison_table,
    decide,
    failed_stage,
    find_champion,
    judge,
    limit,
    log_decision,
    main,
)
from stagediff.errors import ConfigError

# ------------------------------------------------------------------------------------------------- the gate


def test_the_limit_is_the_champion_plus_margin_times_its_magnitude_plus_a_rounding_tolerance():
    assert limit(0.2, 0.05) == pytest.approx(0.21 + TOLERANCE, abs=1e-12)
    assert limit(0.2, 0.0) == pytest.approx(0.2 + TOLERANCE, abs=1e-12)
    assert limit(-0.1, 0.05) == pytest.approx(-0.095 + TOLERANCE, abs=1e-12)  # lenient side of a negative score
    assert limit(0.0, 0.5) == TOLERANCE


def test_a_challenger_within_the_margin_on_every_metric_is_promoted():
    verdict = judge(
        {"discriminative": 0.104, "predictive": 0.19},
        {"discriminative": 0.1, "predictive": 0.2},
        ["discriminative", "predictive"],
        margin=0.05,
    )
    assert verdict.promote
    assert [(c.metric, c.passed) for c in verdict.checks] == [("discriminative", True), ("predictive", True)]
    assert verdict.reason.startswith("every metric within 5% of the champion's")


def test_one_metric_beyond_the_margin_rejects_and_the_reason_names_it():
    verdict = judge(
        {"discriminative": 0.05, "predictive": 0.22},
        {"discriminative": 0.1, "predictive": 0.2},
        ["discriminative", "predictive"],
        margin=0.05,
    )
    assert not verdict.promote
    assert verdict.reason == "predictive 0.22 > 0.210001 (champion 0.2 + 5%)"
    assert [c.passed for c in verdict.checks] == [True, False]


def test_with_repeats_a_difference_within_the_judges_noise_passes():
    champion = {"detection": 0.80, "detection_std": 0.02}
    assert judge({"detection": 0.85, "detection_std": 0.02}, champion, ["detection"], margin=0.05).promote
    verdict = judge({"detection": 0.95, "detection_std": 0.02}, champion, ["detection"], margin=0.05)
    assert not verdict.promote  # 2 * sqrt(0.02^2 + 0.02^2) = 0.057 > 5 % of 0.80
    assert verdict.reason == "detection 0.95 > 0.85657 (champion 0.8 + the judges' noise 0.0566)"


def test_a_tie_passes_and_a_margin_of_zero_rejects_any_worsening():
    assert judge({"predictive": 0.2}, {"predictive": 0.2}, ["predictive"], margin=0.0).promote
    assert not judge({"predictive": 0.200002}, {"predictive": 0.2}, ["predictive"], margin=0.0).promote


def test_near_zero_a_relative_margin_leaves_only_the_tolerance():
    assert judge({"marginal": 0.0}, {"marginal": 0.0}, ["marginal"], margin=0.5).promote
    assert judge({"marginal": 5e-7}, {"marginal": 0.0}, ["marginal"], margin=0.5).promote
    assert not judge({"marginal": 1e-3}, {"marginal": 0.0}, ["marginal"], margin=0.5).promote


def test_without_a_champion_the_first_challenger_is_promoted_unless_its_metrics_are_not_finite():
    verdict = judge({"predictive": 0.3}, None, ["predictive"], margin=0.05)
    assert verdict.promote and verdict.reason == "no champion yet: the first challenger is promoted"
    assert verdict.checks[0].limit is None and verdict.checks[0].champion is None
    assert not judge({"predictive": math.nan}, None, ["predictive"], margin=0.05).promote


def test_a_missing_or_non_finite_challenger_metric_fails_and_a_missing_champion_metric_passes():
    missing = judge(
        {"discriminative": 0.1},
        {"discriminative": 0.1, "predictive": 0.2},
        ["discriminative", "predictive"],
        margin=0.05,
    )
    assert not missing.promote and missing.reason.startswith(
        "predictive: the challenger has no value: the evaluate stage skipped it (reports/evaluation/metrics.json"
    )
    assert not judge({"predictive": math.inf}, {"predictive": 0.2}, ["predictive"], margin=0.05).promote
    assert judge({"predictive": 0.3}, {"predictive": math.nan}, ["predictive"], margin=0.05).promote


def test_only_lower_is_better_metrics_can_be_gated():
    check_metric_names(LOWER_IS_BETTER)
    with pytest.raises(ConfigError, match=r"\['boundary', 'accuracy'\] cannot be compared.*discriminative"):
        check_metric_names(["predictive", "boundary", "accuracy"])


def test_the_failed_stage_is_read_from_dvc_output():
    output = (
        "Stage 'ingest' didn't change, skipping\nRunning stage 'validate':\n> python -m flows.validate\n"
        "ERROR: failed to reproduce 'validate': failed to run: python -m flows.validate, exited with 1\n"
    )
    assert failed_stage(output) == "validate"
    assert failed_stage("Running stage 'segment':\nRunning stage 'train':\nKilled\n") == "train"
    assert failed_stage("ERROR: unexpected error\n") is None


def test_the_comparison_table_shows_each_metric():
    verdict = judge({"predictive": 0.22}, {"predictive": 0.2}, ["predictive"], margin=0.05)
    table = comparison_table(
        {
            "decision": REJECTED,
            "reason": verdict.reason,
            "model": "m",
            "alias": "champion",
            "margin": 0.05,
            "challenger": {"version": "2"},
            "champion": {"version": "1"},
            "checks": [vars(c) for c in verdict.checks],
        }
    )
    assert "# Retraining: rejected" in table and "challenger version 2, champion version 1" in table
    assert "| predictive | 0.22 | 0.2 | 0.210001 | **no** |" in table


def test_serve_without_a_prefect_server_says_how_to_start_one(capsys):
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert main(["serve"]) == 1
    assert "prefect server start" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the registry


@pytest.fixture
def tracking(tmp_path):
    """A temporary MLflow SQLite store as the current tracking and registry URI."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(previous)


def register_versions(client: mlflow.MlflowClient, count: int) -> list[str]:
    """``count`` versions of registered model "model", one run each; their run ids."""
    client.create_registered_model("model")
    run_ids = []
    for _ in range(count):
        with mlflow.start_run() as run:
            run_ids.append(run.info.run_id)
        client.create_model_version("model", f"runs:/{run.info.run_id}/generator", run.info.run_id)
    return run_ids


def test_the_champion_is_the_version_holding_the_alias_and_decisions_are_recorded(tracking):
    client = tracking
    assert find_champion(client, "model", "champion") is None  # no registered model yet
    run_ids = register_versions(client, 2)
    assert find_champion(client, "model", "champion") is None  # versions, no alias
    client.set_registered_model_alias("model", "champion", "1")
    assert str(find_champion(client, "model", "champion").version) == "1"

    decision = {
        "decision": REJECTED,
        "reason": "predictive 0.3 > 0.21",
        "model": "model",
        "alias": "champion",
        "margin": 0.05,
        "finished": "2026-01-01T00:00:00+00:00",
        "checks": [],
        "challenger": {"version": "2", "run_id": run_ids[1], "metrics": {"predictive": 0.3}},
        "champion": {"version": "1", "run_id": run_ids[0], "metrics": {"predictive": 0.2}},
    }
    history = log_decision(client, decision)
    recorded = client.get_run(history)
    assert recorded.data.tags["retrain.decision"] == REJECTED and recorded.data.tags["retrain.champion_version"] == "1"
    assert recorded.data.metrics == {"challenger_predictive": 0.3, "champion_predictive": 0.2}
    challenger_run = client.get_run(run_ids[1])
    assert challenger_run.data.tags["retrain.reason"] == "predictive 0.3 > 0.21"
    assert challenger_run.data.metrics["retrain_champion_predictive"] == 0.2
    assert client.get_model_version("model", "2").tags["retrain.decision"] == REJECTED
    assert str(find_champion(client, "model", "champion").version) == "1"  # recording never moves the alias


def test_decide_promotes_the_first_challenger_and_leaves_a_champion_that_is_the_challenger_unchanged(
    tracking, tmp_path
):
    client = tracking
    (run_id,) = register_versions(client, 1)
    training, metrics = tmp_path / "training.json", tmp_path / "metrics.json"
    training.write_text(json.dumps({"model_version": "1", "mlflow_run_id": run_id, "data_hash": "abc"}))
    metrics.write_text(json.dumps({"detection": 0.9, "texture": 0.1, "predictive": 0.1}))
    params = PipelineParams.from_dict({"package": {"name": "model"}})
    first = decide(params, client, tmp_path, training, metrics, tmp_path / "no-prepared-data-needed")
    assert first["decision"] == PROMOTED and first["champion"] is None
    assert first["challenger"] == {
        "version": "1",
        "run_id": run_id,
        "data_hash": "abc",
        "metrics": {"detection": 0.9, "texture": 0.1, "predictive": 0.1},
    }
    client.set_registered_model_alias("model", "champion", "1")
    again = decide(params, client, tmp_path, training, metrics, tmp_path / "no-prepared-data-needed")
    assert again["decision"] == UNCHANGED and again["champion"]["version"] == "1"
    assert again["reason"].startswith("version 1 already holds alias 'champion'")


# ------------------------------------------------------------------------------- the flow, for real (slow)

ROWS, NEW_ROWS = 600, 60


def hourly_series(rows: int) -> pd.DataFrame:
    """Two smooth hourly channels with a little noise; the first rows never change as ``rows`` grows."""
    rng = np.random.default_rng(0)
    t = np.arange(ROWS + NEW_ROWS)
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=len(t), freq="h").astype(str),
            "a": 150 + 45 * np.sin(2 * np.pi * t / 160) + rng.normal(0, 1, len(t)),
            "b": 150 - 45 * np.cos(2 * np.pi * t / 120) + rng.normal(0, 1, len(t)),
        }
    )
    return frame.iloc[:rows]


def edit_params(clone: Path, **sections: dict) -> None:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def retrain(clone: Path, env: dict) -> tuple[int, str]:
    result = run(clone, env, sys.executable, "-m", "flows.retrain", "run")
    return result.returncode, result.stdout + result.stderr


def tracker(env: dict) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])


def registry(env: dict) -> dict:
    """The registered versions and aliases in the clone's MLflow store, and the BentoML store's models and Bentos."""
    client = tracker(env)
    versions = client.search_model_versions("name='stagediff-e2e'")
    aliases = client.get_registered_model("stagediff-e2e").aliases
    home = Path(env["BENTOML_HOME"])
    stored = {
        kind: sorted(f"{p.parent.name}:{p.name}" for p in (home / kind).glob("*/*") if p.is_dir())
        for kind in ("models", "bentos")
    }
    return {
        "versions": sorted(str(v.version) for v in versions),
        "aliases": {k: str(v) for k, v in aliases.items()},
        **stored,
    }


def report(clone: Path) -> dict:
    return json.loads((clone / "reports/retrain.json").read_text())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, prefect_api):
    root = tmp_path_factory.mktemp("retrain")
    source = root / "source.csv"
    hourly_series(ROWS).to_csv(source, index=False)
    clone = make_clone(root / "clone", {"source": str(source), "time_column": "time"})
    edit_params(
        clone,
        model={"max_steps": 200, "checkpoint_every": 100},
        retrain={"metrics": ["discriminative", "predictive", "marginal"], "margin": 0.05},
    )
    env = {**environment(clone, root / "bentoml"), "PREFECT_API_URL": prefect_api}
    return {"clone": clone, "env": env, "source": source, "states": {}}


@pytest.mark.slow
def test_the_first_run_promotes_its_model_and_builds_the_bento(scenario):
    clone, env = scenario["clone"], scenario["env"]
    status, output = retrain(clone, env)
    assert status == 0, output[-6000:]
    assert "decision: promoted: no champion yet: the first challenger is promoted" in output
    decision = report(clone)
    assert decision["decision"] == PROMOTED and decision["champion"] is None
    assert decision["challenger"]["version"] == "1"
    package = json.loads((clone / "reports/package.json").read_text())
    assert decision["bento"] == package["bento"] and package["model_version"] == "1"
    state = registry(env)
    assert state["versions"] == ["1"] and state["aliases"] == {"champion": "1"}
    assert state["bentos"] == [package["bento"]] and state["models"] == [package["bentoml_model"]]
    tags = tracker(env).get_model_version("stagediff-e2e", "1").tags
    assert tags["retrain.decision"] == PROMOTED and tags["retrain.bento"] == package["bento"]
    scenario["states"]["promoted"] = state


@pytest.mark.slow
def test_bad_new_data_fails_the_run_at_validate_and_changes_nothing(scenario):
    clone, env = scenario["clone"], scenario["env"]
    bad = hourly_series(ROWS + NEW_ROWS)
    bad.loc[ROWS + 10, "time"] = bad.loc[ROWS + 9, "time"]
    bad.to_csv(scenario["source"], index=False)
    status, output = retrain(clone, env)
    assert status == 1, output[-6000:]
    assert "error: `dvc repro evaluate` failed (exit 255) at stage 'validate'" in output
    assert "nothing was promoted (the champion alias and the served Bento are unchanged)" in output
    assert "no duplicate timestamps in 'time'" in output
    decision = report(clone)
    assert decision["decision"] == FAILED and decision["stage"] == "validate"
    assert registry(env) == scenario["states"]["promoted"]


@pytest.mark.slow
def test_a_crash_in_training_fails_the_run_and_changes_nothing(scenario):
    clone, env = scenario["clone"], scenario["env"]
    hourly_series(ROWS + NEW_ROWS).to_csv(scenario["source"], index=False)  # good new data
    edit_params(clone, model={"max_steps": 100, "checkpoint_every": 10, "learning_rate": 1e-6}, retrain={"margin": 0.0})
    old = {p.parent for p in (clone / "checkpoints").glob("*/last.pt")}
    with (clone.parent / "crash.log").open("w") as log:
        process = psutil.Popen(
            [sys.executable, "-m", "flows.retrain", "run"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            checkpoint = wait_for_new_checkpoint(clone, old, process)
            trainers = [p for p in process.children(recursive=True) if "flows.train" in " ".join(p.cmdline())]
            assert trainers, "the train stage is not running"
            for trainer in trainers:
                trainer.kill()
            assert process.wait(timeout=300) == 1
        finally:
            if process.poll() is None:
                process.kill()
    output = (clone.parent / "crash.log").read_text()
    assert "at stage 'train'" in output, output[-6000:]
    assert report(clone)["stage"] == "train"
    assert registry(env) == scenario["states"]["promoted"]
    scenario["checkpoint"] = checkpoint


def wait_for_new_checkpoint(clone: Path, old: set[Path], process: psutil.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [p for p in (clone / "checkpoints").glob("*/last.pt") if p.parent not in old]
        if new:
            return new[0]
        assert process.poll() is None, (clone.parent / "crash.log").read_text()[-6000:]
        time.sleep(0.05)
    raise AssertionError("training wrote no checkpoint in time")


@pytest.mark.slow
def test_a_rerun_continues_and_a_worse_challenger_is_rejected(scenario):
    clone, env = scenario["clone"], scenario["env"]
    folder = scenario["checkpoint"].parent
    run_id = (folder / "mlflow_run_id").read_text().strip()
    status, output = retrain(clone, env)
    assert status == 0, output[-6000:]
    for stage in ("validate", "segment"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert f"resuming MLflow run {run_id}" in output
    training = json.loads((clone / "reports/training.json").read_text())
    assert training["mlflow_run_id"] == run_id and training["steps"] == 100 and training["model_version"] == "2"

    decision = report(clone)
    assert decision["decision"] == REJECTED and decision["champion"]["version"] == "1"
    assert f"decision: rejected: {decision['reason']}" in output
    failed = [c for c in decision["checks"] if not c["passed"]]
    assert failed and all(c["challenger"] > c["champion"] for c in failed)
    assert all(f"{c['metric']} {c['challenger']:.6g} >" in decision["reason"] for c in failed)
    # the champion is scored on every metric the challenger got (detection is skipped on this short series)
    champion, challenger = set(decision["champion"]["metrics"]), set(decision["challenger"]["metrics"])
    assert champion == challenger >= {"discriminative", "predictive", "marginal"}
    # Scored side by side in the flow's process, the challenger gets exactly what the evaluate stage gave it:
    # same windows, seed and settings (and the same thread count, in the same environment).
    assert decision["challenger"]["metrics"] == decision["challenger"]["evaluate_stage_metrics"]
    assert "Running stage 'package'" not in output
    state = registry(env)
    assert state == {**scenario["states"]["promoted"], "versions": ["1", "2"]}  # the champion stays

    client = tracker(env)
    tags, metrics = client.get_run(run_id).data.tags, client.get_run(run_id).data.metrics
    assert tags["retrain.decision"] == REJECTED and tags["retrain.champion_version"] == "1"
    assert metrics["retrain_champion_predictive"] == decision["champion"]["metrics"]["predictive"]
    assert client.get_model_version("stagediff-e2e", "2").tags["retrain.reason"] == decision["reason"]
    history = client.search_runs(
        [client.get_experiment_by_name("stagediff-e2e-retrain").experiment_id], order_by=["start_time ASC"]
    )
    assert [h.data.tags["retrain.decision"] for h in history] == [PROMOTED, FAILED, FAILED, REJECTED]
    assert [h.data.tags.get("retrain.failed_stage") for h in history] == [None, "validate", "train", None]

    flow_runs = run(clone, env, "prefect", "flow-run", "ls", "--flow-name", "retrain", "--limit", "10", "-o", "json")
    states = [r["state"]["type"] for r in sorted(json.loads(flow_runs.stdout), key=lambda r: r["start_time"])]
    assert states == ["COMPLETED", "FAILED", "FAILED", "COMPLETED"]
    artifact = run(clone, env, "prefect", "artifact", "inspect", "retrain-decision", "--limit", "1")
    assert "Retraining: rejected" in artifact.stdout, artifact.stdout + artifact.stderr
