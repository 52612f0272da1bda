"""Smoke tests of the benchmark scripts: tiny budgets, so that a broken script fails here, not hours into a run.

They read the shared benchmark files (ETTh1, stock) and fail, never skip, when those are absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# absolute: the benchmark scripts run in temporary folders
SHARED_DATASETS = Path(os.environ.get("STAGEDIFF_DATA_DIR") or ROOT.parent / "shared" / "datasets").resolve()


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # `benchmarks` from any folder
    environment = {**os.environ, "STAGEDIFF_DATA_DIR": str(SHARED_DATASETS), "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.paper_table", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )


@pytest.mark.slow
def test_paper_table_runs_a_cell_under_both_protocols_and_merges_tables(tmp_path: Path) -> None:
    tiny = ["--steps", "2", "--n", "20", "--repeats", "1", "--fast", "--work", str(tmp_path / "work")]
    run_script(
        "--datasets",
        "stock",
        "--windows",
        "24",
        *tiny,
        "--metrics",
        "discriminative",
        "predictive_real",
        "--out",
        str(tmp_path / "table.json"),
        cwd=tmp_path,
    )
    report = json.loads((tmp_path / "table.json").read_text())
    (cell,) = report["cells"]
    assert set(cell["protocols"]) == {"paper", "heldout"} and report["metrics"] == ["discriminative", "predictive_real"]
    paper, heldout = cell["protocols"]["paper"], cell["protocols"]["heldout"]
    assert paper["config"]["validation_fraction"] == 0.0 and heldout["config"]["validation_fraction"] > 0
    assert {"discriminative", "predictive_real"} <= set(paper) and "predictive" not in paper
    assert paper["train_steps"] == 2 and (tmp_path / "work" / "stock-24-full-paper" / "model").is_dir()
    run_script(
        "--ablations",
        "--windows",
        "24",
        *tiny,
        "--protocols",
        "paper",
        "--metrics",
        "discriminative",
        "--variants",
        "w/o CI",
        "w/o CD",
        "w/o Stage",
        "--out",
        str(tmp_path / "ablations.json"),
        cwd=tmp_path,
    )
    variants = [c["variant"] for c in json.loads((tmp_path / "ablations.json").read_text())["cells"]]
    assert variants == ["w/o CI", "w/o CD", "w/o Stage"]  # the full model is a cell of the main table
    merged = run_script("--table", str(tmp_path / "table.json"), str(tmp_path / "ablations.json"), cwd=tmp_path)
    rows = [line for line in merged.stdout.splitlines() if line.startswith("| stock") or line.startswith("| etth1")]
    assert len(rows) == 4 and "0.093 / 0.037" in rows[0]  # the paper's stock numbers at window 24


def test_snap_moves_each_value_to_the_nearest_value_its_channel_takes(monkeypatch):
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.variants import snap_to_values

    series = np.array([[0.0, 10.0], [0.5, 20.0], [2.0, 10.0]])
    windows = np.array([[[0.2, 14.0], [0.3, 16.0], [5.0, -3.0], [1.3, 20.0]]])
    expected = np.array([[[0.0, 10.0], [0.5, 20.0], [2.0, 10.0], [2.0, 20.0]]])
    assert np.array_equal(snap_to_values(windows, series), expected)


def test_decorrelate_keeps_each_channels_texture_and_stops_channels_moving_together(monkeypatch):
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.variants import alter, roughness

    rng = np.random.default_rng(0)
    common = rng.normal(size=(400, 64, 1))
    steps = np.concatenate([common + 0.3 * rng.normal(size=common.shape), 2 * common], axis=2)
    windows = np.cumsum(steps, axis=1)
    changed = alter(windows, "decorrelate:5", ["a", "b"], seed=0)

    def step_correlation(x):
        return np.corrcoef(np.diff(x, axis=1).reshape(-1, 2).T)[0, 1]

    assert changed.shape == windows.shape
    assert step_correlation(windows) > 0.9 and step_correlation(changed) < 0.3
    assert np.allclose(
        roughness(changed, axis=(0, 1)), roughness(windows, axis=(0, 1)), rtol=0.05
    )  # channel b stays twice as rough


@pytest.mark.slow
def test_lanes_train_with_a_budget_in_minutes_then_judge_the_model_again(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    environment = {**os.environ, "STAGEDIFF_DATA_DIR": str(SHARED_DATASETS), "PYTHON": sys.executable, "N": "20"}
    tiny = "--set d_model=8 --set feedforward=16 --set warmup_steps=2 --set diffusion_steps=50"
    subprocess.run(
        ["bash", "benchmarks/lanes.sh", "0.0001", "1", f"a stock 24 {tiny}"],
        cwd=tmp_path,
        env=environment,
        check=True,
        timeout=600,
    )
    rows = [json.loads(line) for line in (tmp_path / "runs" / "variants" / "results.jsonl").read_text().splitlines()]
    trained = [row for row in rows if "label" in row]
    assert [(row["label"], row["steps"], row["minutes"]) for row in trained] == [
        ("a", 1, 0.0001)
    ]  # a budget too small for more plans one step
    assert [(row["model"], row["seed"]) for row in rows if "model" in row] == [("runs/variants/model-a", 1)]
    failed = subprocess.run(
        ["bash", "benchmarks/lanes.sh", "0.0001", "1", f"a stock 24 {tiny}"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert failed.returncode != 0 and "runs/variants/model-a exists" in failed.stderr  # a label is never reused


def test_rare_blocks_are_the_farthest_and_common_ones_the_nearest():
    from benchmarks.conditional import blocks_key, held_out_blocks

    levels = [0.0, 0.1, -0.1, 0.2, -0.2, 3.0, -4.0, 5.0, 0.05, -6.0]  # blocks 5, 6, 7 and 9 lie far out
    values = np.repeat(np.array(levels)[:, None], 10, axis=0) + np.zeros((100, 2))
    held, distance, rare = held_out_blocks(values, [0], 10, 0.4, seed=0)
    assert set(rare) == {5, 6, 7, 9}
    assert len(held["rare"]) == 3 and set(held["rare"]) < set(rare)  # one rare block stays in training
    assert set(held["common"]) == {8, 1, 2}  # the nearest to the median, never the first block
    assert distance.argmax() == 9
    assert blocks_key(held) == blocks_key(held_out_blocks(values, [0], 10, 0.4, seed=0)[0])
