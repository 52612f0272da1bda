"""The two defects of the literal Stage-Diff reading (stage-diff.md section 5), measured: roughness of the
samples and jumps at stage seams, for the literal model and for the defaults.

    .venv/bin/python -m benchmarks.seams --variant default --steps 600 --out results/benchmarks/seams-default.json
    .venv/bin/python -m benchmarks.seams --variant literal --steps 600 --out results/benchmarks/seams-literal.json

Trains on ETTh1 (window 256, held-out last 10 %), samples 64 windows with DDIM-50 and with DDPM (200 steps) and
compares with 64 real windows, all in the model's scaled units [-1, 1]:
- roughness: mean |x[t+1] - x[t]| over all steps and channels;
- seam ratio: mean |x[t+1] - x[t]| across stage boundaries divided by the same inside stages (1 = no seam).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.windows import training_starts
from stagediff import StageDiff, StageDiffConfig
from stagediff.data import load_series, sliding_windows
from stagediff.runtime import configure_threads

VARIANTS = {  # changes to StageDiffConfig's defaults (pool_kernels (25, 1), heads 1, context 8, both fixes on)
    "default": {},
    "skip_parametrization": {"skip_parametrization": True},
    "literal": {"context": 0, "pool_kernels": (25, 13, 5), "heads": 2, "input_skip": False, "seam_blend": False},
    "three_scales": {"pool_kernels": (25, 9, 1), "heads": 2},
    "two_scales_blend": {"heads": 2},
    "no_seam_blend": {"pool_kernels": (25, 9, 1), "heads": 2, "seam_blend": False},
    "no_input_skip": {"pool_kernels": (25, 9, 1), "heads": 2, "input_skip": False, "seam_blend": False},
    "context16": {"pool_kernels": (25, 9, 1), "heads": 2, "context": 16, "input_skip": False, "seam_blend": False},
    "two_scales": {"heads": 2, "seam_blend": False},
}


def step_statistics(windows: np.ndarray, stage_length: int) -> dict:
    """windows (n, length, channels) -> roughness and seam ratio."""
    steps = np.abs(np.diff(windows, axis=1))  # (n, length - 1, channels); step t goes from t to t+1
    seam = np.zeros(steps.shape[1], dtype=bool)
    seam[stage_length - 1 :: stage_length] = True
    return {
        "roughness": float(steps.mean()),
        "seam_jump": float(steps[:, seam].mean()),
        "inside_step": float(steps[:, ~seam].mean()),
        "seam_ratio": float(steps[:, seam].mean() / steps[:, ~seam].mean()),
    }


def table(paths: list[Path]) -> str:
    """Markdown table of saved results (one JSON per variant)."""
    lines = [
        "| variant | changes from the defaults | train s | final loss | roughness DDIM / DDPM / real "
        "| seam ratio DDIM / DDPM / real |",
        "|---|---|---|---|---|---|",
    ]
    for path in paths:
        r = json.loads(path.read_text())
        ddim, ddpm, real = r["samples_ddim"], r["samples_ddpm"], r["real"]
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "-"
        lines.append(
            f"| {r['variant']} | {changes} | {r['train_seconds']:.0f} | {r['final_loss']:.4f} | "
            f"{ddim['roughness']:.3f} / {ddpm['roughness']:.3f} / {real['roughness']:.3f} | "
            f"{ddim['seam_ratio']:.2f} / {ddpm['seam_ratio']:.2f} / {real['seam_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", nargs="+", type=Path, help="print a markdown table of saved result files and exit")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="default")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    configure_threads(args.threads)
    config = StageDiffConfig(
        window=256, max_steps=args.steps, batch_size=32, checkpoint_every=args.steps, **VARIANTS[args.variant]
    )
    started = time.perf_counter()
    model = StageDiff(config).fit("etth1", progress=False)
    seconds = time.perf_counter() - started
    samples = {
        sampler: model.scaler.transform(
            model.sample_array(64, 256, seed=0, sampler=sampler, start=training_starts(model, 64), progress=False)
        )
        for sampler in ("ddim", "ddpm")
    }
    values = model.scaler.transform(load_series("etth1").values)
    windows = sliding_windows(values, 256)
    real = windows[np.random.default_rng(0).choice(len(windows), 64, replace=False)]
    report = {
        "variant": args.variant,
        "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in VARIANTS[args.variant].items()},
        "train_steps": args.steps,
        "batch": 32,
        "train_seconds": round(seconds, 1),
        "final_loss": model.losses[-1],
        **{f"samples_{name}": step_statistics(values, config.stage_length) for name, values in samples.items()},
        "real": step_statistics(real, config.stage_length),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
