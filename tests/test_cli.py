"""The `stagediff` command line end to end, in subprocesses, on the built-in data and the shared ETTh1 file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

TINY = [
    "--window",
    "32",
    "--max-steps",
    "4",
    "--set",
    "stage_length=8",
    "--set",
    "context=2",
    "--set",
    "patch_length=4",
    "--set",
    "patch_stride=2",
    "--set",
    "pool_kernels=[5, 1]",
    "--set",
    "d_model=16",
    "--set",
    "heads=2",
    "--set",
    "feedforward=32",
    "--set",
    "diffusion_steps=20",
    "--set",
    "sampling_steps=5",
    "--set",
    "batch_size=8",
    "--set",
    "checkpoint_every=2",
]


def shared_datasets() -> Path:
    return Path(os.environ.get("STAGEDIFF_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


def stagediff(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**(os.environ if env is None else env), "STAGEDIFF_DATA_DIR": str(shared_datasets())}
    result = subprocess.run(
        [sys.executable, "-m", "stagediff.cli", "--threads", "1", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_round_trip_on_synthetic(tmp_path: Path) -> None:
    model = tmp_path / "model"
    stagediff("fit", "synthetic", *TINY, "--out", str(model), "--no-progress")
    info = json.loads(stagediff("info", str(model)).stdout)
    assert info["config"]["window"] == 32 and info["metadata"]["channels"]
    out = tmp_path / "samples.parquet"
    stagediff(
        "sample",
        str(model),
        "--n",
        "2",
        "--length",
        "100",
        "--seed",
        "3",
        "--out",
        str(out),
        "--plot",
        str(tmp_path / "s.png"),
        "--plot-data",
        "synthetic",
        "--no-progress",
    )
    frame = pd.read_parquet(out)
    assert list(frame.columns[:2]) == ["sample", "date"]
    assert frame.shape == (200, 2 + len(info["metadata"]["channels"]))
    assert (tmp_path / "s.png").stat().st_size > 10_000
    again = tmp_path / "again.csv"
    stagediff("sample", str(model), "--n", "2", "--length", "100", "--seed", "3", "--out", str(again), "--no-progress")
    pd.testing.assert_frame_equal(pd.read_csv(again, parse_dates=["date"]), frame, check_dtype=False)


@pytest.mark.slow
def test_openmp_waits_passively_unless_told_otherwise(tmp_path: Path) -> None:
    """The command sets OMP_WAIT_POLICY=PASSIVE where it is not set, before torch loads (stagediff.runtime), as
    torch's OpenMP runtime reports when it starts (OMP_DISPLAY_ENV; GNU libgomp spins 0 times before it sleeps when
    passive, 300,000 times when the variable is unset)."""
    unset = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    model = tmp_path / "model"
    fitted = stagediff(
        "fit", "synthetic", *TINY, "--out", str(model), "--no-progress", env={**unset, "OMP_DISPLAY_ENV": "VERBOSE"}
    )
    if "GOMP_SPINCOUNT" not in fitted.stderr:
        pytest.skip("torch's OpenMP runtime here is not GNU libgomp, whose report this reads")
    assert "GOMP_SPINCOUNT = '0'" in fitted.stderr and "GOMP_SPINCOUNT = '300000'" not in fitted.stderr
    active = stagediff("info", str(model), env={**unset, "OMP_DISPLAY_ENV": "VERBOSE", "OMP_WAIT_POLICY": "ACTIVE"})
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in active.stderr and json.loads(active.stdout)["config"]["window"] == 32


@pytest.mark.slow
def test_round_trip_on_shared_etth1_with_prefix(tmp_path: Path) -> None:
    source = shared_datasets() / "ETTh1.csv"
    assert source.is_file(), f"the shared benchmark file {source} is missing (set STAGEDIFF_DATA_DIR)"
    model = tmp_path / "model"
    stagediff("fit", str(source), "--time-column", "date", *TINY, "--out", str(model), "--no-progress")
    prefix = tmp_path / "prefix.csv"
    pd.read_csv(source).iloc[1000:1040].to_csv(prefix, index=False)
    out = tmp_path / "continued.csv"
    stagediff(
        "sample", str(model), "--n", "1", "--length", "64", "--prefix", str(prefix), "--out", str(out), "--no-progress"
    )
    frame = pd.read_csv(out, parse_dates=["date"])
    assert frame["date"].iloc[0] == pd.Timestamp(pd.read_csv(prefix)["date"].iloc[-1]) + pd.Timedelta(hours=1)
    assert list(frame.columns[2:]) == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


@pytest.mark.slow
def test_known_channels_and_imputation_from_the_command_line(tmp_path: Path) -> None:
    source = shared_datasets() / "ETTh1.csv"
    assert source.is_file(), f"the shared benchmark file {source} is missing (set STAGEDIFF_DATA_DIR)"
    real = pd.read_csv(source).iloc[2000:2048].reset_index(drop=True)
    data = tmp_path / "gappy.csv"
    with_gaps = pd.read_csv(source).iloc[:1500]
    with_gaps.loc[200:260, "OT"] = None
    with_gaps.to_csv(data, index=False)
    model = tmp_path / "model"
    refused = stagediff("fit", str(data), "--time-column", "date", *TINY, "--out", str(model), check=False)
    assert refused.returncode == 2 and "missing" in refused.stderr and not model.exists()
    stagediff(
        "fit", str(data), "--time-column", "date", *TINY, "--missing", "mask", "--out", str(model), "--no-progress"
    )
    known = tmp_path / "known.csv"
    real[["date", "OT"]].to_csv(known, index=False)
    out = tmp_path / "given-ot.csv"
    stagediff("sample", str(model), "--n", "2", "--known", str(known), "--out", str(out), "--no-progress")
    frame = pd.read_csv(out)
    assert frame.shape == (96, 9) and frame["date"].tolist() == real["date"].tolist() * 2  # --length: its rows
    assert frame["OT"].tolist() == real["OT"].tolist() * 2
    gapped = real.copy()
    gapped.loc[10:30, ["HUFL", "OT"]] = None
    holes = tmp_path / "holes.csv"
    gapped.to_csv(holes, index=False)
    filled = tmp_path / "filled.parquet"
    stagediff("impute", str(model), str(holes), "--n", "3", "--out", str(filled), "--plot", str(tmp_path / "f.png"))
    draws = pd.read_parquet(filled)
    assert len(draws) == 3 * 48 and draws[["HUFL", "OT"]].notna().all().all()
    kept = gapped.notna()
    for _, draw in draws.groupby("sample"):
        values = draw.drop(columns=["sample", "date"]).reset_index(drop=True)
        assert values[kept.drop(columns="date")].equals(gapped.drop(columns="date")[kept.drop(columns="date")])
    bad = stagediff("impute", str(model), str(known), "--out", str(tmp_path / "x.csv"), check=False)
    assert bad.returncode == 2 and "lacks the channel column(s)" in bad.stderr
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_fit_with_the_default_recipe_a_budget_and_a_preset(tmp_path: Path) -> None:
    small = ["--set", "d_model=8", "--set", "diffusion_steps=20", "--set", "sampling_steps=5", "--no-progress"]
    result = stagediff("fit", "synthetic", "--window", "24", "--minutes", "0.05", *small, "--out", str(tmp_path / "m"))
    assert "chose channel_independent = " in result.stdout and "chose range_margin = " in result.stdout
    info = json.loads(stagediff("info", str(tmp_path / "m")).stdout)
    config, training = info["config"], info["metadata"]["training"]
    assert (config["stage_length"], config["max_minutes"]) == (8, None)  # the window's stages; the budget planned
    assert config["max_steps"] == training["budget"]["planned_steps"] == training["steps"]
    assert set(info["metadata"]["choices"]) == {"calendar", "channel_independent", "range_margin"}
    stagediff("fit", "stock", "--preset", "stock-24", "--max-steps", "2", *small, "--out", str(tmp_path / "p"))
    preset = json.loads(stagediff("info", str(tmp_path / "p")).stdout)
    assert (
        preset["config"]["channel_independent"] is True and "channel_independent" not in preset["metadata"]["choices"]
    )


def test_bad_input_fails_with_a_named_error_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"date": pd.date_range("2020", periods=100, freq="h"), "a": range(100), "label": ["x"] * 100}).to_csv(
        bad, index=False
    )
    result = stagediff("fit", str(bad), "--time-column", "date", *TINY, "--out", str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "label" in result.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "m-checkpoints").exists()
    result = stagediff("fit", "synthetic", "--window", "7", "--out", str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "cannot be cut into 3 or more stages" in result.stderr
    result = stagediff("fit", "synthetic", "--preset", "etth9", "--out", str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "unknown preset 'etth9'" in result.stderr
    result = stagediff("fit", "synthetic", "--set", "no_such_key=1", "--out", str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "no_such_key" in result.stderr
    result = stagediff("sample", str(tmp_path / "missing"), "--out", str(tmp_path / "s.csv"), check=False)
    assert result.returncode == 2 and "no model folder" in result.stderr


@pytest.mark.slow
def test_fit_again_into_the_same_folder_options_after_the_command_and_chosen_columns(tmp_path: Path) -> None:
    model = tmp_path / "model"
    small = [*TINY, "--no-progress", "--out", str(model)]
    stagediff("fit", "synthetic", *small, "--columns", "load, solar", "--threads", "1", "-v")
    assert not (tmp_path / "model-checkpoints").exists()  # served only to resume this fit
    # again, with another configuration, into the same folder
    result = stagediff("fit", "synthetic", *small, "--columns", "solar,load", "--stage-length", "16")
    assert "model saved" in result.stdout
    info = json.loads(stagediff("info", str(model)).stdout)
    assert info["metadata"]["channels"] == ["solar", "load"] and info["config"]["stage_length"] == 16
    # a reader that leaves early (`stagediff info DIR | head -1`) gets no traceback
    reader = subprocess.Popen(
        [sys.executable, "-m", "stagediff.cli", "info", str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert reader.stdout.read(1) == b"{"
    reader.stdout.close()
    assert reader.stderr.read() == b"" and reader.wait(timeout=60) in (0, 141)


def test_bad_options_and_data_get_one_line_that_names_the_problem(tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "m")]
    if not torch.cuda.is_available():
        result = stagediff("fit", "synthetic", "--device", "cuda", *out, check=False)
        assert result.returncode == 2 and "device 'cuda' asked for, but" in result.stderr
        assert "Traceback" not in result.stderr
    header_only = tmp_path / "empty.csv"
    header_only.write_text("date,a,b\n")
    result = stagediff("fit", str(header_only), "--time-column", "date", *out, check=False)
    assert result.returncode == 2 and "the data has no rows" in result.stderr
    result = stagediff("fit", "synthetic", "--columns", "load,nope", *out, check=False)
    assert result.returncode == 2 and "[nope] named in columns are not in the data" in result.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "m-checkpoints").exists()


@pytest.mark.slow
def test_evaluate_writes_metrics_and_pictures(tmp_path: Path) -> None:
    model = tmp_path / "model"
    stagediff("fit", "synthetic", *TINY, "--set", "validation_fraction=0.2", "--out", str(model), "--no-progress")
    out = tmp_path / "evaluation"
    result = stagediff(
        "evaluate",
        str(model),
        "--data",
        "synthetic",
        "--time-column",
        "date",
        "--n",
        "40",
        "--repeats",
        "2",
        "--fast",
        "--out",
        str(out),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    expected = {
        "discriminative",
        "predictive",
        "predictive_real",
        "context_fid",
        "correlational",
        "marginal",
        "autocorrelation",
        "spectral",
        "boundary",
        "copy",
    }
    assert expected <= set(metrics) and metrics["settings"]["protocol"] == "heldout"
    assert len(metrics["discriminative"]["values"]) == 2 and metrics["settings"]["fast"] is True
    for picture in ("pca.png", "tsne.png", "overlays.png", "autocorrelation.png", "long_sample.png"):
        assert (out / picture).stat().st_size > 5_000, picture
    assert "discriminative" in result.stdout
    bad = stagediff(
        "evaluate",
        str(model),
        "--data",
        "synthetic",
        "--protocol",
        "paper",
        "--n",
        "3",
        "--out",
        str(tmp_path / "bad"),
        check=False,
    )
    assert bad.returncode == 2 and "at least 10" in bad.stderr and not (tmp_path / "bad").exists()
