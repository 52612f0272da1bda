"""Scheduled retraining with a quality gate: a Prefect deployment that refreshes the data, re-runs the pipeline,
and replaces the serving model (champion) with the new one (challenger) only if it is no worse.

    python -m flows.retrain serve    # deployment 'retrain/retrain' on retrain.cron; needs a server (PREFECT_API_URL)
    python -m flows.retrain run      # one run now (a temporary local Prefect server when PREFECT_API_URL is unset)

One run (docs/operations.md):

1. ``dvc repro --force ingest``: the source stamp and ingest, forced, so data.source is read again even when it is
   a URL (DVC sees a changed file or built-in through the stamp, but a URL only by downloading it); an unchanged
   source gives the same content hash, and nothing downstream re-runs.
2. ``dvc repro evaluate``: validate, segment, train (registers a new MLflow model version only after fitting
   succeeds; resumes from checkpoints/), evaluate (reports/metrics.json on the held-out windows).
3. Judge. The challenger is the version in reports/training.json (models/generator). The champion is the version
   holding the MLflow alias retrain.alias of model package.name; its generator is downloaded from the registry.
   Both are scored here, side by side in this process, on the same held-out windows with the evaluate stage's own
   function, seed and settings (flows.evaluate.score_held_out). Same process, because the judges' scores depend on
   torch's thread count (the fast predictive score of one model moved by 20% between 1 and 2 threads on a 2-core
   machine): the challenger's reports/metrics.json, computed in another process, is recorded but not gated on. Without a
   champion the challenger's reports/metrics.json is all there is.
4. Promote (only if the gate passes): ``dvc repro package`` (a new BentoML model and Bento), then the alias. The
   alias moves last, so it never names a version without a Bento.
5. Record: reports/retrain.json, a Prefect markdown artifact (key ``retrain-decision``) and the flow's return
   value, and MLflow: tags on the challenger's run and model version, and one run per decision in the experiment
   ``<package.name>-retrain`` (a history of every decision, failures included).

The gate, for every metric m in retrain.metrics (all lower is better; the default: the detection AUC, the
texture error and the predictive score)::

    challenger[m] <= champion[m] + max(margin * |champion[m]|, 2 * sqrt(std_challenger^2 + std_champion^2)) + TOLERANCE

i.e. "at most ``margin`` (a fraction) worse than the champion, or within the judges' own noise when the metric
was repeated (evaluate.repeats > 1)". ``|.|`` keeps the bound on the lenient side of
the champion's value should a metric ever be negative (context-FID can be slightly, numerically). TOLERANCE
(1e-6, the precision reports/metrics.json is rounded to) lets a tie pass despite rounding. Near 0 a relative
margin leaves almost no room (a champion at 0 admits only a challenger at 0 + TOLERANCE), so a lucky champion
is hard to beat; this is deliberately conservative (keeping a model is safe), and the champion is re-scored on
each run's new held-out data, so its luck does not carry over. A metric the challenger lacks or that is not
finite fails; one the champion lacks or that is not finite cannot be compared and passes. With no champion the
first challenger is promoted (if its metrics are finite). A champion that cannot be scored on the challenger's
data (other window length or channels) is kept: promote by hand (docs/operations.md).

A failed step (bad data at validate, a crash in training or packaging) raises RetrainFailed, so the flow run
fails; the alias and the Bento are then unchanged. A rerun continues: DVC skips the stages that finished.
"""

from __future__ import annotations

from flows import PROJECT, configure_environment

if __name__ == "__main__":  # `python -m flows.retrain`: before prefect, mlflow and torch read it
    configure_environment()

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.flows import EntrypointType
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.common import (
    METRICS,
    MODEL,
    PACKAGE_REPORT,
    PREPARED,
    TRAINING_REPORT,
    logger,
    pipeline_flow,
    read_json,
    read_params,
    write_json,
)
from flows.evaluate import score_held_out
from flows.params import PipelineParams
from stagediff import StageDiff
from stagediff.data import load_prepared
from stagediff.errors import ConfigError, StageDiffError

RETRAIN_REPORT = PROJECT / "reports" / "retrain.json"
LOWER_IS_BETTER = (
    "detection",
    "detection_cnn",
    "texture",
    "horizon",
    "discriminative",
    "predictive",
    "context_fid",
    "correlational",
    "marginal",
    "autocorrelation",
    "spectral",
)
"""Metrics of stagediff.metrics that the gate can compare (boundary and copy are not lower-is-better)."""
TOLERANCE = 1e-6
"""Absolute slack of the gate: reports/metrics.json holds metrics rounded to 6 decimals."""
PROMOTED, REJECTED, UNCHANGED, FAILED = "promoted", "rejected", "unchanged", "failed"
ARTIFACT_KEY = "retrain-decision"
DEPLOYMENT = "retrain"
OUTPUT_LINES = 40
"""Last lines of dvc's output quoted in the error of a failed run."""


class RetrainFailed(StageDiffError):
    """A step of the run failed; nothing was promoted (the champion alias and the Bento are unchanged)."""

    def __init__(self, message: str, stage: str | None = None):
        super().__init__(message)
        self.stage = stage


# ------------------------------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class Check:
    """One metric of the gate: passed when challenger <= limit (limit None: no champion value to compare)."""

    metric: str
    challenger: float | None
    champion: float | None
    limit: float | None
    passed: bool


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    checks: tuple[Check, ...]


def check_metric_names(metrics: Sequence[str]) -> None:
    """Raise before any work if retrain.metrics names a metric the gate cannot compare."""
    unknown = [m for m in metrics if m not in LOWER_IS_BETTER]
    if unknown:
        raise ConfigError(
            f"retrain.metrics {unknown} cannot be compared; choose lower-is-better held-out metrics "
            f"from: {', '.join(LOWER_IS_BETTER)}"
        )


def limit(champion: float, margin: float, tolerance: float = TOLERANCE) -> float:
    """The worst value a challenger may have: ``champion + margin * |champion| + tolerance``."""
    return champion + margin * abs(champion) + tolerance


def noise(challenger_std: Any, champion_std: Any) -> float:
    """Two standard deviations of the difference of two metrics that have repeats (0 without them): a difference
    the judges' own spread explains never fails the gate."""
    if not (finite(challenger_std) and finite(champion_std)):
        return 0.0
    return 2.0 * math.sqrt(challenger_std**2 + champion_std**2)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def judge(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    metrics: Sequence[str],
    margin: float,
    tolerance: float = TOLERANCE,
) -> Verdict:
    """The gate (module docstring) on flat metric dicts; ``champion`` None: there is no champion yet."""
    checks = []
    for metric in metrics:
        new, old = challenger.get(metric), None if champion is None else champion.get(metric)
        if not finite(new):
            checks.append(Check(metric, new, old, None, False))
        elif not finite(old):
            checks.append(Check(metric, new, old, None, True))
        else:
            spread = noise(challenger.get(f"{metric}_std"), champion.get(f"{metric}_std"))
            bound = max(limit(old, margin, tolerance), old + spread + tolerance)
            checks.append(Check(metric, new, old, bound, new <= bound))
    failed = [c for c in checks if not c.passed]
    if failed:
        return Verdict(False, "; ".join(describe(c, margin) for c in failed), tuple(checks))
    if champion is None:
        return Verdict(True, "no champion yet: the first challenger is promoted", tuple(checks))
    return Verdict(
        True,
        f"every metric within {margin:.0%} of the champion's: " + "; ".join(describe(c, margin) for c in checks),
        tuple(checks),
    )


def describe(check: Check, margin: float) -> str:
    if check.challenger is None:
        return (
            f"{check.metric}: the challenger has no value: the evaluate stage skipped it "
            f"(reports/evaluation/metrics.json says why); gate on metrics the data allows (retrain.metrics)"
        )
    if not finite(check.challenger):
        return f"{check.metric}: the challenger has no finite value ({check.challenger})"
    if check.limit is None:
        return f"{check.metric} {check.challenger:.6g} (no champion value to compare)"
    relation = "<=" if check.passed else ">"
    allowance = (
        f"{margin:.0%}"
        if check.limit <= limit(check.champion, margin) + 1e-12
        else f"the judges' noise {check.limit - check.champion - TOLERANCE:.3g}"
    )
    return (
        f"{check.metric} {check.challenger:.6g} {relation} {check.limit:.6g} "
        f"(champion {check.champion:.6g} + {allowance})"
    )


def comparison_table(decision: dict[str, Any]) -> str:
    """The decision as Markdown (the Prefect artifact)."""
    champion = decision.get("champion") or {}
    lines = [
        f"# Retraining: {decision['decision']}",
        "",
        decision["reason"],
        "",
        f"Model `{decision.get('model')}`, alias `{decision.get('alias')}`; challenger version "
        f"{(decision.get('challenger') or {}).get('version')}, champion version {champion.get('version')}; "
        f"margin {decision.get('margin')}",
    ]
    if decision.get("checks"):
        lines += ["", "| metric | challenger | champion | limit | passed |", "|---|---|---|---|---|"]
        cell = lambda v: "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)  # noqa: E731
        for c in decision["checks"]:
            lines.append(
                f"| {c['metric']} | {cell(c['challenger'])} | {cell(c['champion'])} | {cell(c['limit'])} | "
                f"{'yes' if c['passed'] else '**no**'} |"
            )
    if decision.get("bento"):
        lines += ["", f"Bento `{decision['bento']}` (BentoML model `{decision['bentoml_model']}`)"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- the pipeline (dvc)


def dvc(*arguments: str, api_url: str | None = None) -> str:
    """Run ``dvc <arguments>`` in the project, its output line by line into the run's log; raise RetrainFailed
    naming the stage that failed."""
    log = logger()
    binaries = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}"}
    if api_url:
        env["PREFECT_API_URL"] = api_url  # the stages' flows report to the same server
    command = [str(binaries / "dvc"), *arguments]
    log.info("$ dvc %s", " ".join(arguments))
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    output, tail = [], deque(maxlen=OUTPUT_LINES)
    assert process.stdout is not None
    for line in process.stdout:
        log.info("dvc | %s", line.rstrip())
        output.append(line)
        tail.append(line)
    status = process.wait()
    text = "".join(output)
    if status != 0:
        stage = failed_stage(text)
        raise RetrainFailed(
            f"`dvc {' '.join(arguments)}` failed (exit {status})"
            + (f" at stage '{stage}'" if stage else "")
            + "; nothing was promoted (the champion "
            "alias and the served Bento are unchanged). Fix the cause and run again: finished stages "
            "are skipped and training resumes from checkpoints/.\n" + "".join(tail),
            stage,
        )
    return text


def failed_stage(output: str) -> str | None:
    """The stage dvc names in "failed to reproduce 'train'", else the last one it started."""
    failed = re.findall(r"failed to reproduce '([\w-]+)'", output)
    started = re.findall(r"Running stage '([\w-]+)'", output)
    return (failed or started or [None])[-1]


# ------------------------------------------------------------------------------------------------ the registry


def find_champion(client: mlflow.MlflowClient, name: str, alias: str) -> Any | None:
    """The model version holding ``alias``, or None (no such alias or model yet)."""
    try:
        registered = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = (registered.aliases or {}).get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def load_registered_generator(name: str, version: str, into: Path) -> StageDiff:
    """Download version ``version`` of registered model ``name`` (the pyfunc model of flows/train.py, which holds
    the saved generator as artifact "generator") into ``into`` and load it."""
    into.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(into)))
    return StageDiff.load(path / "artifacts" / "generator")


def incompatibility(champion: StageDiff, window: int, channels: Sequence[str]) -> str | None:
    """Why the champion cannot be scored on the challenger's held-out windows, or None."""
    if champion.config.window != window:
        return f"its window is {champion.config.window}, the challenger's {window}"
    if list(champion.metadata.get("channels", [])) != list(channels):
        return f"its channels are {list(champion.metadata.get('channels', []))}, the data's {list(channels)}"
    return None


# ---------------------------------------------------------------------------------------------- one run, in steps


def decide(
    params: PipelineParams,
    client: mlflow.MlflowClient,
    workdir: Path,
    training_report: Path = TRAINING_REPORT,
    metrics_path: Path = METRICS,
    prepared_dir: Path = PREPARED,
    model_dir: Path = MODEL,
) -> dict[str, Any]:
    """Compare the challenger (the pipeline's last trained version) with the champion; the decision as a dict.

    With a champion, both are scored here, one after the other in this process (see the module docstring: the
    judges' results depend on torch's thread count), and the challenger's reports/metrics.json is kept beside
    its scores as ``evaluate_stage_metrics``."""
    log = logger()
    name, alias, gate = params.package.name, params.retrain.alias, params.retrain
    training, metrics = read_json(training_report), read_json(metrics_path)
    challenger = {
        "version": str(training["model_version"]),
        "run_id": training["mlflow_run_id"],
        "data_hash": training["data_hash"],
        "metrics": metrics,
    }
    decision: dict[str, Any] = {
        "model": name,
        "alias": alias,
        "metrics": list(gate.metrics),
        "margin": gate.margin,
        "tolerance": TOLERANCE,
        "evaluate": asdict(params.evaluate),
        "challenger": challenger,
        "champion": None,
        "checks": [],
    }
    held = find_champion(client, name, alias)
    if held is not None and str(held.version) == challenger["version"]:
        return {
            **decision,
            "decision": UNCHANGED,
            "champion": {"version": str(held.version), "run_id": held.run_id},
            "reason": f"version {held.version} already holds alias '{alias}': no new model was trained (data and "
            "parameters unchanged since)",
        }
    champion_metrics = None
    if held is not None:
        generator = load_registered_generator(name, str(held.version), workdir / "champion-model")
        channels = load_prepared(prepared_dir).description["channels"]
        problem = incompatibility(generator, params.model.window, channels)
        decision["champion"] = {"version": str(held.version), "run_id": held.run_id}
        if problem:
            return {
                **decision,
                "decision": REJECTED,
                "reason": f"the champion (version {held.version}) cannot be scored on the challenger's held-out "
                f"data: {problem}; it is kept. Promote by hand if the change is intended "
                "(docs/operations.md)",
            }
        log.info(
            "scoring the champion (version %s) and the challenger (version %s) on the same held-out windows "
            "with %d torch threads",
            held.version,
            challenger["version"],
            torch.get_num_threads(),
        )
        champion_metrics = score_held_out(
            generator, params.evaluate, prepared_dir, workdir / "champion-scores", pictures=False
        )
        challenger_metrics = score_held_out(
            StageDiff.load(model_dir), params.evaluate, prepared_dir, workdir / "challenger-scores", pictures=False
        )
        decision["champion"]["metrics"] = champion_metrics
        challenger.update(metrics=challenger_metrics, evaluate_stage_metrics=metrics)
        decision["threads"] = torch.get_num_threads()
    verdict = judge(challenger["metrics"], champion_metrics, gate.metrics, gate.margin)
    return {
        **decision,
        "decision": PROMOTED if verdict.promote else REJECTED,
        "reason": verdict.reason,
        "checks": [asdict(c) for c in verdict.checks],
    }


def promote(
    params: PipelineParams,
    client: mlflow.MlflowClient,
    version: str,
    api_url: str | None,
    package_report: Path = PACKAGE_REPORT,
) -> dict[str, str]:
    """Package the challenger (new BentoML model and Bento), then point the alias at it."""
    dvc("repro", "package", api_url=api_url)
    package = read_json(package_report)
    if str(package["model_version"]) != version:
        raise RetrainFailed(
            f"reports/package.json describes version {package['model_version']}, not the challenger "
            f"{version}; the alias is unchanged",
            "package",
        )
    client.set_registered_model_alias(params.package.name, params.retrain.alias, version)
    return {"bento": package["bento"], "bentoml_model": package["bentoml_model"]}


def log_decision(client: mlflow.MlflowClient, decision: dict[str, Any]) -> str:
    """Record ``decision`` in MLflow: one run in the experiment "<model>-retrain" (the history), and tags on the
    challenger's training run and model version. Returns the decision run's id."""
    name, verdict = decision["model"], decision["decision"]
    challenger, champion = decision.get("challenger") or {}, decision.get("champion") or {}
    tags = {
        "retrain.decision": verdict,
        "retrain.reason": decision["reason"][:4900],
        "retrain.champion_version": champion.get("version") or "none",
        "retrain.challenger_version": challenger.get("version") or "none",
        "retrain.margin": str(decision.get("margin")),
        "retrain.time": decision["finished"],
    }
    if decision.get("stage"):
        tags["retrain.failed_stage"] = decision["stage"]
    for key in ("bento", "bentoml_model"):
        if decision.get(key):
            tags[f"retrain.{key}"] = decision[key]
    experiment = client.get_experiment_by_name(f"{name}-retrain")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(f"{name}-retrain")
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{verdict}-v{tags['retrain.challenger_version']}"
    ) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics({f"challenger_{k}": v for k, v in (challenger.get("metrics") or {}).items() if finite(v)})
        mlflow.log_metrics({f"champion_{k}": v for k, v in (champion.get("metrics") or {}).items() if finite(v)})
        mlflow.log_dict(decision, "decision.json")
        mlflow.log_text(comparison_table(decision), "decision.md")
    if verdict in (PROMOTED, REJECTED) and challenger.get("run_id"):
        set_tags_on_run(client, challenger["run_id"], tags, champion.get("metrics"))
        for key, value in tags.items():
            client.set_model_version_tag(name, challenger["version"], key, value)
    return run.info.run_id


def set_tags_on_run(
    client: mlflow.MlflowClient, run_id: str, tags: dict[str, str], champion_metrics: Mapping[str, float] | None
) -> None:
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    for key, value in (champion_metrics or {}).items():
        if finite(value):
            client.log_metric(run_id, f"retrain_champion_{key}", value)


def record(decision: dict[str, Any], report_path: Path = RETRAIN_REPORT) -> None:
    """reports/retrain.json, the MLflow records and (inside a flow run) the Prefect artifact."""
    write_json(report_path, decision)
    try:
        decision["mlflow_decision_run_id"] = log_decision(mlflow.MlflowClient(), decision)
        write_json(report_path, decision)
    finally:
        if FlowRunContext.get() is not None:  # outside a flow run there is no API to hold an artifact
            create_markdown_artifact(
                comparison_table(decision), key=ARTIFACT_KEY, description=f"retraining decision: {decision['decision']}"
            )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------- the flow


@task(name="update-data", cache_policy=NO_CACHE)
def update_data(api_url: str | None) -> None:
    """Re-read data.source (and re-stamp it): a changed URL is seen only by downloading it."""
    dvc("repro", "--force", "ingest", api_url=api_url)


@task(name="run-pipeline", cache_policy=NO_CACHE)
def run_pipeline(api_url: str | None) -> None:
    """validate, segment, train, evaluate: whatever changed (DVC skips the rest)."""
    dvc("repro", "evaluate", api_url=api_url)


compare = task(name="compare", cache_policy=NO_CACHE)(decide)
package_and_promote = task(name="promote", cache_policy=NO_CACHE)(promote)


@pipeline_flow("retrain")
def retrain_flow() -> dict[str, Any]:
    """Refresh the data, run the pipeline up to evaluate, judge the challenger against the champion, promote it
    if it passes the gate; record the decision (see the module docstring). Fails if any step fails."""
    log = logger()
    params = read_params()
    check_metric_names(params.retrain.metrics)
    api_url = PREFECT_API_URL.value()
    client = mlflow.MlflowClient()
    started = now()
    try:
        update_data(api_url)
        run_pipeline(api_url)
        with tempfile.TemporaryDirectory(prefix="retrain-") as workdir:
            decision = compare(params, client, Path(workdir))
        if decision["decision"] == PROMOTED:
            decision.update(package_and_promote(params, client, decision["challenger"]["version"], api_url))
    except Exception as error:
        stage = getattr(error, "stage", None)
        failure = {
            "decision": FAILED,
            "model": params.package.name,
            "alias": params.retrain.alias,
            "margin": params.retrain.margin,
            "stage": stage,
            "started": started,
            "finished": now(),
            "reason": f"failed{f' at stage {stage!r}' if stage else ''}: {str(error).splitlines()[0]}",
            "error": str(error),
        }
        log.error("retraining failed; the champion is unchanged: %s", failure["reason"])
        try:
            record(failure)
        except Exception as recording:  # the original error matters more
            log.error("could not record the failure: %s", recording)
        raise
    decision.update(started=started, finished=now())
    record(decision)
    log.info("decision: %s (%s)", decision["decision"], decision["reason"])
    return decision


# ----------------------------------------------------------------------------------------------------- the CLI


def serve(params: PipelineParams) -> None:
    """The deployment 'retrain/retrain' on retrain.cron, run by this process until it is stopped."""
    if not PREFECT_API_URL.value():
        raise ConfigError(
            "serving the deployment needs a Prefect server: start one (`prefect server start`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (docs/operations.md)"
        )
    # Under `python -m flows.retrain` this module is __main__, which a deployment's entrypoint must not name.
    from flows.retrain import retrain_flow as importable

    importable.serve(
        name=DEPLOYMENT,
        cron=params.retrain.cron,
        limit=1,
        entrypoint_type=EntrypointType.MODULE_PATH,
        description=f"Scheduled retraining of {params.package.name} with a quality gate (flows/retrain.py)",
    )


def run_once() -> dict[str, Any]:
    """One run now, on PREFECT_API_URL's server or a temporary local one (flows.repro.prefect_server)."""
    from flows.repro import prefect_server

    with prefect_server() as url:
        print(f"Prefect server ready at {url}", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            return retrain_flow()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("serve", "run"), help="serve: the scheduled deployment; run: once now")
    arguments = parser.parse_args(argv)
    try:
        params = read_params()
        check_metric_names(params.retrain.metrics)
        if arguments.command == "serve":
            serve(params)
            return 0
        decision = run_once()
    except StageDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"decision: {decision['decision']}: {decision['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
