"""Dependencies point one way (docs/architecture.md): the library never imports orchestration, serving or
benchmark code."""

from __future__ import annotations

import ast
from pathlib import Path

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
