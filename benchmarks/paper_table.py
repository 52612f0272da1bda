"""The Stage-Diff paper's Table 1 and ablation table, reproduced under our protocol (docs/evaluation.md).

For each (dataset, window) cell: train with the cell's preset (or, with --recipe default, the default recipe)
under a training budget, sample, score under both protocols with repeats, and write a JSON file plus a markdown
table beside the paper's numbers. The budget and the machine are recorded with every number.

    # the whole table (hours on a 2-core CPU; what was run: results/README.md)
    .venv/bin/python -m benchmarks.paper_table --steps 3000 --out results/benchmarks/paper-table.json
    # one cell, quickly
    .venv/bin/python -m benchmarks.paper_table --datasets etth1 --windows 24 --steps 200 --repeats 1 --n 200
    # a budget in minutes of training instead of steps (StageDiffConfig.max_minutes)
    .venv/bin/python -m benchmarks.paper_table --datasets etth1 --windows 128 --minutes 60 --protocols paper
    # the default recipe, no per-dataset settings
    .venv/bin/python -m benchmarks.paper_table --recipe default --windows 128 256 --minutes 60 --protocols paper
    .venv/bin/python -m benchmarks.paper_table --table results/default-recipe/paper-*.json --quality  # its table
    # one table from the result files of several runs
    .venv/bin/python -m benchmarks.paper_table --table results/benchmarks/paper-table-*.json
    # the ablations (ETTh1, windows 24 and 256)
    .venv/bin/python -m benchmarks.paper_table --ablations --steps 3000 --out results/benchmarks/ablations.json
    .venv/bin/python -m benchmarks.paper_table --ablations --windows 24 --steps 1500 --protocols paper --repeats 1
    .venv/bin/python -m benchmarks.paper_table --ablations --windows 256 --variants "w/o CI" "w/o Stage" ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from benchmarks.machine import describe_machine
from stagediff import StageDiff
from stagediff.evaluation import evaluate_generator
from stagediff.recipe import RECIPES, cell_config
from stagediff.runtime import configure_threads

ROOT = Path(__file__).resolve().parents[1]
PAPER = {  # Stage-Diff paper, Table 1 (discriminative, predictive); stage-diff.md section 4
    ("etth1", 24): (0.084, 0.132),
    ("etth1", 64): (0.093, 0.114),
    ("etth1", 128): (0.085, 0.143),
    ("etth1", 256): (0.108, 0.152),
    ("stock", 24): (0.093, 0.037),
    ("stock", 64): (0.095, 0.053),
    ("stock", 128): (0.101, 0.062),
    ("stock", 256): (0.113, 0.069),
    ("exchange", 24): (0.104, 0.043),
    ("exchange", 64): (0.111, 0.082),
    ("exchange", 128): (0.112, 0.101),
    ("exchange", 256): (0.153, 0.092),
}
DEFAULT_WINDOWS = [24, 64, 128, 256]
PAPER_ABLATIONS = {  # ETTh, L=256 (disc, pred); at L=24 the paper gives only "w/o Stage is best" (0.071 / 0.103)
    ("full", 256): (0.108, 0.152),
    ("w/o CI", 256): (0.271, 0.202),
    ("w/o CD", 256): (0.138, 0.193),
    ("w/o Stage", 256): (0.212, 0.241),
    ("w/o Stage", 24): (0.071, 0.103),
}
# each variant changes the paper's full model (channels apart, fused between stages): the default recipe otherwise
ABLATIONS = {
    "full": {"channel_independent": True},
    "w/o CI": {"channel_independent": False},
    "w/o CD": {"channel_independent": True, "channel_fusion": False},
    "w/o Stage": {"channel_independent": True, "staged": False},
}
BULKY = ("values", "fold_aucs", "per_channel", "seconds")  # what the result files leave out of each metric's entry


def parse_settings(items: list[str]) -> dict:
    """Command-line ``KEY=VALUE`` items -> {key: value}, each value read as YAML (``pool_kernels=[1]``)."""
    return {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in items)}


def run_cell(
    dataset: str, window: int, args: argparse.Namespace, label: str = "full", recipe: str = "preset", **changes
) -> dict:
    """Train and score one cell (its preset or the default recipe, see :func:`cell_config`). The paper protocol
    trains on the whole series (validation_fraction 0) and scores against all its windows; the held-out protocol
    trains on the first part and scores against the rest. So each protocol trains its own model."""
    cell = {"dataset": dataset, "window": window, "variant": label, "machine": describe_machine(), "protocols": {}}
    for protocol in args.protocols:
        split = {"validation_fraction": 0.0} if protocol == "paper" else {}
        budget = {"max_minutes": args.minutes} if args.minutes else {}
        config = cell_config(dataset, window, args.steps, recipe, **{**split, **budget, **changes})
        started = time.perf_counter()
        model = StageDiff(config).fit(dataset, progress=False)
        train_seconds = time.perf_counter() - started
        out = Path(args.work) / f"{dataset}-{window}-{label.replace('/', '').replace(' ', '_')}-{protocol}"
        model.save(out / "model")
        started = time.perf_counter()
        scores = evaluate_generator(
            model,
            dataset,
            out,
            protocol=protocol,
            n=args.n,
            repeats=args.repeats,
            seed=args.seed,
            fast=args.fast,
            pictures=False,
            metrics=args.metrics,
        )
        entry = {
            name: {key: figure for key, figure in value.items() if key not in BULKY}
            for name, value in scores.items()
            if isinstance(value, dict) and "mean" in value
        }
        cell["protocols"][protocol] = {
            **entry,
            "settings": scores["settings"],
            "config": config.to_dict(),
            "train_steps": model.metadata["training"]["steps"],
            "train_seconds": round(train_seconds, 1),
            "evaluation_seconds": round(time.perf_counter() - started, 1),
        }
        print(
            json.dumps(
                {
                    "dataset": dataset,
                    "window": window,
                    "variant": label,
                    "protocol": protocol,
                    **{k: v for k, v in cell["protocols"][protocol].items() if k != "config"},
                }
            ),
            flush=True,
        )
    return cell


def markdown(cells: list[dict], reference: dict) -> str:
    lines = [
        "| data | L | variant | paper disc / pred | disc (paper protocol) | pred (paper protocol) "
        "| disc (held-out) | pred (held-out) | pred real floor | context-FID | train steps (s) | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        paper_protocol, heldout = c["protocols"].get("paper", {}), c["protocols"].get("heldout", {})
        key = (
            (c["dataset"], c["window"])
            if c["variant"] == "full" and (c["dataset"], c["window"]) in reference
            else (c["variant"], c["window"])
        )
        ref = reference.get(key)
        show = lambda p, m: f"{p[m]['mean']:.3f} +- {p[m]['std']:.3f}" if m in p else "-"  # noqa: E731
        training = ", ".join(f"{p['train_steps']} ({p['train_seconds']:.0f})" for p in c["protocols"].values())
        lines.append(
            f"| {c['dataset']} | {c['window']} | {c['variant']} | {f'{ref[0]:.3f} / {ref[1]:.3f}' if ref else '-'} | "
            f"{show(paper_protocol, 'discriminative')} | {show(paper_protocol, 'predictive')} | "
            f"{show(heldout, 'discriminative')} | {show(heldout, 'predictive')} | "
            f"{show(heldout or paper_protocol, 'predictive_real')} | "
            f"{show(heldout or paper_protocol, 'context_fid')} | {training} | {c['machine']} |"
        )
    return "\n".join(lines)


def quality_markdown(cells: list[dict], protocol: str = "paper") -> str:
    """The defaults table (docs/benchmarks.md): every judge of each cell under ``protocol``, beside the paper."""
    lines = [
        "| data | L | paper disc / pred | disc | pred | detection AUC (real vs real) | CNN detection "
        "(real vs real) | step spread | roughness | step kurtosis real / synth | step corr err | level corr err "
        "| near copies | train steps (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        p = c["protocols"].get(protocol)
        if not p:
            continue
        ref = PAPER.get((c["dataset"], c["window"]))

        def show(metric: str, key: str = "mean", digits: int = 3, p: dict = p) -> str:
            value = p.get(metric, {}).get(key)
            return "-" if value is None else f"{value:.{digits}f}"

        def judge(metric: str, p: dict = p) -> str:
            spread = f" +- {p[metric]['std']:.3f}" if metric in p and p[metric].get("std") else ""
            return show(metric) + spread

        texture = p.get("texture", {})
        kurtosis = texture.get("kurtosis")
        kurtosis_pair = f"{kurtosis['real'] + 3:.1f} / {kurtosis['synthetic'] + 3:.1f}" if kurtosis else "-"
        copies = p.get("copy", {}).get("copy_fraction")
        variant = "" if c.get("variant", "full") == "full" else f" ({c['variant']})"
        lines.append(
            f"| {c['dataset']}{variant} | {c['window']} | {f'{ref[0]:.3f} / {ref[1]:.3f}' if ref else '-'} | "
            f"{judge('discriminative')} | {judge('predictive')} | "
            f"{judge('detection')} ({show('detection', 'real_baseline')}) | "
            f"{judge('detection_cnn')} ({show('detection_cnn', 'real_baseline')}) | "
            f"{show('texture', 'step_spread_ratio', 2)} | {show('texture', 'roughness_ratio', 2)} | "
            f"{kurtosis_pair} | "
            f"{show('texture', 'step_correlation_error', 2)} | {show('texture', 'level_correlation_error', 2)} | "
            f"{'-' if copies is None else f'{copies:.0%}'} | {p['train_steps']} ({p['train_seconds']:.0f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["etth1", "stock", "exchange"])
    parser.add_argument(
        "--windows",
        nargs="+",
        type=int,
        default=DEFAULT_WINDOWS,
        help="windows of the table; with --ablations, which of 24 and 256 to run",
    )
    parser.add_argument("--steps", type=int, default=3000, help="training budget in optimizer steps")
    parser.add_argument("--minutes", type=float, help="training budget in minutes instead (max_minutes)")
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default="preset",
        help="preset: each cell's preset where it has one; default: the default recipe everywhere",
    )
    parser.add_argument("--protocols", nargs="+", default=["paper", "heldout"], choices=["paper", "heldout"])
    parser.add_argument("--n", type=int, default=1000, help="real (and synthetic) windows per evaluation, at most")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="smoke test only: few judge iterations")
    parser.add_argument("--metrics", nargs="+", help="only these metrics (default: all the protocol allows)")
    parser.add_argument("--ablations", action="store_true", help="the ablation table on ETTh1 at windows 24 and 256")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(ABLATIONS),
        choices=list(ABLATIONS),
        metavar="VARIANT",
        help=f"with --ablations, only these of {', '.join(ABLATIONS)}",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a configuration field on top (YAML value)"
    )
    parser.add_argument("--label", default="full", help="the cells' variant name in the results (with --set)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--work", default="runs/paper-table")
    parser.add_argument("--out", default="runs/paper-table/results.json")
    parser.add_argument("--table", nargs="+", type=Path, help="print one markdown table of saved result files and exit")
    parser.add_argument(
        "--quality",
        action="store_true",
        help="with --table: the defaults table (every judge, texture, near copies; paper protocol)",
    )
    args = parser.parse_args()
    if args.table:
        reports = [json.loads(path.read_text()) for path in args.table]
        cells = [cell for report in reports for cell in report["cells"] if "config" not in cell]  # this script's format
        print(quality_markdown(cells) if args.quality else markdown(cells, {**PAPER, **PAPER_ABLATIONS}))
        return
    configure_threads(args.threads)
    if args.ablations:
        windows = [w for w in args.windows if w in (24, 256)] if args.windows != DEFAULT_WINDOWS else [24, 256]
        cells = [
            run_cell("etth1", window, args, label, recipe="default", **changes)
            for window in windows
            for label, changes in ABLATIONS.items()
            if label in args.variants
        ]
        reference = PAPER_ABLATIONS
    else:
        changes = parse_settings(args.set)
        cells = [
            run_cell(dataset, window, args, args.label, recipe=args.recipe, **changes)
            for dataset in args.datasets
            for window in args.windows
        ]
        reference = PAPER
    report = {
        "budget_steps": None if args.minutes else args.steps,
        "budget_minutes": args.minutes,
        "repeats": args.repeats,
        "n": args.n,
        "fast": args.fast,
        "metrics": args.metrics,
        "date": time.strftime("%Y-%m-%d"),
        "cells": cells,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    table = markdown(cells, reference) + ("\n\n" + quality_markdown(cells) if "paper" in args.protocols else "")
    Path(args.out).with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
