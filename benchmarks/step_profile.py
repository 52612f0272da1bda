"""Where one training step of a benchmark cell spends its time: seconds per step on a device with the
default and with one torch thread, then the torch profiler's heaviest operators over a few steps.

    # the window-128 and window-256 ETTh1 cells of docs/benchmarks.md ("Training on a GPU"), on CUDA
    STAGEDIFF_DATA_DIR=../shared/datasets python3 -m benchmarks.step_profile etth1 128 --device cuda
    STAGEDIFF_DATA_DIR=../shared/datasets python3 -m benchmarks.step_profile etth1 256 --device cuda \\
        --set d_model=64 --set feedforward=128 --set stage_attention=true

On CUDA the step is captured in a CUDA graph (stagediff.train); ``--eager`` launches each kernel from Python instead.
Launches: the profiler's count of cudaLaunchKernel, cuLaunchKernelEx and cudaGraphLaunch calls, per step. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from benchmarks.machine import describe_machine
from benchmarks.paper_table import parse_settings
from stagediff.data import load_series, prepare
from stagediff.recipe import cell_config
from stagediff.train import Trainer, build_denoiser


def seconds_per_step(trainer: Trainer, steps: int) -> float:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()  # returns the loss as a float, so each step waits for the device
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("window", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--eager", action="store_true", help="no CUDA graph on CUDA")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (after 20 unmeasured ones)")
    parser.add_argument("--profiled", type=int, default=10, help="profiled steps")
    args = parser.parse_args()
    changes = parse_settings(args.set)
    config = cell_config(args.dataset, args.window, 10**6, validation_fraction=0.0, **changes)
    prepared = prepare(load_series(args.dataset, min_length=args.window), args.window, 0.0)
    config = config.replace(channels=prepared.n_channels)
    trainer = Trainer(
        config,
        build_denoiser(config, prepared.n_channels),
        prepared.train,
        device=args.device,
        cuda_graph=False if args.eager else None,
    )
    default_threads = torch.get_num_threads()
    seconds_per_step(trainer, 20)
    result = {
        "dataset": args.dataset,
        "window": args.window,
        "changes": changes,
        "device": str(trainer.device),
        "cuda_graph": trainer.graphed,
        "machine": describe_machine(),
        "parameters": trainer.model.parameter_count(),
        f"s_per_step_{default_threads}_threads": round(seconds_per_step(trainer, args.steps), 4),
    }
    torch.set_num_threads(1)
    result["s_per_step_1_thread"] = round(seconds_per_step(trainer, args.steps), 4)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        seconds_per_step(trainer, args.profiled)
    events = profiler.key_averages()
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch"))
    result["launches_per_step"] = launches / args.profiled
    # kernels only, as the profiler's own "Self CUDA time total": a user annotation (the optimizer's step) is a
    # span of the device timeline, gaps included, on top of the kernels in it
    kernels = [e for e in profiler.events() if e.device_type == DeviceType.CUDA and not e.is_user_annotation]
    result["device_ms_per_step"] = round(sum(e.self_device_time_total for e in kernels) / 1000 / args.profiled, 2)
    result["host_ms_per_step"] = round(sum(e.self_cpu_time_total for e in events) / 1000 / args.profiled, 2)
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
