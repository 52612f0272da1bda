"""The default recipe on data that no choice was tuned on (issue 31, "Data nobody tuned on").

Every default of stagediff.recipe was decided on ETTh1, stock and exchange (results/decisions.md). This script
judges ``StageDiffConfig(window=W, max_minutes=M)`` with no other setting on series that no choice looked at:

- ``synthetic-7``: the built-in synthetic process with seed 7 (``make run`` trains on seed 0);
- ``weather``: a process made here and used nowhere else: hourly temperature with daily and yearly cycles and
  AR(1) weather, relative humidity that falls as temperature rises (correlation about -0.9) and is bounded at
  100 %, wind speed with heavy-tailed gusts, and a pressure random walk; 3 years.

For each: train, then score held-out windows (the last tenth, never trained on) with every metric, and score the
training windows against the same held-out windows (each score's "real_own": the floor that drift between the two
parts sets, stagediff.evaluation).

    .venv/bin/python -m benchmarks.default_recipe --minutes 4 --n 500 --repeats 2 \
        --out results/default-recipe/unseen-128-4min.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.machine import describe_machine
from benchmarks.paper_table import BULKY
from stagediff import StageDiff, StageDiffConfig
from stagediff.data.builtin import synthetic_frame
from stagediff.evaluation import evaluate_windows, heldout_windows, window_starts
from stagediff.runtime import configure_threads

METRICS = ["discriminative", "predictive", "detection", "detection_cnn", "texture", "horizon", "copy"]


def weather_frame(years: int = 3, seed: int = 11) -> pd.DataFrame:
    """The ``weather`` series of the module docstring."""
    rng = np.random.default_rng(seed)
    hours = np.arange(years * 365 * 24, dtype=np.float64)
    daily, annual = 2 * np.pi * hours / 24, 2 * np.pi * hours / (365 * 24)
    weather = np.zeros(len(hours))
    shocks = rng.normal(0, 0.35, len(hours))
    for t in range(1, len(hours)):
        weather[t] = 0.97 * weather[t - 1] + shocks[t]
    temperature = 11 - 9 * np.cos(annual) - 4 * np.cos(daily - 0.5) + weather
    humidity = np.minimum(100.0, 72 - 2.6 * (temperature - 11) + rng.normal(0, 3, len(hours)))
    gusts = rng.standard_t(3, len(hours))
    wind = np.abs(4 + 1.5 * np.sin(daily) + np.convolve(gusts, np.ones(6) / 3, mode="same"))
    pressure = 1013 + np.cumsum(rng.normal(0, 0.3, len(hours))) * 0.2
    pressure = pressure - np.convolve(pressure - 1013, np.ones(24 * 30) / (24 * 30), mode="same")
    dates = pd.date_range("2019-01-01", periods=len(hours), freq="h", name="date")
    return pd.DataFrame(
        {"date": dates, "temperature": temperature, "humidity": humidity, "wind": wind, "pressure": pressure}
    )


DATASETS = {"synthetic-7": lambda: synthetic_frame(seed=7), "weather": weather_frame}


def heldout_part(frame: pd.DataFrame, window: int, fraction: float, n: int, seed: int):
    """(values, the held-out windows (at most ``n``, drawn with ``seed``), the training windows, the held-out
    windows' first timestamps) of one of these frames split in time, its last ``fraction`` held out."""
    values = frame.drop(columns="date").to_numpy()
    cut = len(values) - int(len(values) * fraction)
    real, training = heldout_windows(values[:cut], values[cut:], window, n, seed)
    return values, real, training, window_starts(pd.Index(frame["date"].iloc[cut:]), window, n, seed)


def run(name: str, window: int, args: argparse.Namespace) -> dict:
    frame = DATASETS[name]()
    started = time.perf_counter()
    model = StageDiff(StageDiffConfig(window=window, max_minutes=args.minutes, seed=args.seed)).fit(
        frame, "date", progress=False
    )
    train_seconds = time.perf_counter() - started
    values, real, training, starts = heldout_part(frame, window, model.config.validation_fraction, args.n, args.seed)
    out = Path(args.work) / f"{name}-{window}"
    model.save(out / "model")
    started = time.perf_counter()
    scores = evaluate_windows(
        model,
        real,
        training,
        values,
        out,
        protocol="heldout",
        starts=starts,
        repeats=args.repeats,
        seed=args.seed,
        fast=args.fast,
        metrics=args.metrics,
    )
    summary = {
        metric: {k: v for k, v in entry.items() if k not in BULKY}
        for metric, entry in scores.items()
        if isinstance(entry, dict) and "mean" in entry
    }
    result = {
        "data": name,
        "window": window,
        "minutes": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "steps": model.metadata["training"]["steps"],
        "choices": model.metadata["choices"],
        "warnings": model.metadata.get("warnings", []),
        "scores": summary,
        "evaluation_seconds": round(time.perf_counter() - started, 1),
        "machine": describe_machine(),
        "fast_judges": args.fast,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "choices"}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--windows", nargs="+", type=int, default=[128])
    parser.add_argument("--minutes", type=float, default=2.0, help="training budget per model")
    parser.add_argument("--n", type=int, default=500, help="held-out windows (and as many synthetic ones)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--metrics", nargs="+", default=METRICS, help="what to score (default: %(default)s)")
    parser.add_argument("--fast", action="store_true", help="short GRU judges (not for reported numbers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--work", default="runs/default-recipe")
    parser.add_argument("--out", type=Path, default=Path("runs/default-recipe/results.json"))
    args = parser.parse_args()
    configure_threads(args.threads)
    results = [run(name, window, args) for name in args.data for window in args.windows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "results": results}, indent=2))


if __name__ == "__main__":
    main()
