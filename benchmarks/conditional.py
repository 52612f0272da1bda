"""Known values (issue 32): known channels, imputation and continuations, on time the models never saw.

Each dataset is cut at ``--train-fraction`` (0.8): two models of the default recipe train on the first part only
(fit's own 10 % validation split inside it), with the same seed and number of steps: the default, which never sees
known values in training (``conditioning=0``) and imposes them by replacing them while sampling, and one trained
with known values in half of its windows (``conditioning=0.5``), which also sees them as inputs. Everything below is
scored on the last part.

- Known channels: ``--windows`` windows of ``--length`` steps spread over the held-out part (and, to tell the
  method from the data's drift, as many over the training part, which the models saw), ``--draws`` draws each,
  for each split of ``--splits`` ("targets|known": e.g. OT given the six loads, and the loads given OT). Scores over
  the target channels, in units of each channel's training standard deviation: the mean absolute error of the draws'
  median, the CRPS of the draws, and the share of real values inside the draws' 10-90 % band (0.8 is calibrated).
  Against: the default model without the known channels (unconditional), the model trained with known values, and a
  linear regression of the targets on the known channels at the same step (fitted
  on the training part, its band from the training residuals' 10 % and 90 % quantiles).
- Imputation: the whole held-out part with ``--missing`` of each channel's values removed in gaps of 24-168 steps
  (the first step kept): MAE and CRPS of ``--draws`` imputations on the removed values, against linear
  interpolation, the model trained with known values and unconditional samples at the same steps.
- Training on data with gaps (``--training-gaps 0.1``, instead of the above): 10 % of each channel of the training
  part removed in gaps of 24-168 steps, one model trained with ``missing="mask"`` and one with
  ``missing="interpolate"``; the share of straight steps (linear interpolation's lines) and the texture of 100
  unconditional windows at held-out windows' starts, and imputation as above.
- Rare covariate values (``--rare 0.2``, instead of the above): does a model follow known channels whose values
  are rare in training but within its range, on time it never saw? The series is cut into blocks of ``--length``
  steps; the blocks whose mean of the known channels (first split) lies in the outer ``--rare`` of all blocks' means
  (both tails) are the rare ones. 80 % of them are held out, and as many of the blocks nearest the median (the common
  ones); the other rare blocks stay in training, so those values are rare there, not absent. Both models train on
  the whole series with the held-out blocks missing (``missing="mask"``: out of the loss), and known-channel scores
  are reported on the rare and on the common held-out blocks, against unconditional samples and a linear
  regression fitted on the training blocks. Calendar positions and the series' trend are covered by neighbouring
  training blocks, so what differs between the two groups is how rare the known values are.
- Level: ``--draws`` samples that continue right after the training part against as many unconditional ones at the
  same timestamps: per channel, |mean of the first 24 steps - the data's last value| over the series' own
  step-to-step standard deviation, and the same figure of the real series (benchmarks/calendar.py).

    .venv/bin/python -m benchmarks.conditional --datasets etth1 --steps 3000 --out results/conditional/etth1.json \
        --plot results/conditional
    .venv/bin/python -m benchmarks.conditional --datasets synthetic --steps 3000 --splits \
        "load|temperature,wind,solar,price" "price|temperature,load,wind,solar" \
        --out results/conditional/synthetic.json --plot results/conditional
    .venv/bin/python -m benchmarks.conditional --datasets etth1 --training-gaps 0.1 \
        --out results/conditional/gaps-etth1.json
    .venv/bin/python -m benchmarks.conditional --datasets etth1 --window 256 --continuation-speed \
        --out results/conditional/speed-etth1-256.json
    .venv/bin/python -m benchmarks.conditional --datasets etth1 --rare 0.2 --splits "HUFL,HULL,MUFL,MULL,LUFL,LULL|OT" \
        --out results/conditional/rare-etth1.json --plot results/conditional
    .venv/bin/python -m benchmarks.conditional --datasets synthetic --rare 0.2 \
        --splits "load,price|temperature,wind,solar" --out results/conditional/rare-synthetic.json \
        --plot results/conditional
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.calendar import level_gaps, real_level_gaps
from benchmarks.machine import describe_machine
from benchmarks.models import load_or_train, with_config
from stagediff import StageDiff, StageDiffConfig
from stagediff.data import load_series
from stagediff.metrics.conditional import draw_scores as scores
from stagediff.metrics.conditional import interpolate_gaps, point_scores, remove_gaps
from stagediff.runtime import configure_threads

DEFAULT, TRAINED = "replacement (default)", "trained with known values"
VARIANTS = {DEFAULT: ("without", {"conditioning": 0.0}), TRAINED: ("known", {"conditioning": 0.5})}
"""label: (model folder's suffix, configuration)"""


def regression(train: np.ndarray, targets: list[int], known: list[int]):
    """Least squares of the target channels on the known ones (and a constant) -> predict(rows) and the residuals'
    10 % and 90 % quantiles."""
    design = np.column_stack([train[:, known], np.ones(len(train))])
    coefficients, *_ = np.linalg.lstsq(design, train[:, targets], rcond=None)
    residuals = train[:, targets] - design @ coefficients
    band = np.quantile(residuals, [0.1, 0.9], axis=0)
    return (lambda rows: np.column_stack([rows[:, known], np.ones(len(rows))]) @ coefficients), band


def known_draws(models, real, times, time_column, known, known_names, args, number) -> dict[str, np.ndarray]:
    """``args.draws`` draws of one window (real: its values, times: its timestamps) per method: the default and the
    model trained with known values given the known channels, and the default unconditionally at the same times."""
    given = pd.DataFrame(real[:, known], columns=known_names)
    given.insert(0, time_column, times)
    seed, length = args.seed + number, len(real)
    return {
        DEFAULT: models[DEFAULT].sample_array(args.draws, length, seed=seed, known=given),
        "unconditional": models[DEFAULT].sample_array(args.draws, length, seed=seed, start=[times[0]]),
        TRAINED: models[TRAINED].sample_array(args.draws, length, seed=seed, known=given),
    }


def score_known(found: dict[str, list], draws, real, targets, scale, predict, band) -> np.ndarray:
    """Append one window's scores of the target channels per method, and the regression's, to ``found``; returns the
    regression's guess of the targets."""
    for method, values in draws.items():
        found.setdefault(method, []).append(scores(values[..., targets], real[:, targets], scale[targets]))
    guess = predict(real)
    truth = real[:, targets]
    inside = (truth >= guess + band[0]) & (truth <= guess + band[1])
    regressed = point_scores(guess, truth, scale[targets]) | {"coverage": round(float(inside.mean()), 3)}
    found.setdefault("linear regression", []).append(regressed)
    return guess


def mean_scores(found: dict[str, list]) -> dict[str, dict[str, float]]:
    """Each method's scores averaged over the windows."""
    return {
        method: {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
        for method, rows in found.items()
    }


def run(args: argparse.Namespace) -> None:
    configure_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    results = []
    for name in args.datasets:
        series = load_series(name, data_dir=args.data_dir)
        channels = list(series.channels)
        frame = pd.DataFrame(series.values, columns=channels)
        frame.insert(0, series.time_column, series.timestamps)
        cut = int(series.length * args.train_fraction)
        train, heldout = series.values[:cut], series.values[cut:]
        times = series.timestamps[cut:]
        scale = train.std(axis=0)
        if args.continuation_speed:
            results.append(continuation_speed(args, name, frame.iloc[:cut], series.time_column))
            continue
        if args.training_gaps:
            results.append(gapped_training(args, name, series, frame, cut, scale))
            continue
        if args.rare:
            results.append(rare_values(args, name, series, frame))
            continue
        entry: dict = {"dataset": name, "channels": channels, "train_rows": cut, "heldout_rows": len(heldout)}
        models: dict[str, StageDiff] = {}
        for variant, (suffix, changes) in VARIANTS.items():
            folder = Path(args.models) / f"{name}-{args.window}-{args.steps}-{suffix}"
            started = time.perf_counter()
            config = StageDiffConfig(window=args.window, max_steps=args.steps, **changes)
            models[variant] = load_or_train(folder, config, frame.iloc[:cut], series.time_column)
            entry.setdefault("train_seconds", {})[variant] = round(time.perf_counter() - started, 1)
        default, trained = models[DEFAULT], models[TRAINED]

        # known channels, over held-out time and (to tell drift from the method) over time the models trained on
        length = args.length
        periods = {
            "held-out": (heldout, times, np.linspace(args.window, len(heldout) - length, args.windows).astype(int)),
            "training time": (train, series.timestamps[:cut], np.linspace(0, cut - length, args.windows).astype(int)),
        }
        entry["known"] = {}
        for split, period in [(split, period) for split in args.splits for period in periods]:
            target_names, known_names = (part.split(",") for part in split.split("|"))
            if not set(target_names + known_names) <= set(channels):
                continue
            targets, known = [channels.index(c) for c in target_names], [channels.index(c) for c in known_names]
            predict, band = regression(train, targets, known)
            values_of, times_of, firsts = periods[period]
            found: dict[str, list] = {}
            for number, first in enumerate(firsts):
                real, times_here = values_of[first : first + length], times_of[first : first + length]
                draws = known_draws(models, real, times_here, series.time_column, known, known_names, args, number)
                guess = score_known(found, draws, real, targets, scale, predict, band)
                if number == 0 and args.plot and period == "held-out":
                    plot_known(args.plot, name, split, times_here, real[:, targets], draws, targets, guess)
            entry["known"][f"{split} @ {period}"] = mean_scores(found)
            print(name, "known", split, period, json.dumps(entry["known"][f"{split} @ {period}"]), flush=True)

        # imputation
        removed = remove_gaps(len(heldout), len(channels), rng, args.missing)
        gapped = pd.DataFrame(np.where(removed, np.nan, heldout), columns=channels)
        gapped.insert(0, series.time_column, times)
        imputed = {
            DEFAULT: default.impute(gapped, args.draws, seed=args.seed),
            TRAINED: trained.impute(gapped, args.draws, seed=args.seed),
        }
        entry["imputation"] = {"missing": round(float(removed.mean()), 4)}
        for method, out in imputed.items():
            values = out[channels].to_numpy().reshape(args.draws, len(heldout), len(channels))
            entry["imputation"][method] = scores(values, heldout, scale, removed)
        free = default.sample_array(args.draws, len(heldout), seed=args.seed, start=[times[0]] * args.draws)
        entry["imputation"]["unconditional"] = scores(free, heldout, scale, removed)
        linear = interpolate_gaps(heldout, removed)
        entry["imputation"]["linear interpolation"] = point_scores(linear, heldout, scale, removed)
        print(name, "imputation", json.dumps(entry["imputation"]), flush=True)
        if args.plot:
            values = imputed[DEFAULT][channels].to_numpy().reshape(args.draws, len(heldout), -1)
            plot_imputation(args.plot, name, times, heldout, removed, values, linear)

        # level of continuations
        spread = np.diff(train, axis=0).std(axis=0)
        after = default.sample_times(1)[1][0]
        entry["level"] = {"real": real_level_gaps(train, spread)}
        for variant, model in models.items():
            continued = model.sample_array(args.draws, 2 * args.window, seed=args.seed)
            entry["level"][variant] = level_gaps(continued, train[-1], spread)
        free = default.sample_array(args.draws, 2 * args.window, seed=args.seed, start=[after] * args.draws)
        entry["level"]["unconditional"] = level_gaps(free, train[-1], spread)
        print(name, "level", json.dumps(entry["level"]), flush=True)
        results.append(entry)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "plot")}
        Path(args.out).write_text(
            json.dumps({"machine": describe_machine(), "settings": settings, "results": results}, indent=1)
        )


def continuation_speed(args, name, frame, time_column) -> dict:
    """``--continuation-speed``: seconds to sample 64 series of one training window (``--window``) that continue the
    data (one chunk of history and new steps, guided toward the history: the default), the same without guidance
    (``guidance=0``), and 64 unconditional ones; a default-width model trained 2 steps (speed does not depend on the
    weights), medians of ``--repeats`` runs, alternating."""
    model = StageDiff(StageDiffConfig(window=args.window, max_steps=2)).fit(frame, time_column, progress=False)
    unguided = with_config(model, guidance=0.0)
    after = model.sample_times(1)[1][0]
    model.sample_array(4, args.window, progress=False)  # warm-up
    runs = {
        "continuation": lambda: model.sample_array(64, args.window, progress=False),
        "continuation without guidance": lambda: unguided.sample_array(64, args.window, progress=False),
        "unconditional": lambda: model.sample_array(64, args.window, start=[after] * 64, progress=False),
    }
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.repeats):
        for label, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[label].append(round(time.perf_counter() - started, 3))
    entry = {"dataset": name, "window": args.window, "seconds": seconds}
    entry["median"] = {label: float(np.median(values)) for label, values in seconds.items()}
    print(name, "continuation speed", json.dumps(entry["median"]), flush=True)
    return entry


def straight_share(windows: np.ndarray, scale: np.ndarray) -> float:
    """The share of steps (per window and channel) whose second difference is below 1e-4 of the channel's training
    standard deviation: straight lines, as linear interpolation draws them (real data have almost none)."""
    second = np.abs(np.diff(windows, n=2, axis=1)) / scale
    return round(float((second < 1e-4).mean()), 4)


def gapped_training(args, name, series, frame, cut, scale) -> dict:
    """``--training-gaps``: the training part with that share of each channel removed in gaps of 24-168 steps, and two
    models trained on it, missing="mask" (the gaps left out of the loss) and missing="interpolate" (trained on their
    straight lines). Scores on the held-out part: the share of straight steps in unconditional windows at the starts
    of held-out windows, their texture against those windows, and imputation as above."""
    from stagediff.metrics.texture import texture

    channels, length = list(series.channels), args.window
    removed = remove_gaps(cut, len(channels), np.random.default_rng(args.seed + 1), args.training_gaps)
    gappy = frame.iloc[:cut].copy()
    gappy[channels] = np.where(removed, np.nan, series.values[:cut])
    heldout, times = series.values[cut:], series.timestamps[cut:]
    firsts = np.linspace(0, len(heldout) - length, 100).astype(int)
    real = np.stack([heldout[first : first + length] for first in firsts])
    held_removed = remove_gaps(len(heldout), len(channels), np.random.default_rng(args.seed), args.missing)
    held_gapped = pd.DataFrame(np.where(held_removed, np.nan, heldout), columns=channels)
    held_gapped.insert(0, series.time_column, times)
    entry: dict = {"dataset": name, "training_missing": round(float(removed.mean()), 4), "real": {}}
    entry["real"]["straight_share"] = straight_share(real, scale)
    for policy in ("mask", "interpolate"):
        folder = Path(args.models) / f"{name}-{args.window}-{args.steps}-gaps-{policy}"
        if (folder / "config.json").exists():
            model = StageDiff.load(folder)
        else:
            config = StageDiffConfig(window=args.window, max_steps=args.steps, missing=policy)
            model = StageDiff(config).fit(gappy, series.time_column, progress=False)
            model.save(folder)
        samples = model.sample_array(len(firsts), length, seed=args.seed, start=list(times[firsts]))
        found = texture(real / scale, samples / scale)
        imputed = model.impute(held_gapped, args.draws, seed=args.seed)[channels].to_numpy()
        entry[policy] = {
            "straight_share": straight_share(samples, scale),
            "roughness_ratio": round(found["roughness_ratio"], 3),
            "step_spread_ratio": round(found["step_spread_ratio"], 3),
            "imputation": scores(imputed.reshape(args.draws, len(heldout), -1), heldout, scale, held_removed),
        }
        print(name, "training gaps", policy, json.dumps(entry[policy]), flush=True)
    return entry


def held_out_blocks(
    values: np.ndarray, known: list[int], length: int, share: float, seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``--rare``'s blocks of ``length`` steps: ({"rare": held-out rare blocks, "common": as many held-out blocks
    nearest the median}, every block's distance from the median block, the rare blocks). A block's distance: how far
    its mean of each known channel lies from the median of all blocks' means, in standard deviations of the channel
    (the Euclidean norm over the known channels)."""
    standard = (values - values.mean(axis=0)) / values.std(axis=0)
    blocks = len(values) // length
    means = standard[: blocks * length, known].reshape(blocks, length, len(known)).mean(axis=1)
    distance = np.linalg.norm(means - np.median(means, axis=0), axis=1)
    order = np.argsort(distance, kind="stable")  # nearest the median first
    order = order[order > 0]  # the first block stays in training (a fit needs its first step)
    rare = order[-round(share * blocks) :]
    rng = np.random.default_rng(seed)
    held = {"rare": np.sort(rng.choice(rare, round(0.8 * len(rare)), replace=False))}
    held["common"] = np.sort(order[: len(held["rare"])])
    return held, distance, rare


def blocks_key(held: dict[str, np.ndarray]) -> str:
    """A short name for a set of held-out blocks (the models trained without them are saved under it)."""
    listed = json.dumps({group: [int(block) for block in found] for group, found in held.items()})
    return hashlib.sha256(listed.encode()).hexdigest()[:8]


def rare_values(args, name, series, frame) -> dict:
    """``--rare``: known-channel scores on held-out blocks whose known values are rare in training, and on held-out
    blocks whose known values are common (the module's docstring)."""
    channels, length = list(series.channels), args.length
    target_names, known_names = (part.split(",") for part in args.splits[0].split("|"))
    targets, known = [channels.index(c) for c in target_names], [channels.index(c) for c in known_names]
    values = series.values
    held, distance, rare = held_out_blocks(values, known, length, args.rare, args.seed)
    removed = np.zeros(len(values), dtype=bool)
    for block in np.concatenate(list(held.values())):
        removed[block * length : (block + 1) * length] = True
    training = frame.copy()
    training.loc[removed, channels] = np.nan
    train = values[~removed]
    scale = train.std(axis=0)
    entry: dict = {
        "dataset": name,
        "split": args.splits[0],
        "blocks": {group: [int(b) for b in found] for group, found in held.items()},
        "rare_blocks_in_training": len(rare) - len(held["rare"]),
        "known_distance_sd": {group: round(float(distance[found].mean()), 3) for group, found in held.items()},
        "known_values_within_training_range": round(
            float(
                (
                    (values[removed][:, known] >= train[:, known].min(axis=0))
                    & (values[removed][:, known] <= train[:, known].max(axis=0))
                ).mean()
            ),
            4,
        ),
    }
    models: dict[str, StageDiff] = {}
    for variant, (suffix, changes) in VARIANTS.items():
        folder = Path(args.models) / f"{name}-{args.window}-{args.steps}-rare-{blocks_key(held)}-{suffix}"
        config = StageDiffConfig(window=args.window, max_steps=args.steps, missing="mask", **changes)
        models[variant] = load_or_train(folder, config, training, series.time_column)
    predict, band = regression(train, targets, known)
    for group, found_blocks in held.items():
        found: dict[str, list] = {}
        for number, block in enumerate(found_blocks):
            first = block * length
            real, times = values[first : first + length], series.timestamps[first : first + length]
            draws = known_draws(models, real, times, series.time_column, known, known_names, args, number)
            guess = score_known(found, draws, real, targets, scale, predict, band)
            if number == 0 and args.plot:
                truth = real[:, targets]
                plot_known(args.plot, f"{name}-rare-{group}", args.splits[0], times, truth, draws, targets, guess)
        entry[group] = mean_scores(found)
        print(name, "known values", group, json.dumps(entry[group]), flush=True)
    return entry


def plot_known(folder, name, split, times, truth, draws, targets, guess) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channel = 0
    figure, axes = plt.subplots(1, 2, figsize=(12, 3.6), sharey=True)
    for axis, method in zip(axes, (DEFAULT, "unconditional")):
        values = draws[method][..., targets[channel]]
        low, high = np.quantile(values, [0.1, 0.9], axis=0)
        axis.fill_between(times, low, high, alpha=0.3, label="10-90 % of 20 draws")
        axis.plot(times, np.median(values, axis=0), label="median draw")
        axis.plot(times, truth[:, channel], color="black", lw=1, label="real (held out)")
        if method != "unconditional":
            axis.plot(times, guess[:, channel], color="tab:red", lw=1, ls="--", label="linear regression")
        axis.set_title(
            f"{name}: {split.split('|')[0].split(',')[0]} given {split.split('|')[1]} -- {method}", fontsize=9
        )
        axis.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    path = Path(folder) / f"known-{name}-{split.split('|')[0].split(',')[0]}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_imputation(folder, name, times, real, removed, draws, linear) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channel = int(np.argmax(removed.sum(axis=0)))
    first = int(np.argmax(removed[:, channel]))
    span = slice(max(0, first - 96), min(len(real), first + 264))
    figure, axis = plt.subplots(figsize=(12, 3.6))
    t = times[span]
    low, high = np.quantile(draws[:, span, channel], [0.1, 0.9], axis=0)
    axis.fill_between(t, low, high, alpha=0.3, label="10-90 % of the imputations")
    axis.plot(t, draws[0, span, channel], lw=1, label="one imputation")
    axis.plot(t, linear[span, channel], color="tab:red", lw=1, ls="--", label="linear interpolation")
    axis.plot(t, real[span, channel], color="black", lw=1, label="real (removed where shaded)")
    gone = removed[span, channel]
    axis.fill_between(t, 0, 1, where=gone, transform=axis.get_xaxis_transform(), color="grey", alpha=0.15)
    axis.set_title(f"{name}: imputing a gap in channel {channel}", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(folder) / f"impute-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["etth1"])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000, help="training steps of each model")
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--length", type=int, default=192)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--missing", type=float, default=0.1, help="share of held-out values removed for imputation")
    parser.add_argument(
        "--continuation-speed",
        action="store_true",
        help="instead of the above: time 64 continuations of one window, guided (the default) and not",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timings per variant (--continuation-speed)")
    parser.add_argument(
        "--training-gaps",
        type=float,
        default=0.0,
        help="instead of the above: remove this share of the training part in gaps and compare missing=mask with "
        "missing=interpolate",
    )
    parser.add_argument(
        "--rare",
        type=float,
        default=0.0,
        help="instead of the above: hold out blocks whose known values are in this outer share, and as many common "
        "ones, and score known channels on both",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["OT|HUFL,HULL,MUFL,MULL,LUFL,LULL", "HUFL,HULL,MUFL,MULL,LUFL,LULL|OT"],
        help="targets|known channel names",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--plot", help="folder for the pictures")
    parser.add_argument("--models", default="runs/conditional", help="folder of the trained models (reused)")
    parser.add_argument("--out")
    main_args = parser.parse_args()
    run(main_args)


if __name__ == "__main__":
    main()
