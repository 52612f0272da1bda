"""Quick quality probes of configuration variants (how the per-window benchmark settings were chosen).

    # train one variant of a benchmark cell (its preset, stagediff.recipe.PRESETS, plus --set changes), save it,
    # and score 500 synthetic windows per sampler against 500 real ones (paper protocol, one judge)
    .venv/bin/python -m benchmarks.variants train etth1 128 3000 --label d64 --set validation_fraction=0.0 \\
        --set d_model=64 --set feedforward=128 --samplers ddim ddpm
    # the same with a budget of minutes of training on this machine (CUDA when present) instead of steps
    .venv/bin/python -m benchmarks.variants train etth1 128 --minutes 60 --label d64-1h --set validation_fraction=0.0
    # score a saved variant again with other seeds, more windows and repeats of the judge
    .venv/bin/python -m benchmarks.variants judge runs/variants/model-d64 etth1 --n 1000 --repeats 2 --seed 1 \\
        --samplers ddpm ddim
    # the same, on windows cut from the middle of longer samples (no sample's first or last stage)
    .venv/bin/python -m benchmarks.variants judge runs/variants/model-d64 etth1 --length 192 --start 32 --samplers ddpm
    # diagnostics: each channel's within-window spread matched to the real windows', or each value moved to the
    # nearest one the dataset takes (its recording resolution)
    .venv/bin/python -m benchmarks.variants judge runs/variants/model-d64 etth1 --match-spread --samplers ddpm
    .venv/bin/python -m benchmarks.variants judge runs/variants/model-d64 etth1 --snap --samplers ddpm
    # the predictive score and its real floor with a chosen sampler (`stagediff evaluate` uses the model's own)
    .venv/bin/python -m benchmarks.variants judge runs/variants/model-d64 etth1 --n 1000 --repeats 1 --seed 0 \
        --samplers ddpm --metrics predictive predictive_real
    # roughness of the denoiser's x_0 estimate at each noise level, on real windows, overall and per channel
    # (is detail lost in the network?)
    .venv/bin/python -m benchmarks.variants denoise runs/variants/model-d64 etth1
    # per channel: roughness of 64 real and 64 synthetic windows, the correlation between channels of their
    # step-to-step changes, and the share of steps where High < Low
    .venv/bin/python -m benchmarks.variants channels runs/paper-table/stock-256-full-paper/model stock
    # per channel: mean autocorrelation at lags 1-120 of 200 real and 200 DDPM windows (long-range memory)
    .venv/bin/python -m benchmarks.variants lags runs/variants/model-etth1-256-s5000-skip etth1
    # copying under the paper protocol (trained on every window, none held out): distance of 300 DDPM windows to
    # their nearest training window against that of 300 real windows to their nearest non-overlapping one
    # (the library's detector, as `stagediff evaluate --protocol paper --metrics copy`, without the pictures)
    .venv/bin/python -m benchmarks.variants nearest runs/variants/model-d64 etth1
    # which simple per-window feature (level, spread, autocorrelation, step size, step kurtosis, step correlation
    # between channels) tells 1,000 real from 1,000 DDPM windows, alone (AUC) and by kind (boosted trees)
    .venv/bin/python -m benchmarks.variants features runs/variants/model-etth1-128-s10000 etth1
    # what the discriminative judge can see at all: real windows against real windows changed in one known way
    .venv/bin/python -m benchmarks.variants sensitivity etth1 128 same smooth:3 spread:HUFL,HULL,MUFL,MULL:0.9

Roughness: mean |x[t+1] - x[t]|, with each channel min-max scaled on the real windows (``train``) or in the
model's scaled units [-1, 1] (``denoise``). Results are appended to runs/variants/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe_machine
from benchmarks.paper_table import parse_settings
from benchmarks.windows import training_starts
from stagediff import StageDiff
from stagediff.data import load_series, sliding_windows
from stagediff.diffusion import NoiseSchedule
from stagediff.evaluation import protocol_windows
from stagediff.metrics import evaluate
from stagediff.metrics.autocorrelation import mean_autocorrelation
from stagediff.metrics.inputs import subsample
from stagediff.model import moving_average
from stagediff.recipe import cell_config
from stagediff.runtime import configure_threads

WORK = Path("runs/variants")
LAGS = [1, 2, 6, 12, 24, 48, 72, 96, 120]  # `lags`: hourly data, up to five days
SHORT = {"discriminative": "disc", "predictive": "pred", "predictive_real": "pred_real"}  # keys in results.jsonl


def roughness(
    windows: np.ndarray,
    low: np.ndarray | float = 0.0,
    high: np.ndarray | float = 1.0,
    axis: tuple[int, ...] | None = None,
):
    """Mean |x[t+1] - x[t]| of (n, length, channels) windows min-max scaled by ``low``/``high`` (default: as
    they are); one number, or one per channel with ``axis=(0, 1)``."""
    steps = np.abs(np.diff((windows - low) / (high - low), axis=1))
    return float(steps.mean(dtype=np.float64)) if axis is None else steps.mean(axis=axis, dtype=np.float64)


def train(args: argparse.Namespace) -> dict:
    budget = {"max_minutes": args.minutes} if args.minutes else {}
    config = cell_config(args.dataset, args.window, args.steps or 1, checkpoint_every=10**6, **budget, **args.set)
    started = time.perf_counter()
    model = StageDiff(config).fit(args.dataset, progress=False)
    seconds = time.perf_counter() - started
    model.save(WORK / f"model-{args.label}")
    real = protocol_windows(model, args.dataset, "paper", args.n, 0)[0]
    flat = real.reshape(-1, real.shape[-1])
    low, high = flat.min(0), flat.max(0)
    result = {
        "label": args.label,
        "dataset": args.dataset,
        "window": args.window,
        "steps": model.config.max_steps,
        "minutes": args.minutes,
        "changes": args.set,
        "train_s": round(seconds),
        "final_loss": float(np.mean(model.losses[-50:])),
        "rough_real": roughness(real, low, high),
        "machine": describe_machine(),
    }
    for sampler in args.samplers:
        synthetic = model.sample_array(
            args.n, seed=0, sampler=sampler, start=training_starts(model, args.n), progress=False
        )
        scores = evaluate(real, synthetic, metrics=["discriminative", "marginal", "autocorrelation"], repeats=1)
        result[sampler] = {
            "disc": scores["discriminative"]["mean"],
            "marg": scores["marginal"]["mean"],
            "acf": scores["autocorrelation"]["mean"],
            "rough": roughness(synthetic, low, high),
        }
    return result


def windows_from_longer(
    model: StageDiff, n: int, seed: int, sampler: str, length: int | None, start: int
) -> np.ndarray:
    """n synthetic windows, each cut at ``start`` from a sample of ``length`` steps (default: the window itself),
    so that a window need not begin or end where a sample does."""
    window = model.config.window
    if start < 0 or start + window > (length or window):
        raise SystemExit(f"--start {start} leaves no full window of {window} in a sample of {length or window} steps")
    starts = training_starts(model, n, seed)
    return model.sample_array(n, length=length or window, seed=seed, sampler=sampler, start=starts, progress=False)[
        :, start : start + window
    ]


def snap_to_values(windows: np.ndarray, series: np.ndarray) -> np.ndarray:
    """(n, length, channels) windows with each value moved to the nearest value its channel takes in the
    (rows, channels) series: the series' own resolution (ETTh1 is recorded in steps of about 0.067, 0.036 and
    0.031 for the loads and 0.070 for OT, so 4-14 % of its step changes are exactly 0)."""
    snapped = np.empty_like(windows)
    for channel in range(series.shape[1]):
        grid = np.unique(series[:, channel])
        upper = np.clip(np.searchsorted(grid, windows[..., channel]), 1, len(grid) - 1)
        below, above = grid[upper - 1], grid[upper]
        snapped[..., channel] = np.where(windows[..., channel] - below < above - windows[..., channel], below, above)
    return snapped


def judge(args: argparse.Namespace) -> dict:
    model = StageDiff.load(args.model, device=args.device)
    real = protocol_windows(model, args.dataset, "paper", args.n, args.seed)[0]
    result = {"model": str(args.model), "n": args.n, "seed": args.seed, "machine": describe_machine()}
    if args.length:
        result.update(length=args.length, start=args.start)
    if args.match_spread:
        result["match_spread"] = True
    if args.snap:
        result["snap"] = True
        series = np.asarray(load_series(args.dataset).values, dtype=np.float64)
    for sampler in args.samplers:
        synthetic = windows_from_longer(model, args.n, args.seed, sampler, args.length, args.start)
        if args.match_spread:  # a diagnostic, not a generator feature: is the within-window spread what the judge sees?
            mean = synthetic.mean(1, keepdims=True)
            synthetic = mean + real.std(1).mean(0) / synthetic.std(1).mean(0) * (synthetic - mean)
        if args.snap:  # a diagnostic too: is the data's recording resolution (steps of exactly 0) what the judge sees?
            synthetic = snap_to_values(synthetic, series)
        scores = evaluate(real, synthetic, metrics=args.metrics, repeats=args.repeats, seed=args.seed)
        result[sampler] = {SHORT.get(name, name): scores[name]["values"] for name in args.metrics}
    return result


def denoise(args: argparse.Namespace) -> dict:
    model = StageDiff.load(args.model)
    network = model.require_trained().eval()
    windows = sliding_windows(model.scaler.transform(load_series(args.dataset).values), model.config.window)
    x0 = torch.tensor(windows[np.random.default_rng(0).choice(len(windows), 128, replace=False)], dtype=torch.float32)
    schedule = NoiseSchedule.create(model.config.diffusion_steps, model.config.schedule)
    generator = torch.Generator().manual_seed(0)
    result = {
        "model": str(args.model),
        "rough_real": roughness(x0.numpy()),
        "rough_real_per_channel": np.round(roughness(x0.numpy(), axis=(0, 1)), 4).tolist(),
        "steps": [],
    }
    for k in [0, 2, 5, 10, 20, 40, 80, 120, 160, model.config.diffusion_steps - 1]:
        ks = torch.full((len(x0),), k)
        x_k = schedule.add_noise(x0, torch.randn(x0.shape, generator=generator), ks)
        with torch.no_grad():
            estimate = network(x_k, ks)
        result["steps"].append(
            {
                "k": k,
                "abar": round(float(schedule.alphas_cumprod[k]), 4),
                "mse": float(((estimate - x0) ** 2).mean()),
                "rough_estimate": roughness(estimate.numpy()),
                "rough_estimate_per_channel": np.round(roughness(estimate.numpy(), axis=(0, 1)), 4).tolist(),
            }
        )
    return result


def channels(args: argparse.Namespace) -> dict:
    model = StageDiff.load(args.model)
    real, _, values, starts = protocol_windows(model, args.dataset, "paper", 64, 0)
    low, high = values.min(0), values.max(0)
    names = list(model.metadata["channels"])
    result = {"model": str(args.model), "channels": names}
    synthetic = model.sample_array(64, seed=0, start=None if starts is None else list(starts), progress=False)
    for name, windows in (("real", real), ("synthetic", synthetic)):
        result[name] = {
            "roughness": np.round(roughness(windows, low, high, axis=(0, 1)), 4).tolist(),
            "mean": ((windows - low) / (high - low)).mean(axis=(0, 1)).round(3).tolist(),
            "step_correlation": np.corrcoef(np.diff(windows, axis=1).reshape(-1, len(names)).T).round(2).tolist(),
        }
        if {"High", "Low"} <= set(names):
            result[name]["high_below_low"] = float(
                (windows[..., names.index("High")] < windows[..., names.index("Low")]).mean()
            )
    return result


def nearest(args: argparse.Namespace) -> dict:
    """Copying under the paper protocol: the library's copy detector without held-out windows
    (:func:`stagediff.metrics.series_copy_detector`, the detector of `stagediff evaluate --protocol paper
    --metrics copy`) on ``n`` DDPM windows, without the pictures; scaled on every window of the series (the CLI
    scales on its real subsample)."""
    model = StageDiff.load(args.model)
    training = protocol_windows(model, args.dataset, "paper", 1, 0)[1]
    synthetic = model.sample_array(args.n, seed=0, sampler="ddpm", start=training_starts(model, args.n), progress=False)
    found = evaluate(training, synthetic, metrics=["copy"], training=training, real_in_training=True)["copy"]
    return {
        "model": str(args.model),
        "n": args.n,
        "ratio": found["mean"],
        **{key: found[key] for key in ("copy_fraction", "median_to_training", "median_real_to_training")},
    }


def lags(args: argparse.Namespace) -> dict:
    """Mean autocorrelation per channel at a few lags, of 200 real and 200 DDPM windows: does a sample keep its
    daily cycle and level over the window? Also each channel's mean within-window std and the spread of the
    window means."""
    model = StageDiff.load(args.model)
    real, _, _, starts = protocol_windows(model, args.dataset, "paper", 200, 0)
    synthetic = model.sample_array(
        200, seed=0, sampler="ddpm", start=None if starts is None else list(starts), progress=False
    )
    result = {"model": str(args.model), "channels": list(model.metadata["channels"]), "lags": LAGS}
    for name, windows in (("real", real), ("synthetic", synthetic)):
        correlation = mean_autocorrelation(windows, max(LAGS))[np.array(LAGS) - 1]  # (lags, channels)
        result[name] = {
            "acf": correlation.T.round(2).tolist(),
            "window_std": windows.std(1).mean(0).round(2).tolist(),
            "window_mean_spread": windows.mean(1).std(0).round(2).tolist(),
        }
    return result


def window_features(windows: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Simple per-window features, one value per window each: per channel the level, spread, lag-1
    autocorrelation, mean and largest step change and the kurtosis of the step changes; per channel pair the
    correlation of the step changes."""
    steps = np.diff(windows, axis=1)
    centred = windows - windows.mean(1, keepdims=True)
    variance = (centred**2).mean(1) + 1e-12
    step_centred = steps - steps.mean(1, keepdims=True)
    step_variance = (step_centred**2).mean(1) + 1e-12
    per_channel = {
        "mean": windows.mean(1),
        "std": windows.std(1),
        "acf1": (centred[:, 1:] * centred[:, :-1]).mean(1) / variance,
        "step": np.abs(steps).mean(1),
        "max_step": np.abs(steps).max(1),
        "step_kurtosis": (step_centred**4).mean(1) / step_variance**2,
    }
    result = {f"{name} {kind}": values[:, c] for kind, values in per_channel.items() for c, name in enumerate(names)}
    unit = step_centred / np.sqrt(step_variance)[:, None, :]
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            result[f"{names[a]}-{names[b]} step_corr"] = (unit[..., a] * unit[..., b]).mean(1)
    return result


def features(args: argparse.Namespace) -> dict:
    """Which simple feature gives synthetic windows away? Per feature, the AUC of telling 1,000 real from 1,000
    DDPM windows by that feature alone (0.5: no use); per kind of feature and for all together, the score
    |0.5 - accuracy| of boosted trees (5-fold cross-validation), comparable with the discriminative score."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_score

    model = StageDiff.load(args.model)
    real, _, values, _ = protocol_windows(model, args.dataset, "paper", args.n, 0)
    synthetic = windows_from_longer(model, args.n, 0, "ddpm", args.length, args.start)
    low, high = values.min(0), values.max(0)
    names = list(model.metadata["channels"])
    of_real = window_features((real - low) / (high - low), names)
    of_synthetic = window_features((synthetic - low) / (high - low), names)
    table = {key: np.r_[of_real[key], of_synthetic[key]] for key in of_real}
    is_real = np.r_[np.ones(len(real)), np.zeros(len(synthetic))]
    auc = {key: round(float(roc_auc_score(is_real, column)), 3) for key, column in table.items()}

    def score(keys: list[str]) -> float:
        accuracy = cross_val_score(
            HistGradientBoostingClassifier(random_state=0), np.stack([table[k] for k in keys], 1), is_real, cv=5
        ).mean()
        return round(abs(0.5 - float(accuracy)), 3)

    kinds = sorted({key.split(" ")[-1] for key in table})
    return {
        "model": str(args.model),
        "n": args.n,
        "length": args.length,
        "start": args.start,
        "machine": describe_machine(),
        "auc": dict(sorted(auc.items(), key=lambda item: -abs(item[1] - 0.5))),
        "trees": {
            "all": score(list(table)),
            **{kind: score([k for k in table if k.endswith(" " + kind)]) for kind in kinds},
        },
    }


def moving_mean(windows: np.ndarray, kernel: int) -> np.ndarray:
    """The model's centred moving average (edges repeated) along time, per window and channel."""
    return moving_average(torch.from_numpy(windows).transpose(1, 2), kernel).transpose(1, 2).numpy()


def alter(windows: np.ndarray, alteration: str, names: list[str], seed: int) -> np.ndarray:
    """Real windows changed in one known way (``sensitivity``): ``same``; ``smooth:K`` (moving average of K
    steps); ``white:K`` (the moving average of K steps plus white noise as large per channel as the detail it
    removed, independent across channels and steps); ``decorrelate:K`` (the moving average of K steps plus each
    channel's detail about it from another window, drawn per channel: every channel keeps its own texture, the
    channels stop moving together); ``spread:C1,C2:F`` (the named channels' deviations from
    their window mean times F); ``shuffle:C`` (channel C taken from another window); ``reverse`` (time reversed)."""
    kind, *rest = alteration.split(":")
    rng = np.random.default_rng(seed)
    if kind == "same":
        return windows
    if kind == "smooth":
        return moving_mean(windows, int(rest[0]))
    if kind == "white":
        smooth = moving_mean(windows, int(rest[0]))
        return smooth + rng.normal(size=windows.shape) * (windows - smooth).std((0, 1))
    if kind == "decorrelate":
        smooth = moving_mean(windows, int(rest[0]))
        detail = windows - smooth
        donors = np.stack([rng.permutation(len(windows)) for _ in range(windows.shape[2])], 1)
        return smooth + np.take_along_axis(detail, donors[:, None, :], axis=0)
    if kind == "spread":
        changed = windows.copy()
        columns = [names.index(name) for name in rest[0].split(",")]
        mean = changed[..., columns].mean(1, keepdims=True)
        changed[..., columns] = mean + float(rest[1]) * (changed[..., columns] - mean)
        return changed
    if kind == "shuffle":
        changed = windows.copy()
        column = names.index(rest[0])
        changed[..., column] = windows[rng.permutation(len(windows)), :, column]
        return changed
    if kind == "reverse":
        return windows[:, ::-1]
    raise SystemExit(f"unknown alteration {alteration!r}")


def sensitivity(args: argparse.Namespace) -> dict:
    """What can the discriminative judge see? 1,000 real windows (seed 0) against 1,000 other real windows
    (seed 1) changed in one known way each, no model involved."""
    series = load_series(args.dataset)
    windows = sliding_windows(series.values, args.window)
    names = list(series.channels)
    reference, other = (subsample(windows, args.n, seed) for seed in (0, 1))
    result = {"dataset": args.dataset, "window": args.window, "n": args.n, "machine": describe_machine()}
    for alteration in args.alterations:
        scores = evaluate(
            reference, alter(other, alteration, names, seed=0), metrics=["discriminative"], repeats=args.repeats, seed=0
        )
        result[alteration] = scores["discriminative"]["values"]
        print(alteration, result[alteration], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("train")
    one.add_argument("dataset")
    one.add_argument("window", type=int)
    one.add_argument("steps", type=int, nargs="?", help="training budget in optimizer steps (or --minutes)")
    one.add_argument("--minutes", type=float, help="training budget in minutes (StageDiffConfig.max_minutes)")
    one.add_argument("--label", required=True)
    one.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    one.add_argument("--samplers", nargs="+", default=["ddim"])
    one.add_argument("--n", type=int, default=500)
    again = commands.add_parser("judge")
    again.add_argument("model")
    again.add_argument("dataset")
    again.add_argument("--n", type=int, default=1000)
    again.add_argument("--repeats", type=int, default=2)
    again.add_argument("--seed", type=int, default=1)
    again.add_argument("--device", default="cpu", help="where to sample: cpu, cuda or auto (the judges run on the CPU)")
    again.add_argument("--samplers", nargs="+", default=["ddpm", "ddim"])
    again.add_argument("--metrics", nargs="+", default=["discriminative"], help="names as in stagediff.metrics")
    again.add_argument("--length", type=int, help="sample this many steps and judge the window cut at --start")
    again.add_argument("--start", type=int, default=0)
    again.add_argument(
        "--match-spread",
        action="store_true",
        help="scale each synthetic channel about its window means to the real windows' mean within-window std",
    )
    again.add_argument(
        "--snap",
        action="store_true",
        help="move each synthetic value to the nearest value its channel takes in the dataset",
    )
    steps = commands.add_parser("denoise")
    steps.add_argument("model")
    steps.add_argument("dataset")
    per_channel = commands.add_parser("channels")
    per_channel.add_argument("model")
    per_channel.add_argument("dataset")
    copies = commands.add_parser("nearest")
    copies.add_argument("model")
    copies.add_argument("dataset")
    copies.add_argument("--n", type=int, default=300)
    per_lag = commands.add_parser("lags")
    per_lag.add_argument("model")
    per_lag.add_argument("dataset")
    separating = commands.add_parser("features")
    separating.add_argument("model")
    separating.add_argument("dataset")
    separating.add_argument("--n", type=int, default=1000)
    separating.add_argument("--length", type=int, help="as for judge")
    separating.add_argument("--start", type=int, default=0)
    seeing = commands.add_parser("sensitivity")
    seeing.add_argument("dataset")
    seeing.add_argument("window", type=int)
    seeing.add_argument("alterations", nargs="+", help="see `alter`, e.g. same smooth:3 spread:HUFL,MUFL:0.9")
    seeing.add_argument("--n", type=int, default=1000)
    seeing.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    configure_threads(1)
    if args.command == "train":
        if (args.steps is None) == (args.minutes is None):
            parser.error("train takes a budget: STEPS or --minutes, not both")
        args.set = parse_settings(args.set)
    result = {
        "train": train,
        "judge": judge,
        "denoise": denoise,
        "channels": channels,
        "nearest": nearest,
        "lags": lags,
        "features": features,
        "sensitivity": sensitivity,
    }[args.command](args)
    print(json.dumps(result), flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "results.jsonl", "a") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
