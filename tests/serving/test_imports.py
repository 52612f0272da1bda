"""Dependencies point one way (docs: guide): serving uses the library's inference surface and never the
pipeline. The few library modules beyond the top-level API that serving reaches into are listed here, so
that growing that list is a visible decision (docs/serving.md, Notes for the library)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVING = Path(__file__).resolve().parents[2] / "serving"
LIBRARY_MODULES = {
    "stagediff",
    "stagediff.artifacts",
    "stagediff.data.rules",
    "stagediff.generator",
    "stagediff.diffusion",
    "stagediff.model",
    "stagediff.runtime",
    "stagediff.settings",
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_serving_uses_the_inference_surface_and_never_the_pipeline() -> None:
    files = sorted(SERVING.glob("*.py"))
    assert len(files) >= 6
    used = {name for path in files for name in imported_modules(path)}
    assert not {name for name in used if name.split(".")[0] in {"flows", "prefect", "mlflow", "dvc"}}
    assert {name for name in used if name.split(".")[0] == "stagediff"} <= LIBRARY_MODULES
