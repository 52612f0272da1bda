"""Known channels with observation guidance (issue 32), a probe not in the library: at every reverse step, besides
replacing the known values by their noised version, move the whole noisy series against the gradient of the
distance between the denoiser's x_0 estimate and the known values (diffusion posterior sampling, Chung et al. 2023,
with its step ``weight`` / that distance). One network evaluation and one backward pass per step, about 3x the time.

It runs on the default models that ``benchmarks.conditional --rare`` trained and saved (``--models``) and scores the
same held-out blocks, rare and common, with 10 draws per block.

    .venv/bin/python -m benchmarks.guidance --datasets etth1 --splits "HUFL,HULL,MUFL,MULL,LUFL,LULL|OT" \\
        --out results/conditional/guidance-etth1.json
    .venv/bin/python -m benchmarks.guidance --datasets synthetic --splits "load,price|temperature,wind,solar" \\
        --out results/conditional/guidance-synthetic.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import stagediff.sampling
from benchmarks.conditional import blocks_key, held_out_blocks
from benchmarks.machine import describe_machine
from stagediff import StageDiff
from stagediff.data import load_series
from stagediff.metrics.conditional import draw_scores
from stagediff.runtime import configure_threads

WEIGHT = {"value": 0.0}
replacement = stagediff.sampling.denoise_chunk


def guided_chunk(denoiser, sampler, noise, length, known=None, device=None, step_callback=None, calendar=None):
    """stagediff.sampling.denoise_chunk with the guidance step added (known values anywhere in the chunk)."""
    if known is None or WEIGHT["value"] == 0:
        return replacement(denoiser, sampler, noise, length, known, device, step_callback, calendar)
    device = device or next(denoiser.parameters()).device
    x = noise.draw((length, denoiser.channels), device)
    known = known.to(device=device, dtype=x.dtype)
    observed = torch.cat([known, known.new_full((x.shape[0], length - known.shape[1], x.shape[2]), float("nan"))], 1)
    mask, given = observed.isfinite(), observed.nan_to_num()
    calendar = None if calendar is None else calendar.to(device=device, dtype=x.dtype)
    for index, t in enumerate(sampler.timesteps):
        steps = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
        x = torch.where(mask, sampler.schedule.add_noise(given, noise.like(given), steps), x)
        with torch.enable_grad():
            noisy = x.detach().requires_grad_(True)
            x0 = denoiser(noisy, steps, calendar, None).float()
            distance = ((x0 - given) * mask).pow(2).sum(dim=(1, 2)).sqrt()
            (gradient,) = torch.autograd.grad(distance.sum(), noisy)
        x = sampler.step(sampler.clip(x0.detach()), index, x, noise) - WEIGHT["value"] * gradient
    return torch.where(mask, given, x).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["etth1"])
    parser.add_argument("--splits", required=True, help="targets|known channel names (the --rare run's)")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--length", type=int, default=192)
    parser.add_argument("--rare", type=float, default=0.2)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="runs/conditional")
    parser.add_argument("--out")
    args = parser.parse_args()
    configure_threads(1)
    stagediff.sampling.denoise_chunk = guided_chunk
    results = []
    for name in args.datasets:
        series = load_series(name)
        channels, length, values = list(series.channels), args.length, series.values
        target_names, known_names = (part.split(",") for part in args.splits.split("|"))
        targets, known = [channels.index(c) for c in target_names], [channels.index(c) for c in known_names]
        held, _, _ = held_out_blocks(values, known, length, args.rare, args.seed)
        removed = np.zeros(len(values), dtype=bool)
        for block in np.concatenate(list(held.values())):
            removed[block * length : (block + 1) * length] = True
        scale = values[~removed].std(axis=0)
        folder = f"{name}-{args.window}-{args.steps}-rare-{blocks_key(held)}-without"
        model = StageDiff.load(Path(args.models) / folder)
        entry: dict = {"dataset": name, "split": args.splits}
        for group, blocks in held.items():
            for weight in args.weights:
                WEIGHT["value"] = weight
                found, started = [], time.perf_counter()
                for number, block in enumerate(blocks):
                    first = block * length
                    real = values[first : first + length]
                    given = pd.DataFrame(real[:, known], columns=known_names)
                    given.insert(0, series.time_column, series.timestamps[first : first + length])
                    draws = model.sample_array(args.draws, length, seed=args.seed + number, known=given)
                    found.append(draw_scores(draws[..., targets], real[:, targets], scale[targets]))
                entry[f"{group} @ weight {weight:g}"] = {
                    **{key: round(float(np.mean([f[key] for f in found])), 4) for key in found[0]},
                    "seconds": round(time.perf_counter() - started, 1),
                }
                print(name, group, weight, json.dumps(entry[f"{group} @ weight {weight:g}"]), flush=True)
        results.append(entry)
    if args.out:
        found = {"machine": describe_machine(), "settings": vars(args), "results": results}
        Path(args.out).write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
