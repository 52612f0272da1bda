"""`stagediff` command line: fit a generator, sample from it, describe it.

    stagediff fit DATA [--time-column date] [--window 256] [--max-steps N | --minutes M] [--preset NAME | --config FILE]
                  --out DIR
    stagediff sample DIR --n 4 --length 1024 [--seed 0] [--steps 50] [--prefix FILE] --out FILE.{parquet,csv}
    stagediff evaluate DIR --data DATA [--protocol paper|heldout] [--n N] [--repeats 5] --out DIR
    stagediff info DIR

The process environment (stagediff.runtime.configure_environment) is set first, before any command imports torch;
this module imports torch only inside the commands.

`fit` also runs under torchrun (`torchrun --nproc-per-node N -m stagediff.cli fit ...`): the processes train
one model together and rank 0 saves it (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from stagediff.config import SAMPLERS
from stagediff.errors import StageDiffError
from stagediff.runtime import configure_environment, configure_threads, default_threads

OUTPUT_FORMATS = (".parquet", ".csv")


def add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    """--threads and --verbose, accepted before and after the command (``default``: argparse.SUPPRESS after it, so
    that a value given before it stands)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        help="CPU threads for torch (default: 1 on up to 2 cores, else half the cores, at most 8)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", default=default or False, help="log progress details")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stagediff", description="Stage-Diff synthetic time series generator")
    add_common_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a generator on a CSV/parquet file or a built-in dataset")
    fit.add_argument("data", help="CSV or parquet path, or a built-in name: synthetic, etth1, stock, exchange")
    fit.add_argument("--out", required=True, help="folder to write the trained model to")
    fit.add_argument("--time-column", help="name of the time column (default: built-in's own, else none)")
    fit.add_argument("--config", help="YAML/JSON file of StageDiffConfig fields")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one configuration field (YAML value), repeatable",
    )
    fit.add_argument("--preset", help="start from a named preset (stagediff.recipe.PRESETS) instead of the defaults")
    fit.add_argument(
        "--columns", help="comma-separated channel columns to model (default: every column but the time column)"
    )
    fit.add_argument("--window", type=int, help="training window length (stages, patches and width follow it)")
    fit.add_argument(
        "--stage-length",
        type=int,
        help="steps per stage (default: follows the window); the window must be a multiple of it",
    )
    fit.add_argument("--max-steps", type=int, help="training steps")
    fit.add_argument(
        "--minutes",
        type=float,
        help="train for this many minutes of wall-clock time instead of "
        "--max-steps (the steps reached are saved with the model)",
    )
    fit.add_argument("--seed", type=int, help="random seed of initialisation and training")
    fit.add_argument(
        "--missing",
        choices=("error", "interpolate", "mask"),
        help="NaN/inf values in the data: error (the default), interpolate (linear in time, trained on as data) or "
        "mask (interpolated for the windows, left out of the training loss)",
    )
    fit.add_argument(
        "--calendar",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="condition on the time column's calendar (hour of day, day of week, day of year), so samples follow the "
        "calendar of their timestamps (default: yes where the data has a datetime time column)",
    )
    fit.add_argument("--data-dir", help="folder of the benchmark files (default: $STAGEDIFF_DATA_DIR, else ./data)")
    fit.add_argument(
        "--checkpoint-dir",
        help="checkpoint folder; an interrupted fit resumes from it (default: "
        "OUT/../<name>-checkpoints, removed once the model is saved)",
    )
    fit.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="show a progress bar")

    sample = commands.add_parser("sample", help="sample synthetic series from a trained generator")
    sample.add_argument("model", help="model folder written by `stagediff fit`")
    sample.add_argument("--out", required=True, help="output file, .parquet or .csv")
    sample.add_argument("--n", type=int, default=1, help="number of series")
    sample.add_argument("--length", type=int, help="steps per series (default: the training window)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--steps",
        type=int,
        help="network evaluations of the sampler per chunk (default: every "
        "diffusion step for ddpm, else the model's sampling_steps)",
    )
    sample.add_argument("--sampler", choices=SAMPLERS, help="default: the model's configured sampler")
    sample.add_argument(
        "--prefix", help="CSV/parquet of real history to continue (channel columns, optional time column)"
    )
    sample.add_argument(
        "--known",
        help="CSV/parquet of some channels' values at every step of the samples (one row per step, optional time "
        "column); the other channels are generated to fit them (default --length: its rows)",
    )
    sample.add_argument("--start", help="first timestamp of the samples (default: continue after the data or prefix)")
    sample.add_argument(
        "--chunk-length", type=int, help="steps denoised jointly per chunk (default: up to 4 training windows)"
    )
    sample.add_argument("--plot", help="also write a PNG of the samples")
    sample.add_argument("--plot-data", help="real data (file or built-in name) to draw beside the samples in --plot")
    sample.add_argument("--data-dir", help="folder of the benchmark files for --plot-data")
    sample.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    sample.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    evaluate = commands.add_parser(
        "evaluate", help="score a trained generator against real data; writes metrics.json and PNG pictures"
    )
    evaluate.add_argument("model", help="model folder written by `stagediff fit`")
    evaluate.add_argument("--data", required=True, help="real data: CSV/parquet path or built-in name")
    evaluate.add_argument("--time-column", help="the data's time column (default: the model's)")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json and the pictures")
    evaluate.add_argument(
        "--protocol",
        choices=("paper", "heldout"),
        default="heldout",
        help="paper: all windows of the series; heldout: the model's held-out part (default)",
    )
    evaluate.add_argument("--n", type=int, default=1000, help="real windows (and as many synthetic ones), at most")
    evaluate.add_argument("--repeats", type=int, default=5, help="seeded repeats of the trained judges")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--steps", type=int, help="DDIM reverse steps for sampling")
    evaluate.add_argument(
        "--fast", action="store_true", help="few judge iterations: for smoke tests, not for reporting"
    )
    evaluate.add_argument(
        "--metrics", nargs="+", help="only these metrics (names as in metrics.json; default: all the protocol allows)"
    )
    evaluate.add_argument("--data-dir", help="folder of the benchmark files")

    impute = commands.add_parser("impute", help="fill the gaps (empty or NaN values) of a series with generated values")
    impute.add_argument("model", help="model folder written by `stagediff fit`")
    impute.add_argument(
        "data", help="CSV/parquet with every channel column (and the time column if the model has one), gaps empty"
    )
    impute.add_argument("--out", required=True, help="output file, .parquet or .csv: the n filled series")
    impute.add_argument("--n", type=int, default=1, help="number of draws (each a filled copy of the series)")
    impute.add_argument("--seed", type=int, default=0)
    impute.add_argument("--steps", type=int, help="network evaluations of the sampler per chunk")
    impute.add_argument("--sampler", choices=SAMPLERS, help="default: the model's configured sampler")
    impute.add_argument("--plot", help="also write a PNG of the filled series")
    impute.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    impute.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    info = commands.add_parser("info", help="print a trained generator's configuration and metadata as JSON")
    info.add_argument("model")
    for command in (fit, sample, evaluate, info):
        add_common_options(command, default=argparse.SUPPRESS)
    return parser


def fit_command(args: argparse.Namespace) -> int:
    from stagediff.config import StageDiffConfig
    from stagediff.distributed import is_main_process
    from stagediff.generator import StageDiff

    if args.config and args.preset:
        raise StageDiffError(
            "--config and --preset both choose where the configuration starts; give one "
            "(a config file can name its preset with a `preset:` key)"
        )
    config = (
        StageDiffConfig.from_file(args.config)
        if args.config
        else StageDiffConfig.preset(args.preset)
        if args.preset
        else StageDiffConfig()
    )
    overrides = parse_overrides(args.set)
    for name, value in (
        ("window", args.window),
        ("stage_length", args.stage_length),
        ("max_steps", args.max_steps),
        ("max_minutes", args.minutes),
        ("seed", args.seed),
    ):
        if value is not None:
            overrides[name] = value
    if args.missing is not None:
        overrides["missing"] = args.missing
    if args.calendar is False:
        overrides["calendar"] = []
    config = config.replace(**overrides)
    out = Path(args.out)
    checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else out.parent / f"{out.name}-checkpoints"
    columns = [column.strip() for column in args.columns.split(",")] if args.columns else None
    model = StageDiff(config).fit(
        args.data,
        args.time_column,
        columns=columns,
        data_dir=args.data_dir,
        checkpoint_dir=checkpoints,
        device=args.device,
        progress=args.progress,
    )
    if not is_main_process():
        return 0  # under torchrun: rank 0 saves the model that every rank holds
    model.save(out)
    if not args.checkpoint_dir:  # the default checkpoints only served to resume this fit; another starts afresh
        shutil.rmtree(checkpoints, ignore_errors=True)
    training = model.metadata["training"]
    for name, choice in model.metadata.get("choices", {}).items():
        print(f"chose {name} = {choice['value']}: {choice['because']} (override with --set {name}=...)")
    print(
        f"trained {training['steps']} steps in {training['seconds']:.1f} s on {training['device']} "
        f"(final loss {training['final_loss']:.4f}, {training['parameters']:,} parameters); model saved to {out}"
    )
    for warning in model.metadata.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def sample_command(args: argparse.Namespace) -> int:
    from stagediff.data import load_frame
    from stagediff.generator import StageDiff

    check_outputs(args)
    model = StageDiff.load(args.model, device=args.device)
    prefix = load_frame(Path(args.prefix))[0] if args.prefix else None
    known = load_frame(Path(args.known))[0] if args.known else None
    frame = model.sample(
        n=args.n,
        length=args.length,
        seed=args.seed,
        steps=args.steps,
        prefix=prefix,
        sampler=args.sampler,
        start=args.start,
        chunk_length=args.chunk_length,
        known=known,
        progress=args.progress,
    )
    write_samples(frame, args, "sample(s)")
    if args.plot:
        plot(model, frame, args)
    return 0


def impute_command(args: argparse.Namespace) -> int:
    from stagediff.data import load_frame
    from stagediff.generator import StageDiff
    from stagediff.plots import plot_samples

    check_outputs(args)
    model = StageDiff.load(args.model, device=args.device)
    gapped = load_frame(Path(args.data))[0]
    frame = model.impute(
        gapped, n=args.n, seed=args.seed, steps=args.steps, sampler=args.sampler, progress=args.progress
    )
    write_samples(frame, args, "filled series")
    if args.plot:
        print(f"wrote plot {plot_samples(frame, args.plot, title=f'gaps of {args.data} filled by {args.model}')}")
    return 0


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse --out and --plot paths of the wrong kind before any work."""
    out = Path(args.out)
    if out.suffix not in OUTPUT_FORMATS:
        raise StageDiffError(f"--out must end in {' or '.join(OUTPUT_FORMATS)}, got {out.name}")
    if args.plot and not args.plot.endswith(".png"):
        raise StageDiffError(f"--plot must be a .png file, got {args.plot}")


def write_samples(frame, args: argparse.Namespace, what: str) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    print(f"wrote {args.n} {what} x {frame.shape[0] // args.n} steps x {frame.shape[1] - 2} channels to {out}")


def plot(model, frame, args: argparse.Namespace) -> None:
    from stagediff.data import load_series
    from stagediff.plots import plot_samples

    real = None
    if args.plot_data:
        series = load_series(args.plot_data, model.metadata.get("time_column"), data_dir=args.data_dir)
        length = frame.shape[0] // args.n
        real = series.values[-length:] if series.length >= length else None
    path = plot_samples(frame, args.plot, real=real, title=f"stagediff samples from {args.model}")
    print(f"wrote plot {path}")


def evaluate_command(args: argparse.Namespace) -> int:
    from stagediff.evaluation import evaluate_generator
    from stagediff.generator import StageDiff

    model = StageDiff.load(args.model)
    scores = evaluate_generator(
        model,
        args.data,
        args.out,
        protocol=args.protocol,
        n=args.n,
        repeats=args.repeats,
        seed=args.seed,
        fast=args.fast,
        steps=args.steps,
        data_dir=args.data_dir,
        metrics=args.metrics,
        time_column=args.time_column,
    )
    for name, entry in scores.items():
        if not isinstance(entry, dict) or "mean" not in entry:
            continue
        if entry["mean"] is None:
            print(f"{name:>16}: skipped ({entry.get('skipped', 'not enough windows')})")
            continue
        floors = [
            f"{label} {entry[key]:.4f}"
            for key, label in (("real_baseline", "real vs real"), ("real_own", "training vs held-out"))
            if isinstance(entry.get(key), float)
        ]
        print(f"{name:>16}: {entry['mean']:.4f} +- {entry['std']:.4f}" + (f"  ({'; '.join(floors)})" if floors else ""))
        if entry.get("top_features"):
            print(
                f"{'':>16}  what gives the windows away (feature, its own AUC): "
                + ", ".join(f"{feature} {auc:.2f}" for feature, auc in entry["top_features"][:3])
            )
    print(f"wrote {Path(args.out) / 'metrics.json'} and {len(scores.get('pictures', []))} pictures")
    return 0


def info_command(args: argparse.Namespace) -> int:
    from stagediff.artifacts import load_generator

    saved = load_generator(args.model)
    print(json.dumps({"config": saved.config.to_dict(), "metadata": saved.metadata}, indent=2, default=str))
    return 0


def parse_overrides(items: Sequence[str]) -> dict:
    overrides = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise StageDiffError(f"--set expects KEY=VALUE, got {item!r}")
        parsed = yaml.safe_load(value)
        overrides[key.strip()] = tuple(parsed) if isinstance(parsed, list) else parsed
    return overrides


COMMANDS = {
    "fit": fit_command,
    "sample": sample_command,
    "impute": impute_command,
    "evaluate": evaluate_command,
    "info": info_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    configure_environment()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from stagediff.distributed import local_world_size

    try:
        # torchrun's processes on one machine share its cores: each takes its part of the default.
        configure_threads(args.threads if args.threads is not None else max(1, default_threads() // local_world_size()))
        return COMMANDS[args.command](args)
    except (StageDiffError, ValueError) as error:
        print(f"stagediff {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `stagediff info DIR | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
