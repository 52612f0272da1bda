"""Evaluation metrics of synthetic time series (protocol: docs/evaluation.md); lower is better unless noted.

    from stagediff.metrics import evaluate
    scores = evaluate(real_windows, model.sample(n=1000, seed=0), repeats=5, seed=0)
    scores["discriminative"]["mean"], scores["discriminative"]["std"]

Each metric is also a plain function on (n, length, channels) arrays in its own module:
:func:`discriminative_score`, :func:`predictive_score`, :func:`context_fid`, :func:`correlational_score`,
:func:`marginal_distance`, :func:`autocorrelation_distance`, :func:`spectral_distance`, :func:`boundary_jump`,
:func:`copy_detector` (:func:`series_copy_detector` when no window was held out), :func:`detection_score`,
:func:`cnn_detection_score`, :func:`texture`. The functions score the
arrays as given; :func:`evaluate` first scales every input to [0, 1] per channel with the range of the real
windows.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from stagediff.errors import DataError
from stagediff.metrics.autocorrelation import autocorrelation_distance
from stagediff.metrics.boundary import boundary_jump, check_stage_length
from stagediff.metrics.context_fid import context_fid, frechet_distance
from stagediff.metrics.copying import check_series_windows, copy_detector, series_copy_detector
from stagediff.metrics.correlational import correlational_score
from stagediff.metrics.detection import (
    CNN_EPOCHS,
    FAST_CNN_EPOCHS,
    MIN_BASELINE_WINDOWS,
    DetectionData,
    check_detection_size,
    cnn_detection_baseline,
    cnn_detection_score,
    detection_baseline,
    detection_score,
    independent_windows,
)
from stagediff.metrics.discriminative import DISCRIMINATIVE_ITERATIONS, discriminative_score
from stagediff.metrics.inputs import UnitScale, as_windows, check_pair, check_split_size, to_windows
from stagediff.metrics.marginal import marginal_distance
from stagediff.metrics.predictive import PREDICTIVE_ITERATIONS, predictive_score
from stagediff.metrics.spectral import spectral_distance
from stagediff.metrics.texture import texture, texture_warnings
from stagediff.metrics.ts2vec import EncoderSettings

logger = logging.getLogger(__name__)

STOCHASTIC = ("discriminative", "detection", "detection_cnn", "predictive", "predictive_real", "context_fid")
"""Metrics that train a judge: computed ``repeats`` times with seeds seed, seed + 1, ..."""
DETECTION = ("detection", "detection_cnn")
"""The judges scored by ROC AUC (0.5 best), with a real-vs-real baseline beside."""
FEW_INDEPENDENT_WINDOWS = 50
"""Detection entries get a ``note`` when the real windows hold fewer windows of distinct rows than this."""
DETERMINISTIC = ("correlational", "marginal", "autocorrelation", "spectral", "texture")
METRICS: tuple[str, ...] = STOCHASTIC + DETERMINISTIC + ("boundary", "copy")
"""Every metric name :func:`evaluate` knows, in the order it computes them."""

FULL_ITERATIONS = {
    "discriminative": DISCRIMINATIVE_ITERATIONS,
    "predictive": PREDICTIVE_ITERATIONS,
    "context_fid": EncoderSettings().iterations,
    "detection_cnn": CNN_EPOCHS,
}
FAST_ITERATIONS = {"discriminative": 500, "predictive": 600, "context_fid": 60, "detection_cnn": FAST_CNN_EPOCHS}
"""``fast=True``: enough to separate good from bad on tiny test data; never for reported numbers. (For
"detection_cnn" the numbers are epochs; the gradient-boosting "detection" has no fast setting.)"""

__all__ = [
    "METRICS",
    "autocorrelation_distance",
    "boundary_jump",
    "cnn_detection_baseline",
    "cnn_detection_score",
    "context_fid",
    "copy_detector",
    "correlational_score",
    "detection_baseline",
    "detection_score",
    "discriminative_score",
    "evaluate",
    "frechet_distance",
    "marginal_distance",
    "predictive_score",
    "series_copy_detector",
    "spectral_distance",
    "texture",
    "texture_warnings",
    "to_windows",
]


def evaluate(
    real: np.ndarray | pd.DataFrame,
    synthetic: np.ndarray | pd.DataFrame,
    metrics: Sequence[str] | None = None,
    repeats: int = 5,
    seed: int = 0,
    fast: bool = False,
    stage_length: int | None = None,
    training: np.ndarray | pd.DataFrame | None = None,
    real_in_training: bool = False,
    channels: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score ``synthetic`` windows against ``real`` ones under the protocol of docs/evaluation.md.

    Args:
        real, synthetic: (n, length, channels) arrays or long DataFrames (``sample``, time column, channels; see
            :func:`to_windows`) with the same length and channels. Both are scaled per channel to [0, 1] with the
            minimum and maximum of ``real`` (not clipped) before scoring.
        metrics: names from :data:`METRICS`; default every metric the inputs allow ("boundary" needs
            ``stage_length``, "copy" needs ``training``).
        repeats: runs of the judges that train (:data:`STOCHASTIC`) with seeds ``seed + r``; the deterministic
            metrics run once (std 0).
        fast: far fewer judge iterations (:data:`FAST_ITERATIONS`); for tests only, recorded in the output.
        stage_length: the generator's stage length, for "boundary".
        training: (m, length, channels) windows the generator was trained on, for "copy"; then ``real`` should
            be held-out windows, the baseline of :func:`copy_detector`.
        real_in_training: ``real`` was drawn from the training series (the paper protocol): then ``training``
            must be every stride-1 window of that series in time order, and "copy" is
            :func:`series_copy_detector` (the baseline: training windows against those that do not overlap them).
        channels: channel names for the detection's ``top_features`` and texture's ``per_channel`` (default
            ``c0``, ``c1``, ... and ``0``, ``1``, ...).

    Returns:
        ``{metric: {"mean", "std", "values", "seconds", ...}}`` (std over repeats, ddof 0; "seconds" is the
        total time); "boundary" adds ``real_ratio`` and the step means, "copy" its distance summaries,
        "detection" and "detection_cnn" (ROC AUC, 0.5 best) ``real_baseline`` (the mean real-vs-real AUC over
        the same seeds; None under :data:`MIN_BASELINE_WINDOWS` real windows), ``independent_real_windows``
        (:func:`~stagediff.metrics.detection.independent_windows`; under :data:`FEW_INDEPENDENT_WINDOWS` a
        ``note`` says the AUC is unreliable) and ``fold_aucs``, "detection"
        also ``top_features`` (first repeat), "texture" (mean: the mean over channels of abs(ln(roughness
        ratio))) its figures. A detection that cannot run (windows that overlap too much for its folds) has
        mean None and the reason as ``skipped``. The key ``"settings"`` records fast, repeats, seed and the
        judges' iterations.
    """
    chosen = choose_metrics(metrics, stage_length, training)
    real_windows, synthetic_windows = as_windows(real, "real"), as_windows(synthetic, "synthetic")
    check_pair(real_windows, synthetic_windows)
    training_windows = None
    if "copy" in chosen:
        training_windows = as_windows(training, "training")
        check_pair(real_windows, training_windows, names=("real", "training"))
        if real_in_training:
            check_series_windows(training_windows)
    _check_inputs(chosen, real_windows, synthetic_windows, repeats, seed, stage_length)

    scale = UnitScale.fit(real_windows)
    real_windows, synthetic_windows = scale.transform(real_windows), scale.transform(synthetic_windows)
    if training_windows is not None:
        training_windows = scale.transform(training_windows)
    iterations = FAST_ITERATIONS if fast else FULL_ITERATIONS
    judges: dict[str, Callable[[int], float]] = {
        "discriminative": lambda s: discriminative_score(
            real_windows, synthetic_windows, s, iterations=iterations["discriminative"]
        ),
        "predictive": lambda s: predictive_score(
            synthetic_windows, real_windows, s, iterations=iterations["predictive"]
        ),
        "predictive_real": lambda s: predictive_score(
            real_windows, real_windows, s, iterations=iterations["predictive"]
        ),
        "context_fid": lambda s: context_fid(real_windows, synthetic_windows, s, iterations=iterations["context_fid"]),
    }
    distances: dict[str, Callable[[], float]] = {
        "correlational": lambda: correlational_score(real_windows, synthetic_windows),
        "marginal": lambda: marginal_distance(real_windows, synthetic_windows),
        "autocorrelation": lambda: autocorrelation_distance(real_windows, synthetic_windows),
        "spectral": lambda: spectral_distance(real_windows, synthetic_windows),
    }
    seeds = [seed + r for r in range(repeats)]

    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        started = time.perf_counter()
        if name in judges:
            entry = _summary([judges[name](seed + r) for r in range(repeats)])
        elif name in distances:
            entry = _summary([distances[name]()])
        elif name in DETECTION:
            entry = _detection(name, real_windows, synthetic_windows, seeds, iterations["detection_cnn"], channels)
        elif name == "texture":
            figures = texture(real_windows, synthetic_windows, channels)
            for matrices in ("step_correlations", "level_correlations"):
                figures.pop(matrices)
            entry = {**_summary([figures.pop("roughness_error")]), **figures}
        elif name == "boundary":
            jump = boundary_jump(synthetic_windows, stage_length)
            entry = {
                **_summary([jump["ratio"]]),
                "real_ratio": boundary_jump(real_windows, stage_length)["ratio"],
                "boundary_step": jump["boundary_step"],
                "inside_step": jump["inside_step"],
                "per_channel_ratio": jump["per_channel_ratio"],
            }
        else:  # copy
            found = (
                series_copy_detector(synthetic_windows, training_windows, seed)
                if real_in_training
                else copy_detector(synthetic_windows, training_windows, real_windows, seed)
            )
            entry = {**_summary([found.pop("ratio")]), **found}
        entry["seconds"] = time.perf_counter() - started
        if entry["mean"] is None:
            logger.warning("%s skipped: %s", name, entry["skipped"])
        else:
            logger.info("%s: %.4g +- %.2g (%.1f s)", name, entry["mean"], entry["std"], entry["seconds"])
        results[name] = entry
    results["settings"] = {
        "fast": fast,
        "repeats": repeats,
        "seed": seed,
        "iterations": dict(iterations),
        "real_windows": len(real_windows),
        "synthetic_windows": len(synthetic_windows),
    }
    return results


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def _detection(
    name: str, real: np.ndarray, synthetic: np.ndarray, seeds: list[int], epochs: int, channels: Sequence[str] | None
) -> dict[str, Any]:
    """The "detection" or "detection_cnn" entry: AUC summary over ``seeds``, the real baseline, fold AUCs."""
    with_baseline = len(real) >= MIN_BASELINE_WINDOWS
    try:
        if name == "detection":
            data = DetectionData.build(real, synthetic, channels)
            runs = [data.score(s) for s in seeds]
            baseline = [data.baseline(s) for s in seeds] if with_baseline else None
            extra = {"top_features": [list(pair) for pair in runs[0]["top_features"]]}
        else:
            runs = [cnn_detection_score(real, synthetic, s, epochs=epochs) for s in seeds]
            baseline = [cnn_detection_baseline(real, s, epochs=epochs) for s in seeds] if with_baseline else None
            extra = {}
    except DataError as error:  # windows that overlap too much: report why instead of losing the other metrics
        return {"mean": None, "std": None, "values": [], "real_baseline": None, "skipped": str(error)}
    independent = independent_windows(real)
    entry = {
        **_summary([run["auc"] for run in runs]),
        "real_baseline": float(np.mean(baseline)) if baseline is not None else None,
        "independent_real_windows": round(independent, 1),
        "fold_aucs": [run["fold_aucs"] for run in runs],
        **extra,
    }
    if independent < FEW_INDEPENDENT_WINDOWS:
        entry["note"] = (
            f"the {len(real)} real windows overlap and hold about {independent:.0f} windows of distinct "
            f"rows: the AUC is noisy and tends below 0.5; compare models on a longer real series"
        )
    return entry


def choose_metrics(metrics: Sequence[str] | None, stage_length: int | None, training: Any) -> list[str]:
    """The metrics to compute, in :data:`METRICS` order: the named ones (an error names unknown or unavailable
    ones), or every metric the inputs allow when ``metrics`` is None."""
    if metrics is None:
        unavailable = {"boundary"} if stage_length is None else set()
        unavailable |= {"copy"} if training is None else set()
        return [m for m in METRICS if m not in unavailable]
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise DataError(f"unknown metric name(s) {unknown}; valid names: {list(METRICS)}")
    if "boundary" in metrics and stage_length is None:
        raise DataError("the 'boundary' metric needs stage_length (the generator's config.stage_length)")
    if "copy" in metrics and training is None:
        raise DataError(
            "the 'copy' metric needs training= the generator's training windows (under the paper "
            "protocol: a series at least two windows long)"
        )
    return [m for m in METRICS if m in metrics]


def _check_inputs(
    chosen: list[str], real: np.ndarray, synthetic: np.ndarray, repeats: object, seed: object, stage_length: int | None
) -> None:
    """Every check before any metric starts (a bad input must not cost a 10-minute judge first)."""
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 1:
        raise DataError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if any(m in STOCHASTIC for m in chosen):
        check_split_size(real, "real", "evaluate")
        if any(m in ("discriminative", "predictive", "context_fid") for m in chosen):
            check_split_size(synthetic, "synthetic", "evaluate")
    if any(m in DETECTION for m in chosen):
        check_detection_size(real, "real", "evaluate")
        check_detection_size(synthetic, "synthetic", "evaluate")
    if real.shape[1] < 2 and any(m in STOCHASTIC + ("autocorrelation", "spectral", "texture") for m in chosen):
        raise DataError(
            f"windows of length {real.shape[1]} are too short; the judges, autocorrelation, spectrum "
            f"and texture need at least 2 steps"
        )
    if "boundary" in chosen:
        check_stage_length(stage_length, synthetic.shape[1])
