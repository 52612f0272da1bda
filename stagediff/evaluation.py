"""Judge a trained generator on data under one of the two protocols of docs/evaluation.md, with metrics
and pictures.

- ``paper``: real windows are all stride-1 windows of the whole series (as the published tables do), which is
  also the training series: the copy detector's baseline is real windows against the training windows that
  do not overlap them;
- ``heldout``: the generator's own chronological split; real windows come from the held-out part only
  (no window crosses the split), the copy detector's baseline.

Besides the metrics of :func:`stagediff.metrics.evaluate`, the generator draws long samples here (once) for the
metric ``horizon`` (:func:`stagediff.metrics.horizon.horizon_excursions` against the whole real series) and
the picture ``long_sample.png``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stagediff.data import load_series, sliding_windows, split_by_time
from stagediff.data.expectations import HELD_OUT_WINDOWS
from stagediff.diffusion import sampling_choice
from stagediff.errors import DataError
from stagediff.generator import StageDiff
from stagediff.metrics import METRICS, choose_metrics, evaluate
from stagediff.metrics.copying import has_apart_windows
from stagediff.metrics.horizon import horizon_excursions
from stagediff.metrics.inputs import choose, subsample

PROTOCOLS = ("paper", "heldout")
OWN_FLOOR = ("discriminative", "detection", "detection_cnn", "texture")
"""Metrics also scored, under ``heldout``, for the training windows against the held-out ones (``real_own``)."""
MAX_WINDOWS = 1000
"""Default cap on real (and as many synthetic) windows per evaluation."""
LONG_SAMPLES = 4
"""Long samples drawn for the "horizon" metric and the long-sample picture."""
SAMPLED_METRICS = ("horizon",)
"""Metrics scored here, not in :func:`stagediff.metrics.evaluate`: they draw long samples from the generator."""


def protocol_windows(
    model: StageDiff, data: Any, protocol: str, n: int, seed: int, data_dir: Any = None, time_column: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, pd.Index | None]:
    """(at most ``n`` real windows, the training windows, the whole series, the real windows' first timestamps or
    None without a time column) in data units: the model's channel columns of ``data`` (its time column:
    ``time_column``, default the model's). Under ``paper`` the training windows are every stride-1 window of the
    series (None for a series shorter than two windows: no two of them would be apart), the real ones a subsample
    of them."""
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    window = model.config.window
    series = load_series(
        data,
        time_column or model.metadata.get("time_column"),
        data_dir=data_dir,
        missing=model.config.missing,
        min_length=window,
        columns=list(model.metadata["channels"]),
    )
    if protocol == "paper":
        windows = sliding_windows(series.values, window)  # no copy detector without two that do not overlap
        training = windows if has_apart_windows(windows) else None
        return subsample(windows, n, seed), training, series.values, window_starts(series.timestamps, window, n, seed)
    train, heldout = split_by_time(series.values, model.config.validation_fraction)
    real, training = heldout_windows(train, heldout, window, n, seed)
    starts = None if series.timestamps is None else window_starts(series.timestamps[len(train) :], window, n, seed)
    return real, training, series.values, starts


def window_starts(times: pd.Index | None, window: int, n: int, seed: int) -> pd.Index | None:
    """The first timestamps of the windows that ``subsample(sliding_windows(part, window), n, seed)`` picks from a
    part of a series whose rows have the timestamps ``times`` (None: None)."""
    return None if times is None else times[choose(len(times) - window + 1, n, seed)]


def heldout_windows(
    train: np.ndarray,
    heldout: np.ndarray,
    window: int,
    n: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(at most ``n`` seeded held-out windows, all training windows) of a chronological split (rows, channels);
    the held-out part must hold HELD_OUT_WINDOWS windows."""
    needed = window + HELD_OUT_WINDOWS - 1
    if len(heldout) < needed:
        raise DataError(
            f"the held-out part has {len(heldout)} rows; the heldout protocol needs at least {needed} "
            f"({HELD_OUT_WINDOWS} windows of {window}); raise validation_fraction, lower the window, "
            "or use --protocol paper"
        )
    return subsample(sliding_windows(heldout, window), n, seed), sliding_windows(train, window)


def evaluate_generator(
    model: StageDiff,
    data: Any,
    out: str | os.PathLike,
    protocol: str = "heldout",
    n: int = MAX_WINDOWS,
    repeats: int = 5,
    seed: int = 0,
    fast: bool = False,
    steps: int | None = None,
    data_dir: Any = None,
    long_windows: int = 10,
    pictures: bool = True,
    metrics: list[str] | None = None,
    long_samples: int = LONG_SAMPLES,
    time_column: str | None = None,
) -> dict[str, Any]:
    """Sample as many windows as real ones, score them, draw the pictures; write ``metrics.json`` and PNGs to
    ``out`` and return the metrics. ``long_windows``: length of the long samples for "horizon" and the
    rolling-statistics picture, in training windows (capped by the series length); ``long_samples``: how many;
    ``metrics``: names from :data:`stagediff.metrics.METRICS` and "horizon" (default: every metric the
    protocol allows); ``time_column``: the data's time column (default: the model's)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise DataError(f"n must be an integer of at least 10 windows, got {n!r}")
    real, training, series, starts = protocol_windows(model, data, protocol, n, seed, data_dir, time_column)
    return evaluate_windows(
        model,
        real,
        training,
        series,
        out,
        protocol=protocol,
        starts=starts,
        repeats=repeats,
        seed=seed,
        fast=fast,
        steps=steps,
        long_windows=long_windows,
        pictures=pictures,
        metrics=metrics,
        long_samples=long_samples,
    )


def evaluate_windows(
    model: StageDiff,
    real: np.ndarray,
    training: np.ndarray | None,
    series: np.ndarray,
    out: str | os.PathLike,
    *,
    protocol: str,
    repeats: int = 5,
    seed: int = 0,
    fast: bool = False,
    steps: int | None = None,
    long_windows: int = 10,
    pictures: bool = True,
    metrics: list[str] | None = None,
    long_samples: int = LONG_SAMPLES,
    starts: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The scoring half of :func:`evaluate_generator`, for callers that chose the real windows themselves.

    real: (n, window, channels) real windows in data units; training: the training windows (for the copy
    detector; under ``paper`` every stride-1 window of the series) or None; series: (rows, channels) the whole
    real series (the range of "horizon" and the long-sample picture); starts: the real windows' first timestamps,
    where each synthetic window starts (else they would all continue the data from its end, at one phase of every
    cycle of a model with calendar features). The long samples, drawn once when "horizon" or the pictures are
    wanted, continue the data."""
    stage = model.require_trained().stage_length
    seams = stage if stage < model.config.window else None  # one stage: no seams to score
    chosen, horizon = choose_all_metrics(metrics, seams, training)  # bad names fail here, before the sampling
    for name, value in (("long_windows", long_windows), ("long_samples", long_samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    channels = [str(c) for c in model.metadata["channels"]]
    synthetic = model.sample_array(len(real), seed=seed, steps=steps, start=None if starts is None else list(starts))
    scores = evaluate(
        real,
        synthetic,
        metrics=chosen,
        repeats=repeats,
        seed=seed,
        fast=fast,
        training=training,
        stage_length=seams,
        real_in_training=protocol == "paper",
        channels=channels,
    )
    sampler, steps = sampling_choice(model.config, None, steps)
    scores["settings"].update(
        {"protocol": protocol, "window": model.config.window, "sampler": sampler, "sampling_steps": steps}
    )
    own = [m for m in OWN_FLOOR if m in chosen and scores[m].get("mean") is not None]
    if protocol == "heldout" and training is not None and own:
        # the real data's own score: training windows judged against the held-out ones, the floor that drift
        # between the two parts sets for any generator trained on the first
        mine = evaluate(
            real,
            subsample(training, len(real), seed),
            metrics=own,
            repeats=repeats,
            seed=seed,
            fast=fast,
            channels=channels,
        )
        for name in own:
            scores[name]["real_own"] = mine[name]["mean"]
    long_sample = None
    if horizon or pictures:
        started = time.perf_counter()
        length = min(long_windows * model.config.window, len(series))
        long_sample = model.sample_array(long_samples, length, seed=seed, steps=steps)
        sampling = time.perf_counter() - started
    if horizon:
        started = time.perf_counter()
        found = horizon_excursions(series, long_sample, model.config.window, channels)
        entry = {
            "mean": found.pop("mean"),
            "std": 0.0,
            **found,
            "samples": long_samples,
            "sample_length": long_sample.shape[1],
            "seconds": time.perf_counter() - started,
            "sampling_seconds": sampling,
        }
        entry["values"] = [entry["mean"]]
        settings = scores.pop("settings")
        scores.update({"horizon": entry, "settings": settings})
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    if pictures:
        scores["pictures"] = [
            str(p.name)
            for p in draw_pictures(
                model, real, synthetic, series, target, seed, long_sample, scores.get("horizon", {}).get("mean")
            )
        ]
    (target / "metrics.json").write_text(json.dumps(scores, indent=2))
    return scores


def choose_all_metrics(
    metrics: list[str] | None,
    stage_length: int | None,
    training: Any,
) -> tuple[list[str], bool]:
    """(the :func:`stagediff.metrics.evaluate` metrics to compute, whether to score "horizon"): every metric the
    inputs allow when ``metrics`` is None; an error names unknown or unavailable ones."""
    if metrics is None:
        return choose_metrics(None, stage_length, training), True
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRICS + SAMPLED_METRICS]
    if unknown:
        raise DataError(f"unknown metric name(s) {unknown}; valid names: {list(METRICS + SAMPLED_METRICS)}")
    return choose_metrics(
        [m for m in metrics if m not in SAMPLED_METRICS], stage_length, training
    ), "horizon" in metrics


def draw_pictures(
    model: StageDiff,
    real: np.ndarray,
    synthetic: np.ndarray,
    series: np.ndarray,
    out: Path,
    seed: int,
    long_sample: np.ndarray,
    excursions: float | None = None,
) -> list[Path]:
    """The PNGs beside metrics.json; ``long_sample``: (n, length, channels) long samples in data units."""
    from stagediff.data import MinMaxScaler
    from stagediff.plots import plot_autocorrelation, plot_embeddings, plot_long_sample_statistics, plot_overlays

    channels = list(model.metadata["channels"])
    unit = MinMaxScaler.fit(real.reshape(-1, real.shape[-1]))  # one scale for both, fitted on the real windows
    real_scaled, synthetic_scaled = unit.transform(real), unit.transform(synthetic)
    written = plot_embeddings(real_scaled, synthetic_scaled, out, seed=seed)
    written.append(plot_overlays(real, synthetic, out / "overlays.png", channels, seed=seed))
    written.append(plot_autocorrelation(real_scaled, synthetic_scaled, out / "autocorrelation.png", channels))
    written.append(
        plot_long_sample_statistics(
            series[-long_sample.shape[1] :],
            long_sample,
            out / "long_sample.png",
            channels,
            model.config.window,
            reference=series,
            excursions=excursions,
        )
    )
    return written
