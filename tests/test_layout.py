"""Dependencies point one way (docs/architecture.md): the library never imports orchestration, serving or
benchmark code."""

from __future__ import annotations

import ast
import re
import subprocess
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


RESULTS = LIBRARY.parent / "results"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_result_file_is_listed_in_the_results_index_and_every_listed_file_exists() -> None:
    """results/README.md gives each study's command, commit, machine and conclusion: so it must name every file."""
    index = RESULTS / "README.md"
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=LIBRARY.parent, capture_output=True, text=True,
                             check=True).stdout.split()
    files = {Path(name).relative_to("results").as_posix() for name in tracked} - {"README.md"}
    assert files, "git ls-files results found nothing"
    targets = {link.split("#")[0] for link in LINK.findall(index.read_text())
               if "://" not in link and not link.startswith("#")}
    listed = {(RESULTS / target).resolve() for target in targets}
    missing = sorted(name for name in files if (RESULTS / name).resolve() not in listed)
    assert missing == [], f"results/README.md does not list {missing}"
    absent = sorted(target for target in targets if not (RESULTS / target).exists())
    assert absent == [], f"results/README.md lists files that do not exist: {absent}"
