"""Calendar conditioning (issue 32): do long samples follow the calendar of their timestamps?

For each dataset, train the default recipe twice with the same seed and budget: with the calendar features the
data allows (the default) and with ``calendar=[]``. Each model trains on the first 90 % of the series (fit's own
split) and then draws ``--samples`` long series over the held-out last 10 %: ``start`` is the first held-out
timestamp, the length that of the held-out part. Scores, per channel and then averaged over channels: the mean
profile by hour of day and by day of week of the samples against that of the real held-out part, as the mean
absolute difference relative to the real profile's range (max - min over its bins), with the profiles' own means
left in ("level") and taken out ("shape": the cycle's amplitude and phase). The training part's profile against the
held-out one is the floor: how much the real profile itself moves between the two parts. A picture per dataset
shows the hour-of-day profiles.

Level (``--measures level``, issue 32 item 4): ``--samples`` samples that continue after the data (no ``start``: the
default) and as many unconditional ones at the same timestamps (``start`` given per sample); per channel, the
distance of each sample's mean over its first 24 steps from the data's last value, in units of the series' own
step-to-step standard deviation, averaged over samples; beside the same figure for the real series (every position
of the training part, the next 24 steps against the value before them).

Speed (``--measures speed``): seconds to sample 64 windows of the training window, each at its own start (as the
evaluation samples them), with each variant's model, alternating, ``--repeats`` times.

Models are kept in ``--models`` (one folder per dataset and variant) and reused when there.

    .venv/bin/python -m benchmarks.calendar --datasets etth1 --minutes 6 --out results/calendar/etth1.json
    .venv/bin/python -m benchmarks.calendar --datasets etth1 --variants calendar --measures level \
        --out results/calendar/level-etth1.json
    .venv/bin/python -m benchmarks.calendar --table results/calendar/etth1.json results/calendar/synthetic.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.machine import describe_machine
from stagediff import StageDiff, StageDiffConfig
from stagediff.data import load_series
from stagediff.runtime import configure_threads

PROFILES = {"hour": lambda t: t.hour, "weekday": lambda t: t.day_of_week}
VARIANTS = {"calendar": {}, "no calendar": {"calendar": []}}
LEVEL_STEPS = 24


def level_gaps(values: np.ndarray, last: np.ndarray, spread: np.ndarray) -> list[float]:
    """Per channel, mean over samples of |mean of the first LEVEL_STEPS steps - last| / spread."""
    return (np.abs(values[:, :LEVEL_STEPS].mean(axis=1) - last) / spread).mean(axis=0).round(3).tolist()


def real_level_gaps(series: np.ndarray, spread: np.ndarray) -> list[float]:
    """The same figure for the real series: at every position, the next LEVEL_STEPS steps against the value before."""
    following = np.lib.stride_tricks.sliding_window_view(series[1:], LEVEL_STEPS, axis=0).mean(axis=-1)
    return (np.abs(following - series[: len(following)]) / spread).mean(axis=0).round(3).tolist()


def profile(values: np.ndarray, times: pd.DatetimeIndex, by: str) -> np.ndarray:
    """(bins, channels) mean of values (rows, channels) per hour of day or day of week of ``times``."""
    keys = np.asarray(PROFILES[by](times))
    return np.stack([values[keys == key].mean(axis=0) for key in np.unique(keys)])


def profile_errors(real: np.ndarray, other: np.ndarray) -> dict[str, list[float]]:
    """Per channel, mean |other - real| / range(real) over the bins, with the means left in and taken out."""
    span = np.maximum(np.ptp(real, axis=0), 1e-12)
    level = np.abs(other - real).mean(axis=0) / span
    shape = np.abs((other - other.mean(axis=0)) - (real - real.mean(axis=0))).mean(axis=0) / span
    return {"level": level.round(4).tolist(), "shape": shape.round(4).tolist()}


def run(args: argparse.Namespace) -> None:
    configure_threads(args.threads)
    results = []
    for name in args.datasets:
        series = load_series(name, data_dir=args.data_dir)
        cut = series.length - int(series.length * args.validation_fraction)
        times = series.timestamps
        train, heldout = series.values[:cut], series.values[cut:]
        entry = {"dataset": name, "channels": list(series.channels), "heldout_rows": len(heldout), "scores": {}}
        real = {by: profile(heldout, times[cut:], by) for by in PROFILES}
        entry["real"] = {by: real[by].round(4).tolist() for by in PROFILES}
        entry["scores"]["training part (floor)"] = {
            by: profile_errors(real[by], profile(train, times[:cut], by)) for by in PROFILES
        }
        models: dict[str, StageDiff] = {}  # for the speed measure, timed after all variants are loaded
        starts = list(times[cut : cut + 64])
        for variant in args.variants:
            config = StageDiffConfig(
                window=args.window,
                max_minutes=args.minutes,
                validation_fraction=args.validation_fraction,
                **VARIANTS[variant],
            )
            folder = Path(args.models) / f"{name}-{args.window}-{variant.replace(' ', '-')}"
            started = time.perf_counter()
            if (folder / "config.json").exists():
                model = StageDiff.load(folder)
            else:
                model = StageDiff(config).fit(name, data_dir=args.data_dir, progress=False, check=False)
                model.save(folder)
            trained = time.perf_counter() - started
            if "level" in args.measures:
                spread = np.diff(train, axis=0).std(axis=0)
                last = series.values[-1]
                after = model.sample_times(1)[1][0]  # right after the data
                continued = model.sample_array(args.samples, 2 * args.window, seed=args.seed)
                free = model.sample_array(args.samples, 2 * args.window, seed=args.seed, start=[after] * args.samples)
                entry["level"] = {
                    "channels": list(series.channels),
                    "last": last.round(4).tolist(),
                    "continued": level_gaps(continued, last, spread),
                    "unconditional": level_gaps(free, last, spread),
                    "real": real_level_gaps(train, spread),
                }
                print(name, variant, "level", json.dumps(entry["level"]), flush=True)
            if "speed" in args.measures:
                model.sample_array(4, args.window, seed=0, start=starts[:4], progress=False)  # warm-up
                models[variant] = model
            if "profiles" not in args.measures:
                continue
            stage = model.config.effective_stage_length
            length = len(heldout) // stage * stage
            started = time.perf_counter()
            samples = model.sample_array(args.samples, length, seed=args.seed, start=times[cut])
            sampled = time.perf_counter() - started
            flat = samples.reshape(-1, samples.shape[-1])
            sample_times = pd.DatetimeIndex(np.tile(np.asarray(times[cut : cut + length]), args.samples))
            profiles = {by: profile(flat, sample_times, by) for by in PROFILES}
            entry[variant] = {by: profiles[by].round(4).tolist() for by in PROFILES}
            entry["scores"][variant] = {by: profile_errors(real[by], profiles[by]) for by in PROFILES}
            entry["scores"][variant]["calendar"] = list(model.config.calendar)
            entry["scores"][variant]["train_seconds"] = round(trained, 1)
            entry["scores"][variant]["sample_seconds"] = round(sampled, 1)
            print(name, variant, json.dumps(entry["scores"][variant]), flush=True)
        if "speed" in args.measures:
            seconds: dict[str, list[float]] = {variant: [] for variant in models}
            for _ in range(args.repeats):
                for variant, model in models.items():
                    started = time.perf_counter()
                    model.sample_array(64, args.window, seed=1, start=starts, progress=False)
                    seconds[variant].append(round(time.perf_counter() - started, 3))
            entry["seconds_per_64_windows"] = seconds
            print(name, "seconds per 64 windows", json.dumps(seconds), flush=True)
        results.append(entry)
        if args.plot and "profiles" in args.measures and len(args.variants) == len(VARIANTS):
            plot(entry, Path(args.plot) / f"calendar-{name}.png")
    record = {"machine": describe_machine(), "arguments": vars(args), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))


def plot(entry: dict, path: Path) -> None:
    """The hour-of-day profile of every channel: real held-out part, samples with and without calendar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels = entry["channels"]
    figure, axes = plt.subplots(1, len(channels), figsize=(3.2 * len(channels), 3.0), squeeze=False)
    for index, (axis, channel) in enumerate(zip(axes[0], channels)):
        for key, style in (("real", "k-"), ("calendar", "C0-"), ("no calendar", "C3--")):
            axis.plot(np.asarray(entry[key]["hour"])[:, index], style, label=key if key != "real" else "real held-out")
        axis.set_title(channel, fontsize=9)
        axis.set_xlabel("hour of day", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{entry['dataset']}: mean by hour of day over the held-out part", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def table(paths: list[str]) -> None:
    entries = [entry for path in paths for entry in json.loads(Path(path).read_text())["results"]]
    print("| dataset | profile | samples | level error | shape error |")
    print("|---|---|---|---|---|")
    for entry in entries:
        if "no calendar" in entry["scores"]:
            for by in PROFILES:
                for variant in ("calendar", "no calendar", "training part (floor)"):
                    scores = entry["scores"][variant][by]
                    level, shape = np.mean(scores["level"]), np.mean(scores["shape"])
                    print(f"| {entry['dataset']} | {by} | {variant} | {level:.3f} | {shape:.3f} |")
    print("\n| dataset | channel | last value | continuation | unconditional | real series |")
    print("|---|---|---|---|---|---|")
    for entry in entries:
        level = entry.get("level")
        for i, channel in enumerate(level["channels"] if level else []):
            print(
                f"| {entry['dataset']} | {channel} | {level['last'][i]:.4g} | {level['continued'][i]:.2f} | "
                f"{level['unconditional'][i]:.2f} | {level['real'][i]:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["etth1", "synthetic"])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--plot", help="folder for the pictures")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--measures", nargs="+", choices=["profiles", "level", "speed"], default=["profiles"])
    parser.add_argument("--repeats", type=int, default=3, help="timings per variant (--measures speed)")
    parser.add_argument("--models", default="runs/calendar", help="folder of the trained models (reused when there)")
    parser.add_argument("--out")
    parser.add_argument("--table", nargs="+", help="print the table of these result files instead")
    args = parser.parse_args()
    if args.table:
        table(args.table)
    else:
        run(args)


if __name__ == "__main__":
    main()
