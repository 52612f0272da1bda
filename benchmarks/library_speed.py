"""Speed and memory of the library on ETTh1 (7 channels): training and sampling per window length, and
one long series. Each measurement runs in its own subprocess so that peak memory (max RSS) is its own.

    .venv/bin/python -m benchmarks.library_speed --out results/benchmarks/benchmarks-library.json

Prints a markdown table (the one in docs/benchmarks.md) and writes the raw numbers as JSON.
Not a test: timings on a shared machine are noisy; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import describe_machine

WINDOWS = (24, 64, 128, 256)
# Diffusion-TS reference for ETTh on this kind of 2-core machine (issue 2): s/step at batch 256, s per
# 64 windows with DDIM-50.
DIFFUSION_TS = {24: (0.64, 3.6), 64: (1.6, 7.2), 128: (5.2, 21.0), 256: (13.3, 85.0)}


def config_for(window: int, **extra):
    """The default configuration, with a stage length that divides the window, and channels modelled apart (the
    default recipe chooses that from the data at fit time; these measurements build the denoiser directly)."""
    from stagediff import StageDiffConfig

    extra = {"channel_independent": True, **extra}

    if window % 32 == 0:
        return StageDiffConfig(window=window, **extra)
    return StageDiffConfig(
        window=window, stage_length=8, context=4, patch_length=4, patch_stride=4, pool_kernels=(7, 3, 1), **extra
    )


def etth1_windows(window: int):
    import numpy as np

    from stagediff.data import MinMaxScaler, load_series

    series = load_series("etth1")
    scaled = MinMaxScaler.fit(series.values).transform(series.values)
    return np.ascontiguousarray(scaled.astype("float32")), series.n_channels


def measure_training(window: int, batch: int, steps: int) -> dict:
    from stagediff.train import Trainer, build_denoiser

    series, channels = etth1_windows(window)
    config = config_for(window, batch_size=batch, max_steps=10_000, warmup_steps=1)
    trainer = Trainer(config, build_denoiser(config, channels), series, device="cpu")
    trainer.train_step()  # warm-up
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]
    return {
        "parameters": trainer.model.parameter_count(),
        "seconds_per_step": seconds,
        "windows_per_second": batch / seconds,
    }


def measure_sampling(window: int, n: int, sampler: str) -> dict:
    from stagediff.diffusion import Noise, make_sampler
    from stagediff.sampling import generate
    from stagediff.train import build_denoiser

    config = config_for(window)
    denoiser = build_denoiser(config, 7).eval().batch_invariant()
    chosen = make_sampler(config, sampler)
    started = time.perf_counter()
    generate(denoiser, chosen, Noise.seeded(0, n), window, chunk_length=window, overlap=config.effective_stage_length)
    return {"seconds": time.perf_counter() - started, "reverse_steps": len(chosen.timesteps)}


def measure_long(length: int, window: int) -> dict:
    from stagediff.diffusion import Noise, make_sampler
    from stagediff.generator import CHUNK_WINDOWS
    from stagediff.sampling import generate
    from stagediff.train import build_denoiser

    config = config_for(window)
    denoiser = build_denoiser(config, 7).eval().batch_invariant()
    chunk, overlap = CHUNK_WINDOWS * window, window // 4  # the library's defaults for long samples
    started = time.perf_counter()
    out = generate(
        denoiser, make_sampler(config, "ddim", 50), Noise.seeded(0, 1), length, chunk_length=chunk, overlap=overlap
    )
    assert out.shape == (1, length, 7)
    return {
        "seconds": time.perf_counter() - started,
        "length": length,
        "window": window,
        "chunk": chunk,
        "overlap": overlap,
    }


def child(task: dict) -> None:
    import torch

    torch.set_num_threads(task["threads"])
    kind = task["kind"]
    if kind == "train":
        result = measure_training(task["window"], task["batch"], task["steps"])
    elif kind == "sample":
        result = measure_sampling(task["window"], task["n"], task["sampler"])
    else:
        result = measure_long(task["length"], task["window"])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run(task: dict) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": task.get("wait_policy", "PASSIVE")}
    command = [sys.executable, "-m", "benchmarks.library_speed", "--child", json.dumps(task)]
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    print(f"  {task} -> {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--out", default="results/benchmarks/benchmarks-library.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--long-length", type=int, default=10_000)
    parser.add_argument("--skip-ddpm", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    threads = args.threads
    rows = {}
    for window in WINDOWS:
        row = {
            "train_b64": run(
                {"kind": "train", "window": window, "batch": 64, "steps": args.train_steps, "threads": threads}
            ),
            "ddim50_64": run({"kind": "sample", "window": window, "n": 64, "sampler": "ddim", "threads": threads}),
        }
        if not args.skip_ddpm:
            row["ddpm_64"] = run({"kind": "sample", "window": window, "n": 64, "sampler": "ddpm", "threads": threads})
        rows[window] = row
    threads_compare = {
        f"{t}_{policy}": run(
            {"kind": "train", "window": 256, "batch": 64, "steps": 3, "threads": t, "wait_policy": policy}
        )
        for t in (1, 2)
        for policy in ("PASSIVE", "ACTIVE")
    }
    long = run({"kind": "long", "length": args.long_length, "window": 256, "threads": threads})
    report = {
        "machine": describe_machine(),
        "threads": threads,
        "date": time.strftime("%Y-%m-%d"),
        "windows": rows,
        "threads_comparison_train_w256_b64": threads_compare,
        "long_series": long,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(table(report))


def table(report: dict) -> str:
    lines = [
        f"Machine: {report['machine']}; torch threads {report['threads']}; {report['date']}.",
        "",
        "| window | parameters | train s/step (b64) | windows/s | Diffusion-TS windows/s | ratio | peak MB (train) "
        "| 64 windows DDIM-50 s | Diffusion-TS s | 64 windows DDPM s (steps) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for window, row in report["windows"].items():
        window = int(window)
        train, ddim = row["train_b64"], row["ddim50_64"]
        dts_step, dts_sample = DIFFUSION_TS[window]
        dts_rate = 256 / dts_step
        ddpm = row.get("ddpm_64")
        ddpm_text = f"{ddpm['seconds']:.1f} ({ddpm['reverse_steps']})" if ddpm else "-"
        lines.append(
            f"| {window} | {train['parameters']:,} | {train['seconds_per_step']:.3f} | "
            f"{train['windows_per_second']:.0f} | {dts_rate:.0f} | {train['windows_per_second'] / dts_rate:.1f}x | "
            f"{train['peak_rss_mb']:.0f} | {ddim['seconds']:.1f} | {dts_sample:.1f} | {ddpm_text} |"
        )
    long = report["long_series"]
    lines += [
        "",
        f"One {long['length']:,}-step 7-channel series (window {long['window']}, chunks of {long['chunk']} "
        f"with {long['overlap']} steps of overlap, DDIM-50): "
        f"{long['seconds']:.1f} s, peak RSS {long['peak_rss_mb']:.0f} MB.",
        "",
        "| threads, OMP_WAIT_POLICY | train s/step, window 256, batch 64 |",
        "|---|---|",
    ]
    for name, result in report["threads_comparison_train_w256_b64"].items():
        lines.append(f"| {name.replace('_', ', ')} | {result['seconds_per_step']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
