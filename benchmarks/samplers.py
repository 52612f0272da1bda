"""Samplers compared on trained models (issue 33): the same model, the same real windows, one run, one machine.

For each saved model (a ``model`` folder under ``--models``, named ``<dataset>-<window>...``), draw ``--n`` windows
with each sampler setting and score them against ``--n`` real windows: for ETTh1, stock and exchange those of the
paper protocol (every stride-1 window of the whole series, subsampled with ``--seed``), for the unseen data of
benchmarks/default_recipe.py (``synthetic-7``, ``weather``) its held-out windows. Scores: the discriminative score
(``--repeats`` GRU judges), the predictive score, the detection AUC (boosted trees on per-window features) and the
texture figures. Seconds per 64 windows are timed apart, after a warm-up, on one thread. Settings are
``sampler:steps`` or ``ddim:steps:eta``.
Each result is one JSON line, appended to ``--out`` as soon as it is scored (a rerun skips what is there).

    .venv/bin/python -m benchmarks.samplers --models runs/default-table --cells etth1-128 stock-128 exchange-128 \\
        --out results/samplers/default-8min.jsonl
    .venv/bin/python -m benchmarks.samplers --models runs/default-recipe --cells synthetic-7-128 weather-128 \
        --out results/samplers/unseen.jsonl
    .venv/bin/python -m benchmarks.samplers --table results/samplers/default-8min.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.default_recipe import DATASETS as UNSEEN
from benchmarks.default_recipe import heldout_part
from benchmarks.machine import describe_machine
from benchmarks.models import with_config
from stagediff import StageDiff
from stagediff.evaluation import protocol_windows
from stagediff.metrics import evaluate
from stagediff.runtime import configure_threads

SETTINGS = ["ddpm:200", "ddim:50", "ddim:10:1", "ddim:20:1", "ddim:50:1"]
METRICS = ["discriminative", "predictive", "detection", "texture"]


def parse_setting(text: str) -> tuple[str, int, float | None]:
    parts = text.split(":")
    return parts[0], int(parts[1]), float(parts[2]) if len(parts) > 2 else None


def seconds_per_64(model: StageDiff, sampler: str, steps: int, starts: list | None) -> float:
    """Seconds for 64 windows, at the first real windows' starts (repeated when there are fewer), after a warm-up."""
    at = None if starts is None else (starts * 64)[:64]
    warm = None if at is None else at[:8]
    model.sample_array(8, sampler=sampler, steps=min(steps, 5), start=warm, progress=False)  # warm-up
    started = time.perf_counter()
    model.sample_array(64, seed=1, sampler=sampler, steps=steps, start=at, progress=False)
    return time.perf_counter() - started


def real_windows(model: StageDiff, dataset: str, args: argparse.Namespace) -> tuple[np.ndarray, list | None]:
    """(real windows, their first timestamps or None): the synthetic windows start where the real ones do, so
    that they are windows of the model's series and not continuations of the data's end."""
    if dataset in UNSEEN:
        fraction = model.config.validation_fraction
        _, real, _, starts = heldout_part(UNSEEN[dataset](), model.config.window, fraction, args.n, args.seed)
    else:
        real, _, _, starts = protocol_windows(model, dataset, "paper", args.n, args.seed, args.data_dir)
    return real, None if starts is None else list(starts)


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["cell"], r["setting"]) for r in read(out)} if out.exists() else set()
    machine = describe_machine()
    for cell in args.cells:
        folder = next(Path(args.models).glob(f"{cell}*/model"))
        base = StageDiff.load(folder)
        real, starts = real_windows(base, cell.rsplit("-", 1)[0], args)
        for setting in args.settings:
            if (cell, setting) in done:
                continue
            sampler, steps, eta = parse_setting(setting)
            model = base if eta is None else with_config(base, ddim_eta=eta)
            started = time.perf_counter()
            synthetic = model.sample_array(
                len(real), seed=args.seed, sampler=sampler, steps=steps, start=starts, progress=False
            )
            sampling = time.perf_counter() - started
            scores = evaluate(
                real,
                synthetic,
                metrics=METRICS,
                repeats=args.repeats,
                seed=args.seed,
                channels=[str(c) for c in base.metadata["channels"]],
            )
            texture = scores["texture"]
            row = {
                "cell": cell,
                "setting": setting,
                "sampler": sampler,
                "steps": steps,
                "eta": eta,
                "discriminative": scores["discriminative"]["values"],
                "predictive": scores["predictive"]["values"],
                "detection": scores["detection"]["mean"],
                "detection_baseline": scores["detection"]["real_baseline"],
                "step_spread_ratio": texture["step_spread_ratio"],
                "roughness_ratio": texture["roughness_ratio"],
                "step_correlation_error": texture["step_correlation_error"],
                "seconds_per_64": seconds_per_64(model, sampler, steps, starts),
                "sampling_seconds": sampling,
                "scoring_seconds": sum(v["seconds"] for k, v in scores.items() if k != "settings"),
                "n": len(real),
                "repeats": args.repeats,
                "seed": args.seed,
                "model": str(folder),
                "machine": machine,
            }
            with out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "cell",
                            "setting",
                            "discriminative",
                            "predictive",
                            "detection",
                            "step_spread_ratio",
                            "seconds_per_64",
                        )
                    }
                ),
                flush=True,
            )


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(paths: list[str]) -> str:
    """The rows of ``paths`` grouped by cell (in order of first appearance): DDPM, deterministic DDIM, then the
    ancestral settings by their number of evaluations; the default's rows (ancestral, 20) in bold."""
    rows = [r for p in paths for r in read(Path(p))]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    rank = {"ddpm": 0, "ddim": 1}
    rows.sort(key=lambda r: (cells.index(r["cell"]), rank[r["sampler"]] + (r["eta"] is not None), r["steps"]))
    lines = [
        "| cell | sampler | evaluations | disc (judges) | pred | detection AUC (real vs real) | step spread | "
        "roughness | step corr err | s / 64 windows |",
        "|---" * 10 + "|",
    ]
    for r in rows:
        disc = r["discriminative"]
        name = r["sampler"] + (f" eta={r['eta']:g}" if r["eta"] is not None else "")
        name = f"**{name}**" if (r["sampler"], r["steps"], r["eta"]) == ("ddim", 20, 1.0) else name
        lines.append(
            f"| {r['cell']} | {name} | {r['steps']} | {np.mean(disc):.3f} ({', '.join(f'{d:.3f}' for d in disc)})"
            f" | {np.mean(r['predictive']):.3f} | {r['detection']:.3f} ({r['detection_baseline']:.3f}) | "
            f"{r['step_spread_ratio']:.2f} | {r['roughness_ratio']:.2f} | {r['step_correlation_error']:.2f} | "
            f"{r['seconds_per_64']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="runs/default-table")
    parser.add_argument(
        "--cells", nargs="+", default=[f"{d}-{w}" for w in (128, 256) for d in ("etth1", "stock", "exchange")]
    )
    parser.add_argument("--settings", nargs="+", default=SETTINGS)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/samplers/default-8min.jsonl")
    parser.add_argument("--table", nargs="+", metavar="JSONL", help="print the markdown table of these results")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    configure_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
