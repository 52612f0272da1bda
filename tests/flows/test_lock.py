"""The committed dvc.lock matches the tree: for every stage, the hash DVC records for each code file or folder it
depends on, and the value of each parameter, equal what this checkout holds (asked of DVC itself: `dvc status`).
A stale lock (code or params.yaml changed, pipeline not re-run) would make reports/metrics.json describe a model
that the tree no longer makes. Outputs are not committed (DVC's cache holds them), so a missing output is no fault;
the one committed output, reports/metrics.json, must be the one the lock names. Fast: no stage runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
FIX = "run `make run` (the whole pipeline), then commit dvc.lock and reports/metrics.json"


def declared(stage: dict) -> tuple[set[str], set[str]]:
    """(dependency paths, output paths) of a dvc.yaml stage."""
    outs = {
        entry if isinstance(entry, str) else next(iter(entry))
        for key in ("outs", "metrics", "plots")
        for entry in stage.get(key, [])
    }
    return set(stage.get("deps", [])), outs


def stale_lock_entries(project: Path = PROJECT) -> list[str]:
    """What in ``project``'s dvc.lock does not match its tree; empty when the lock is current."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    locked = (yaml.safe_load((project / "dvc.lock").read_text()) or {}).get("stages", {})
    dvc = Path(sys.executable).with_name("dvc")
    shown = subprocess.run([str(dvc), "status", "--json"], cwd=project, capture_output=True, text=True, timeout=300)
    if shown.returncode != 0:
        raise RuntimeError(f"`dvc status --json` failed: {shown.stderr[-2000:]}")
    status = json.loads(shown.stdout or "{}")
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True).stdout.splitlines()
    )
    produced = set().union(*(declared(stage)[1] for stage in stages.values()))
    problems = [f"stage '{name}' is in dvc.lock but not in dvc.yaml" for name in locked if name not in stages]
    for name, stage in stages.items():
        if name not in locked:
            problems.append(f"stage '{name}' is not in dvc.lock")
            continue
        recorded = {entry["path"] for entry in locked[name].get("deps", [])}
        problems += [
            f"stage '{name}': {path} is a dependency in dvc.yaml but not in dvc.lock"
            for path in sorted(declared(stage)[0] - recorded)
        ]
    for name, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command"; "always changed" is the source stamp's normal state
                if entry != "always changed":
                    problems.append(f"stage '{name}': {entry}")
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # a parameters file: {key: modified/new/deleted}
                    problems += [
                        f"stage '{name}': parameter {key} in {path} is {what} since dvc.lock was written"
                        for key, what in change.items()
                    ]
                elif path not in produced:  # another stage's output: checked by that stage, absent in a checkout
                    problems.append(f"stage '{name}': {path} is {change} since dvc.lock was written")
            for path, change in entry.get("changed outs", {}).items():
                if path in tracked and change == "modified":  # reports/metrics.json: committed beside the lock
                    problems.append(f"stage '{name}': the committed {path} is not the output dvc.lock records")
    return problems


def test_the_committed_dvc_lock_matches_the_code_and_parameters_of_the_tree():
    problems = stale_lock_entries()
    assert not problems, "dvc.lock is stale:\n  - " + "\n  - ".join(problems) + f"\nFix: {FIX}."


def test_the_lock_check_names_each_stale_file_parameter_and_committed_metrics(tmp_path):
    """The check itself, on a small real DVC project: quiet on a fresh lock with absent outputs, then it names
    every kind of staleness."""

    def shell(*command: str) -> None:
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, env=environment)

    environment = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = str(Path(sys.executable).with_name("dvc"))
    stages = {
        "stamp": {"cmd": "echo 1 > stamp.txt", "always_changed": True, "outs": ["stamp.txt"]},
        "make": {"cmd": "cp code.sh out.txt", "deps": ["code.sh"], "outs": ["out.txt"]},
        "score": {
            "cmd": "echo '{\"m\": 1}' > metrics.json",
            "deps": ["out.txt"],
            "params": ["train.steps"],
            "metrics": [{"metrics.json": {"cache": False}}],
        },
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "params.yaml").write_text("train:\n  steps: 1\n")
    (tmp_path / "code.sh").write_text("echo v1\n")
    shell("git", "init", "-q")
    shell(dvc, "init", "-q")
    shell(dvc, "repro")
    shell("git", "add", "-A")
    shell(
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "lock",
    )
    for output in ("stamp.txt", "out.txt"):
        (tmp_path / output).unlink()  # as in a fresh checkout: outputs are in DVC's cache, not in git
    assert stale_lock_entries(tmp_path) == []

    (tmp_path / "code.sh").write_text("echo v2\n")
    (tmp_path / "params.yaml").write_text("train:\n  steps: 2\n")
    (tmp_path / "metrics.json").write_text('{"m": 2}\n')
    stages["make"]["deps"].append("stamp.txt")
    stages["score"]["cmd"] += " && true"
    stages["new"] = {"cmd": "cp out.txt new.txt", "deps": ["out.txt"], "outs": ["new.txt"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    assert sorted(stale_lock_entries(tmp_path)) == sorted(
        [
            "stage 'new' is not in dvc.lock",
            "stage 'make': stamp.txt is a dependency in dvc.yaml but not in dvc.lock",
            "stage 'make': code.sh is modified since dvc.lock was written",
            "stage 'score': changed command",
            "stage 'score': parameter train.steps in params.yaml is modified since dvc.lock was written",
            "stage 'score': the committed metrics.json is not the output dvc.lock records",
        ]
    )
