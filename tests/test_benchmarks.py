"""Smoke tests of the benchmark scripts: tiny budgets, so that a broken script fails here, not hours into a run.

They read the shared benchmark files (ETTh1, stock) and fail, never skip, when those are absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("STAGEDIFF_DATA_DIR") or ROOT.parent / "shared" / "datasets")


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "STAGEDIFF_DATA_DIR": str(SHARED_DATASETS)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), *args], cwd=cwd,
                          env=environment, capture_output=True, text=True, check=True, timeout=600)


@pytest.mark.slow
def test_paper_table_runs_a_cell_under_both_protocols_and_merges_tables(tmp_path: Path) -> None:
    tiny = ["--steps", "2", "--n", "20", "--repeats", "1", "--fast", "--work", str(tmp_path / "work")]
    run_script("--datasets", "stock", "--windows", "24", *tiny, "--metrics", "discriminative", "predictive_real",
               "--out", str(tmp_path / "table.json"), cwd=tmp_path)
    report = json.loads((tmp_path / "table.json").read_text())
    (cell,) = report["cells"]
    assert set(cell["protocols"]) == {"paper", "heldout"} and report["metrics"] == ["discriminative", "predictive_real"]
    paper, heldout = cell["protocols"]["paper"], cell["protocols"]["heldout"]
    assert paper["config"]["validation_fraction"] == 0.0 and heldout["config"]["validation_fraction"] > 0
    assert {"discriminative", "predictive_real"} <= set(paper) and "predictive" not in paper
    assert paper["train_steps"] == 2 and (tmp_path / "work" / "stock-24-full-paper" / "model").is_dir()
    run_script("--ablations", "--windows", "24", *tiny, "--protocols", "paper", "--metrics", "discriminative",
               "--variants", "w/o CI", "w/o CD", "w/o Stage", "--out", str(tmp_path / "ablations.json"), cwd=tmp_path)
    variants = [c["variant"] for c in json.loads((tmp_path / "ablations.json").read_text())["cells"]]
    assert variants == ["w/o CI", "w/o CD", "w/o Stage"]  # the full model is a cell of the main table
    merged = run_script("--table", str(tmp_path / "table.json"), str(tmp_path / "ablations.json"), cwd=tmp_path)
    rows = [line for line in merged.stdout.splitlines() if line.startswith("| stock") or line.startswith("| etth1")]
    assert len(rows) == 4 and "0.093 / 0.037" in rows[0]  # the paper's stock numbers at window 24


def test_cell_config_applies_the_cell_settings_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from paper_table import cell_config

    table = yaml.safe_load((ROOT / "configs" / "benchmarks.yaml").read_text())
    assert table["cells"], "configs/benchmarks.yaml has no per-cell settings to check"
    for dataset, windows in table["cells"].items():
        for window, settings in windows.items():
            config = cell_config(dataset, window, 7, validation_fraction=0.0)
            window_settings = {k: v for k, v in table["windows"].get(window, {}).items() if k not in settings}
            for name, value in {**window_settings, **settings}.items():
                expected = tuple(value) if isinstance(value, list) else value
                assert getattr(config, name) == expected, (dataset, window, name)
            assert (config.window, config.max_steps, config.validation_fraction) == (window, 7, 0.0)
    etth1 = cell_config("etth1", 128, 7)  # no cell entry: the window's settings and the library defaults
    assert etth1.skip_parametrization is False and etth1.d_model == table["windows"][128]["d_model"]
