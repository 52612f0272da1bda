"""PNG pictures of samples and of their evaluation (matplotlib, headless; t-SNE and PCA from scikit-learn)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from stagediff.generator import SAMPLE_COLUMN
from stagediff.metrics.inputs import subsample


def plot_samples(
    samples: pd.DataFrame,
    path: str | os.PathLike,
    real: np.ndarray | None = None,
    channels: list[str] | None = None,
    max_samples: int = 4,
    title: str | None = None,
) -> Path:
    """One panel per channel with up to ``max_samples`` synthetic series overlaid and, when ``real``
    (length, channels) is given, a real stretch of the same length in black for comparison."""
    plt = _pyplot()
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
    return _save(figure, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    _pyplot().close(figure)
    return target


def _summaries(windows: np.ndarray) -> np.ndarray:
    """(n, length, channels) -> (n, length): the per-step channel mean, the usual input of TimeGAN's
    t-SNE/PCA pictures (Yoon et al. 2019, visualization_metrics.py)."""
    return windows.mean(axis=2)


def plot_embeddings(
    real: np.ndarray, synthetic: np.ndarray, directory: str | os.PathLike, seed: int = 0, max_windows: int = 1000
) -> list[Path]:
    """PCA and t-SNE of real versus synthetic windows ((n, length, channels), same scale), as two PNGs:
    ``pca.png`` and ``tsne.png``. At most ``max_windows`` of each are drawn (seeded subsample)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    real_points = _summaries(subsample(real, max_windows, rng))
    synthetic_points = _summaries(subsample(synthetic, max_windows, rng))
    together = np.concatenate([real_points, synthetic_points])
    projections = {
        "pca": PCA(n_components=2, random_state=seed).fit(real_points).transform(together),
        "tsne": TSNE(
            n_components=2, perplexity=min(40, len(together) // 4), random_state=seed, init="pca"
        ).fit_transform(together),
    }
    plt = _pyplot()
    written = []
    for name, points in projections.items():
        figure, axis = plt.subplots(figsize=(6, 6))
        axis.scatter(*points[: len(real_points)].T, s=6, alpha=0.5, color="tab:red", label="real")
        axis.scatter(*points[len(real_points) :].T, s=6, alpha=0.5, color="tab:blue", label="synthetic")
        axis.set_title(f"{name.upper()}: real vs synthetic windows")
        axis.legend()
        written.append(_save(figure, Path(directory) / f"{name}.png"))
    return written


def plot_overlays(
    real: np.ndarray, synthetic: np.ndarray, path: str | os.PathLike, channels: list[str], count: int = 5, seed: int = 0
) -> Path:
    """Per channel, ``count`` real windows (left) and ``count`` synthetic windows (right), same axes."""
    rng = np.random.default_rng(seed)
    real, synthetic = subsample(real, count, rng), subsample(synthetic, count, rng)
    plt = _pyplot()
    figure, axes = plt.subplots(
        len(channels), 2, figsize=(12, 1.8 * len(channels)), sharex=True, sharey="row", squeeze=False
    )
    for row, channel in enumerate(channels):
        for column, (name, windows) in enumerate((("real", real), ("synthetic", synthetic))):
            axes[row, column].plot(windows[:, :, row].T, linewidth=0.8)
            if row == 0:
                axes[row, column].set_title(name)
        axes[row, 0].set_ylabel(str(channel), rotation=0, ha="right")
    return _save(figure, path)


def plot_autocorrelation(
    real: np.ndarray, synthetic: np.ndarray, path: str | os.PathLike, channels: list[str], max_lag: int | None = None
) -> Path:
    """Mean per-window autocorrelation per channel up to ``max_lag``, real (black) vs synthetic (blue)."""
    lags = min(real.shape[1] - 1, max_lag or 100)

    def mean_acf(windows: np.ndarray) -> np.ndarray:
        centred = windows - windows.mean(axis=1, keepdims=True)
        variance = (centred**2).sum(axis=1) + 1e-12
        return np.stack(
            [(centred[:, : windows.shape[1] - k] * centred[:, k:]).sum(axis=1) / variance for k in range(lags + 1)]
        ).mean(axis=1)  # (lags + 1, channels)

    real_acf, synthetic_acf = mean_acf(real), mean_acf(synthetic)
    plt = _pyplot()
    columns = min(4, len(channels))
    rows = -(-len(channels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.5 * columns, 2.6 * rows), squeeze=False)
    for index, channel in enumerate(channels):
        axis = axes[index // columns, index % columns]
        axis.plot(real_acf[:, index], color="black", label="real")
        axis.plot(synthetic_acf[:, index], color="tab:blue", label="synthetic")
        axis.set_title(str(channel))
        axis.set_xlabel("lag")
    for index in range(len(channels), rows * columns):
        axes[index // columns, index % columns].axis("off")
    axes[0, 0].legend(fontsize="small")
    return _save(figure, path)


def plot_long_sample_statistics(
    real: np.ndarray,
    sample: np.ndarray,
    path: str | os.PathLike,
    channels: list[str],
    window: int,
    reference: np.ndarray | None = None,
    excursions: float | None = None,
) -> Path:
    """Per channel the rolling mean (left) and rolling standard deviation (right) over ``window`` steps of long
    samples (length, channels) or (n, length, channels) in blue and of a real stretch (length', channels) in
    black, over the grey band of the real 1-99 % range of each statistic (from ``reference``, the whole real
    series, default ``real``): a sample that leaves the band drifts or changes its spread where the data never
    does. ``excursions``: the "horizon" share of rolling windows outside the band, for the title."""
    from stagediff.metrics.horizon import real_ranges, rolling_statistics

    samples = sample[None] if sample.ndim == 2 else sample
    ranges = real_ranges(reference if reference is not None else real, window)
    statistics = {"real": rolling_statistics(real, window), "sample": rolling_statistics(samples, window)}
    plt = _pyplot()
    figure, axes = plt.subplots(len(channels), 2, figsize=(12, 1.8 * len(channels)), squeeze=False)
    for row, channel in enumerate(channels):
        for column, stat in enumerate(("mean", "std")):
            axis = axes[row, column]
            axis.axhspan(*ranges[stat][:, row], color="0.88", label="real 1-99 %")
            real_values = statistics["real"][column][:, row]
            axis.plot(np.arange(len(real_values)) + window, real_values, color="black", linewidth=0.8, label="real")
            for number, values in enumerate(statistics["sample"][column][..., row]):
                axis.plot(
                    np.arange(len(values)) + window,
                    values,
                    color="tab:blue",
                    linewidth=0.8,
                    alpha=0.7,
                    label="samples" if number == 0 else None,
                )
        axes[row, 0].set_ylabel(str(channel), rotation=0, ha="right")
    axes[0, 0].set_title(f"rolling mean ({window} steps)")
    axes[0, 1].set_title(f"rolling standard deviation ({window} steps)")
    axes[0, 0].legend(fontsize="small")
    axes[-1, 0].set_xlabel("time step (window end)")
    if excursions is not None:
        figure.suptitle(
            f"long samples: {100 * excursions:.1f} % of rolling statistics outside the real 1-99 % band "
            f"(real data: about 2 %)"
        )
    return _save(figure, path)
