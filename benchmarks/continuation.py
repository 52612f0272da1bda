"""Continuations (issue 32, "Level"): does a sample that continues a history start at the history's last level?

Each dataset is cut at ``--train-fraction`` (0.8) and the default recipe trains on the first part (the models of
benchmarks/conditional.py, shared through ``--models``). On the held-out part, ``--cuts`` positions are spread evenly
(the first is the end of the training part: "continuing the data"), or with ``--period training`` over the training
part (time the model saw: tells the method from the data's drift); at each, ``--draws`` samples of ``--length``
steps continue the window before it (``prefix=``, the same conditioning a sample that continues the data gets).

Per channel, in units of the series' step-to-step standard deviation (training part):

- gap: |mean of a sample's first 24 steps - the history's last value|, averaged over draws and cuts; beside it the
  real series' own gap at the same cuts (its next 24 steps against the same last value). A continuation whose gap is
  no larger than the real one's moves away from the last level no more than the series itself does. Both are
  averages over the cuts, so the table gives their ratio and the ratio's standard error (paired over cuts); a
  channel counts as "within" when the ratio is at most 1 + 2 standard errors (a perfect model's ratio is 1, give or
  take that noise).
- join: |a sample's first value - the history's last value|, against the real series' own step there: a continuation
  that jumps at the join shows there first.
- level error: |mean over draws of the first 24 steps' mean - the real next 24 steps' mean|; the real gap is the same
  error of the last value itself (persistence).

Methods (``--methods``), all on the default model and its default sampler unless named: the history replacing its
noisy counterpart at each step and nothing else ("replacement"); that and observation guidance of weight W toward
the history (``guidance-W``; the model's ``guidance``, stagediff.sampling.denoise_chunk); the default guidance
with only the last H steps of the history as the prefix (``history-H``: a shorter chunk to denoise); DDPM over every
diffusion step ("ddpm"); the default sampler on N evaluations (``steps-N``); and the model trained with known values
("trained", ``conditioning=0.5``, which also sees the history as an input: the "trained with known values" models of
benchmarks/conditional.py). All but ``guidance-W`` and ``history-H`` without guidance.

    .venv/bin/python -m benchmarks.continuation --datasets etth1 --period held-out --methods replacement guidance-8 \
        --out results/conditional/continuation-etth1-held-out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.conditional import DEFAULT, VARIANTS
from benchmarks.conditional import TRAINED as KNOWN
from benchmarks.machine import describe_machine
from benchmarks.models import load_or_train, with_config
from stagediff import StageDiff, StageDiffConfig
from stagediff.data import load_series
from stagediff.runtime import configure_threads

LEVEL_STEPS = 24
PICTURED_CUTS = 3
TRAINED = "trained"
"""The method that samples the model trained with known values (``conditioning=0.5``) as it samples by default."""


def method_options(method: str, model: StageDiff) -> tuple[dict, float, int | None]:
    """(sample_array keywords, guidance, how many of the history's last steps to keep: None for all) of a method's
    name."""
    if method in ("replacement", TRAINED):
        return {}, 0.0, None
    if method.startswith("guidance-"):
        return {}, float(method.split("-")[1]), None
    if method.startswith("history-"):  # a new model's guidance (the kept models predate the option)
        return {}, StageDiffConfig().guidance, int(method.split("-")[1])
    if method == "ddpm":
        return {"sampler": "ddpm", "steps": model.config.diffusion_steps}, 0.0, None
    if method.startswith("steps-"):
        return {"steps": int(method.split("-")[1])}, 0.0, None
    raise ValueError(f"unknown method {method!r}")


def variant_of(method: str) -> str:
    """The benchmarks.conditional model variant that a method samples."""
    return KNOWN if method == TRAINED else DEFAULT


def sample(model: StageDiff, prefix, draws: int, length: int, seed: int, method: str) -> np.ndarray:
    options, guidance, keep = method_options(method, model)
    prefix = prefix if keep is None else prefix[-keep:]
    return with_config(model, guidance=guidance).sample_array(
        draws, length, seed=seed, prefix=prefix, progress=False, **options
    )


def summary(gaps: np.ndarray, real: np.ndarray, errors: np.ndarray, joins: np.ndarray, real_joins: np.ndarray) -> dict:
    """Per channel over the cuts: gaps (cuts, channels) of the samples and of the real series, level errors."""
    ratio = gaps.mean(axis=0) / real.mean(axis=0)
    # the ratio's standard error by the delta method on the paired difference
    spread = (gaps - ratio * real).std(axis=0, ddof=1) / np.sqrt(len(gaps)) / real.mean(axis=0)
    return {
        "gap": gaps.mean(axis=0).round(3).tolist(),
        "real gap": real.mean(axis=0).round(3).tolist(),
        "ratio": ratio.round(3).tolist(),
        "ratio se": spread.round(3).tolist(),
        "within": int((ratio <= 1 + 2 * spread).sum()),
        "level error": errors.mean(axis=0).round(3).tolist(),
        "join": joins.mean(axis=0).round(3).tolist(),
        "real join": real_joins.mean(axis=0).round(3).tolist(),
        "first cut gap": gaps[0].round(3).tolist(),
        "first cut real gap": real[0].round(3).tolist(),
    }


def run(args: argparse.Namespace) -> None:
    configure_threads(args.threads)
    results = []
    for name in args.datasets:
        series = load_series(name, data_dir=args.data_dir)
        channels = list(series.channels)
        frame = pd.DataFrame(series.values, columns=channels)
        if series.time_column:
            frame.insert(0, series.time_column, series.timestamps)
        cut = int(series.length * args.train_fraction)
        train = series.values[:cut]
        spread = np.diff(train, axis=0).std(axis=0)
        models: dict[str, StageDiff] = {}
        for variant in {variant_of(method) for method in args.methods}:
            suffix, changes = VARIANTS[variant]
            folder = Path(args.models) / f"{name}-{args.window}-{args.steps}-{suffix}"
            config = StageDiffConfig(window=args.window, max_steps=args.steps, **changes)
            models[variant] = load_or_train(folder, config, frame.iloc[:cut], series.time_column)
        window = args.window
        if args.period == "held-out":
            positions = np.linspace(cut, series.length - LEVEL_STEPS, args.cuts).astype(int)
        else:  # time the model trained on: tells the method from the data's drift
            positions = np.linspace(window, cut - LEVEL_STEPS, args.cuts).astype(int)
        entry: dict = {"dataset": name, "channels": channels, "train_rows": cut, "period": args.period}
        entry["cuts"] = positions.tolist()
        following = np.stack([series.values[p : p + LEVEL_STEPS].mean(axis=0) for p in positions])
        last = series.values[positions - 1]
        real = np.abs(following - last) / spread
        real_joins = np.abs(series.values[positions] - last) / spread
        pictured: dict[str, list[np.ndarray]] = {}  # method: the draws at the first cuts, for --plot
        for method in args.methods:
            gaps, errors, joins, started = [], [], [], time.perf_counter()
            for number, position in enumerate(positions):
                prefix = frame.iloc[position - window : position]
                if not series.time_column:
                    prefix = prefix.to_numpy()
                model = models[variant_of(method)]
                values = sample(model, prefix, args.draws, args.length, args.seed + number, method)
                first = values[:, :LEVEL_STEPS].mean(axis=1)
                gaps.append((np.abs(first - last[number]) / spread).mean(axis=0))
                errors.append(np.abs(first.mean(axis=0) - following[number]) / spread)
                joins.append((np.abs(values[:, 0] - last[number]) / spread).mean(axis=0))
                if number < PICTURED_CUTS:
                    pictured.setdefault(method, []).append(values)
            entry[method] = summary(np.array(gaps), real, np.array(errors), np.array(joins), real_joins) | {
                "seconds": round(time.perf_counter() - started, 1)
            }
            print(name, method, json.dumps(entry[method]), flush=True)
        results.append(entry)
        if args.plot:
            plot(Path(args.plot) / f"continuation-{name}-{args.period}.png", name, series, positions, pictured, args)
    out = {"machine": describe_machine(), "arguments": vars(args), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print_table(results)


def plot(path: Path, name: str, series, positions: np.ndarray, pictured: dict[str, list[np.ndarray]], args) -> None:
    """Per method (rows) and cut (columns), the last 48 steps of the history and the real next steps (black) and
    five draws, of the channel whose draws joined worst without guidance (the first method's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(pictured.values()))
    worst = int(
        np.argmax(
            np.mean([np.abs(d[:, 0] - series.values[p - 1]).mean(axis=0) for d, p in zip(first, positions)], axis=0)
            / np.diff(series.values, axis=0).std(axis=0)
        )
    )
    figure, axes = plt.subplots(
        len(pictured), PICTURED_CUTS, figsize=(3.6 * PICTURED_CUTS, 2.4 * len(pictured)), squeeze=False
    )
    ahead = min(args.length, 64)
    for row, (method, draws) in enumerate(pictured.items()):
        for column, (values, position) in enumerate(zip(draws, positions)):
            axis = axes[row][column]
            real = series.values[position - 48 : position + ahead, worst]
            axis.plot(range(-48, len(real) - 48), real, "k-", lw=1.2)
            for draw in values[:5, :ahead, worst]:
                axis.plot(range(ahead), draw, lw=0.8)
            axis.axvline(-0.5, color="grey", ls=":", lw=0.8)
            axis.set_title(f"{method}, cut at step {position}", fontsize=8)
            axis.tick_params(labelsize=7)
    figure.suptitle(
        f"{name} {series.channels[worst]}: history and real continuation (black), five draws ({args.period} cuts)",
        fontsize=9,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_table(results: list[dict]) -> None:
    print("| data | cuts | method | within | gap / real gap per channel | join (real) | level error (real gap) | s |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in results:
        for method, found in entry.items():
            if not isinstance(found, dict):
                continue
            ratios = " ".join(f"{r:.2f}" for r in found["ratio"])
            print(
                f"| {entry['dataset']} | {entry['period']} | {method} | {found['within']} of {len(found['ratio'])} | "
                f"{ratios} | {np.mean(found['join']):.2f} ({np.mean(found['real join']):.2f}) | "
                f"{np.mean(found['level error']):.2f} ({np.mean(found['real gap']):.2f}) | "
                f"{found['seconds']} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["etth1"])
    parser.add_argument("--methods", nargs="+", default=["replacement", "guidance-8"])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000, help="training steps")
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--cuts", type=int, default=32)
    parser.add_argument("--period", choices=["held-out", "training"], default="held-out")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default="runs/conditional")
    parser.add_argument("--out", required=True)
    parser.add_argument("--plot", help="folder for a picture per dataset: draws of each method at the first cuts")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
