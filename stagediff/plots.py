"""PNG pictures of samples (matplotlib, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from stagediff.generator import SAMPLE_COLUMN


def plot_samples(samples: pd.DataFrame, path: str | os.PathLike, real: np.ndarray | None = None,
                 channels: list[str] | None = None, max_samples: int = 4, title: str | None = None) -> Path:
    """One panel per channel with up to ``max_samples`` synthetic series overlaid and, when ``real``
    (length, channels) is given, a real stretch of the same length in black for comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    non_channels = {SAMPLE_COLUMN, samples.columns[1]}
    channels = channels or [c for c in samples.columns if c not in non_channels]
    figure, axes = plt.subplots(len(channels), 1, figsize=(12, 1.8 * len(channels)), sharex=True, squeeze=False)
    groups = list(samples.groupby(SAMPLE_COLUMN))[:max_samples]
    for row, channel in enumerate(channels):
        axis = axes[row, 0]
        if real is not None:
            axis.plot(real[:, row], color="black", linewidth=1.0, label="real")
        for number, group in groups:
            axis.plot(group[channel].to_numpy(), linewidth=0.8, alpha=0.8, label=f"sample {number}")
        axis.set_ylabel(str(channel), rotation=0, ha="right")
    axes[0, 0].legend(loc="upper right", fontsize="small", ncol=max_samples + 1)
    axes[-1, 0].set_xlabel("time step")
    figure.suptitle(title or "stagediff samples")
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target
