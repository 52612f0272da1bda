"""Sampling speed (issue 33): 64 windows of 256 and one 10,000-step 7-channel series with the default-width
model, per sampler setting, with 1 and 2 torch threads, eager against ``torch.compile``, the hand-written
attention against torch's fused ``scaled_dot_product_attention``, and torch with its oneDNN kernels (the default)
against torch without them (``no-onednn``). Weights are freshly initialised (speed does not
depend on them); every variant's samples are checked against the eager ones. Each measurement is the median of
``--repeats`` after one warm-up call.

    .venv/bin/python -m benchmarks.sampling_speed --out results/samplers/speed.json

With ``--fitted DATASET ...``: what a user waits for instead. The default recipe is fit to each dataset for
``--fit-steps`` steps (its data-dependent choices, such as modelling the channels jointly or apart and the
calendar, are what set the cost; the weights are not), then ``StageDiff.sample_array`` is timed for 1 and 64
samples of one window and one sample of ``--length`` steps: each at a start inside the data ("at a start"), and
continuing the data from its end (guided toward it), which is what a sample without a start gets on data with a
time axis. ``--memory N LENGTH`` adds the peak memory of a fresh process that samples N x LENGTH either way.

    .venv/bin/python -m benchmarks.sampling_speed --fitted etth1 stock exchange --out results/samplers/speed-fitted.json

Not a test: timings on a shared machine are noisy; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from einops import rearrange

from benchmarks.machine import describe_machine
from stagediff import StageDiff, StageDiffConfig
from stagediff.data import load_series
from stagediff.diffusion import Noise, make_sampler
from stagediff.generator import CHUNK_WINDOWS
from stagediff.model.layers import Attention
from stagediff.runtime import configure_threads
from stagediff.sampling import generate
from stagediff.train import build_denoiser

CHANNELS = 7


def fused_attention(
    self: Attention, queries: torch.Tensor, keys_values: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention.forward with torch's fused kernel in place of the hand-written product and softmax."""
    q = rearrange(self.query(queries), "n p (h e) -> n h p e", h=self.heads)
    k, v = rearrange(self.key_value(keys_values), "n q (two h e) -> two n h q e", two=2, h=self.heads)
    mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return self.output(rearrange(mixed, "n h p e -> n p (h e)"))


def timed(function, repeats: int) -> tuple[float, torch.Tensor]:
    result = function()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(config: StageDiffConfig, sampler: str, steps: int, variant: str, repeats: int, long: int) -> dict:
    denoiser = build_denoiser(config, CHANNELS).eval().batch_invariant()
    original = Attention.forward
    if variant == "fused":
        Attention.forward = fused_attention
    # "no-onednn": torch without oneDNN (a process-wide switch), so convolutions and GELU take torch's own kernels
    try:
        with torch.backends.mkldnn.flags(enabled=variant != "no-onednn"):
            model = torch.compile(denoiser) if variant == "compile" else denoiser
            chosen = make_sampler(config, sampler, steps)
            window = config.window
            started = time.perf_counter()
            windows, batch = timed(
                lambda: generate(
                    model,
                    chosen,
                    Noise.seeded(0, 64),
                    window,
                    chunk_length=window,
                    overlap=config.effective_stage_length,
                ),
                repeats,
            )
            first_call = time.perf_counter() - started - windows * (repeats + 1)
            chunk = CHUNK_WINDOWS * window
            series, _ = timed(
                lambda: generate(model, chosen, Noise.seeded(0, 1), long, chunk_length=chunk, overlap=window // 4), 1
            )
    finally:
        Attention.forward = original
    return {"windows_64": windows, "series": series, "warmup_extra": max(first_call, 0.0), "batch": batch}


PEAK_MEMORY = """
import json, sys
from stagediff import StageDiff
from stagediff.runtime import configure_threads
configure_threads(1)
model = StageDiff.load(sys.argv[1])
n, length, start = int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
if n:
    model.sample_array(n, length, seed=0, start=start, progress=False)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(peak.split()[1]) // 1024)
"""
"""A fresh process's peak resident memory (VmHWM; not ru_maxrss, which Linux carries over from the parent through
fork and exec) after loading a model and sampling once."""


def peak_memory(folder: Path, n: int, length: int, start) -> int:
    """Peak resident MB of a fresh process that loads the model in ``folder`` and samples ``n`` x ``length`` from
    ``start`` (n = 0: loads only)."""
    command = [sys.executable, "-c", PEAK_MEMORY, str(folder), str(n), str(length), json.dumps(start, default=str)]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def fitted(name: str, steps: int, repeats: int, long: int, memory: tuple[int, int] | None = None) -> dict:
    """Median seconds of the user-facing sampling calls on the default recipe fit to ``name`` (module docstring)."""
    series = load_series(name)
    frame = pd.DataFrame(series.values, columns=list(series.channels))
    if series.time_column:
        frame.insert(0, series.time_column, series.timestamps)
    model = StageDiff(StageDiffConfig(max_steps=steps)).fit(frame, series.time_column, progress=False)
    window = model.config.window
    # a start inside the data, and the one right after it (what a sample without a start gets on a timed model)
    inside = series.timestamps[series.length // 2] if series.time_column else series.length // 2
    after = None if series.time_column else series.length
    calls = {
        f"1 x {window}": (1, window),
        f"64 x {window}": (64, window),
        f"1 x {long}": (1, long),
    }
    result = {
        "dataset": name,
        "channels": len(series.channels),
        "window": window,
        "channel_independent": model.config.channel_independent,
        "calendar": list(model.config.calendar or []),
        "guidance": model.config.guidance,
        "sampler": f"{model.config.sampler} x {model.config.sampling_steps}",
        "timings": {},
    }
    for label, (n, length) in calls.items():
        for where, start in (("at a start", [inside] * n), ("continuing the data", after)):
            call = partial(model.sample_array, n, length, seed=0, start=start, progress=False)
            seconds, _ = timed(call, repeats)
            result["timings"][f"{label}, {where}"] = round(seconds, 3)
            print(name, label, where, round(seconds, 3), flush=True)
    if memory:
        n, length = memory
        with tempfile.TemporaryDirectory() as folder:
            model.save(Path(folder) / "model")
            result["peak_mb"] = {"loaded": peak_memory(Path(folder) / "model", 0, length, None)}
            for where, start in (("at a start", inside), ("continuing the data", after)):
                result["peak_mb"][f"{n} x {length}, {where}"] = peak_memory(Path(folder) / "model", n, length, start)
        print(name, "peak MB", result["peak_mb"], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["ddim:20", "ddim:10", "ddim:50", "ddpm:200"])
    parser.add_argument("--variants", nargs="+", default=["eager", "fused", "compile"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--length", type=int, default=10_000)
    parser.add_argument("--fitted", nargs="+", metavar="DATASET", help="time the user-facing calls instead")
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument(
        "--memory", nargs=2, type=int, metavar=("N", "LENGTH"), help="with --fitted, also peak memory of N x LENGTH"
    )
    parser.add_argument("--out", default="results/samplers/speed.json")
    args = parser.parse_args()
    if args.fitted:
        configure_threads(args.threads[0])
        results = [fitted(name, args.fit_steps, args.repeats, args.length, args.memory) for name in args.fitted]
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": describe_machine(), "results": results}, indent=2) + "\n")
        return
    config = StageDiffConfig(window=256, channels=CHANNELS, channel_independent=True)
    rows = []
    for threads in args.threads:
        configure_threads(threads)
        for setting in args.settings:
            sampler, steps = setting.split(":")[0], int(setting.split(":")[1])
            reference = None
            for variant in args.variants:
                result = measure(config, sampler, int(steps), variant, args.repeats, args.length)
                batch = result.pop("batch")
                reference = batch if reference is None else reference
                row = {
                    "threads": threads,
                    "setting": setting,
                    "variant": variant,
                    **result,
                    "max_difference_from_eager": float((batch - reference).abs().max()),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": describe_machine(),
                "window": 256,
                "channels": CHANNELS,
                "series_length": args.length,
                "config": config.to_dict(),
                "rows": rows,
            },
            indent=2,
        )
    )
    print("| threads | sampler | variant | 64 windows of 256 (s) | 10,000-step series (s) | max diff from eager |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['threads']} | {r['setting']} | {r['variant']} | {r['windows_64']:.2f} | {r['series']:.2f} | "
            f"{r['max_difference_from_eager']:.1e} |"
        )


if __name__ == "__main__":
    main()
