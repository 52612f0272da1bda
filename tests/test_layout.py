"""Dependencies point one way (docs/architecture.md): the library never imports orchestration, serving or
benchmark code. Importing it sets nothing in the environment and does not load torch."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from stagediff import runtime

FORBIDDEN = {"prefect", "mlflow", "bentoml", "dvc", "great_expectations", "flows", "serving", "benchmarks"}
LIBRARY = Path(__file__).resolve().parents[1] / "stagediff"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_library_imports_no_orchestration_or_serving() -> None:
    files = sorted(LIBRARY.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(LIBRARY)): sorted(imported_roots(f) & FORBIDDEN) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


RESULTS = LIBRARY.parent / "results"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_result_file_is_listed_in_the_results_index_and_every_listed_file_exists() -> None:
    """results/README.md gives each study's command, commit, machine and conclusion: so it must name every file."""
    index = RESULTS / "README.md"
    tracked = subprocess.run(
        ["git", "ls-files", "results"], cwd=LIBRARY.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    files = {Path(name).relative_to("results").as_posix() for name in tracked} - {"README.md"}
    assert files, "git ls-files results found nothing"
    targets = {
        link.split("#")[0] for link in LINK.findall(index.read_text()) if "://" not in link and not link.startswith("#")
    }
    listed = {(RESULTS / target).resolve() for target in targets}
    missing = sorted(name for name in files if (RESULTS / name).resolve() not in listed)
    assert missing == [], f"results/README.md does not list {missing}"
    absent = sorted(target for target in targets if not (RESULTS / target).exists())
    assert absent == [], f"results/README.md lists files that do not exist: {absent}"


IMPORT_PROBE = """
import json, os, sys
before = dict(os.environ)
import stagediff, stagediff.cli
loaded = "torch" in sys.modules
stagediff.StageDiff, stagediff.evaluate
changed = sorted(name for name in {*before, *os.environ} if before.get(name) != os.environ.get(name))
print(json.dumps({"torch_on_import": loaded, "torch_on_use": "torch" in sys.modules, "changed": changed}))
"""


def test_importing_the_library_sets_nothing_and_loads_torch_only_when_used() -> None:
    """The entry points set the environment (stagediff.runtime); the CLI's, before torch loads (tests/test_cli.py)."""
    environment = {name: value for name, value in os.environ.items() if name not in runtime.ENVIRONMENT}
    shown = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], env=environment, capture_output=True, text=True, timeout=300
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert json.loads(shown.stdout) == {"torch_on_import": False, "torch_on_use": True, "changed": []}
