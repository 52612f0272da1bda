"""Dependencies point one way (docs: guide): the library never imports orchestration or serving code. Importing it
sets nothing in the environment and does not load torch."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from stagediff import runtime

FORBIDDEN = {"prefect", "mlflow", "bentoml", "dvc", "great_expectations", "flows", "serving"}
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
    shown = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=environment, capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert json.loads(shown.stdout) == {"torch_on_import": False, "torch_on_use": True, "changed": []}
