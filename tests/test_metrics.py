"""Metrics: every score is ~0 for two draws of one process and clearly worse against noise; seeds repeat;
bad input is refused with a DataError that names the problem (docs: evaluation.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stagediff.errors import DataError
from stagediff.metrics import (
    METRICS, autocorrelation_distance, boundary_jump, context_fid, copy_detector, correlational_score,
    discriminative_score, evaluate, marginal_distance, predictive_score, series_copy_detector, spectral_distance,
    to_windows,
)
from stagediff.metrics.copying import nearest_distances

torch.set_num_threads(1)

WINDOWS, LENGTH, CHANNELS, STAGE = 200, 24, 3, 6


def sine_windows(n: int, seed: int, length: int = LENGTH) -> np.ndarray:
    """(n, length, 3): one sine per window (random phase and frequency), channels shifted in phase, + noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(length)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    frequency = rng.uniform(0.1, 0.3, (n, 1, 1))
    values = np.sin(frequency * steps + phase + np.array([0.0, 0.7, 1.4]))
    return 10 + 5 * values + 0.25 * rng.normal(size=values.shape)


def noise_like(windows: np.ndarray, seed: int) -> np.ndarray:
    """Independent uniform noise over the range of ``windows``."""
    return np.random.default_rng(seed).uniform(windows.min(), windows.max(), windows.shape)


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return sine_windows(WINDOWS, seed=1)


@pytest.fixture(scope="module")
def same_process() -> np.ndarray:
    return sine_windows(WINDOWS, seed=2)


@pytest.fixture(scope="module")
def training() -> np.ndarray:
    return sine_windows(WINDOWS, seed=3)


@pytest.fixture(scope="module")
def scores(real, same_process, training) -> dict[str, dict]:
    """evaluate (fast, one repeat) of a fresh draw of the same process and of noise, with every metric."""
    return {name: evaluate(real, synthetic, repeats=1, seed=0, fast=True, stage_length=STAGE, training=training)
            for name, synthetic in (("same", same_process), ("noise", noise_like(real, seed=4)))}


# -- every metric separates the same process from noise --------------------------------------------------------
def test_evaluate_computes_every_metric_by_default_when_inputs_allow(scores) -> None:
    assert set(scores["same"]) == set(METRICS) | {"settings"}
    assert scores["same"]["settings"]["fast"] is True


@pytest.mark.parametrize("metric", ["predictive", "context_fid", "correlational", "marginal", "autocorrelation",
                                    "spectral"])
def test_same_process_scores_far_better_than_noise(scores, metric) -> None:
    same, noise = scores["same"][metric]["mean"], scores["noise"][metric]["mean"]
    assert noise > 3 * same, (metric, same, noise)


def test_discriminative_cannot_tell_the_same_process_but_spots_noise(scores) -> None:
    assert scores["same"]["discriminative"]["mean"] < 0.15
    assert scores["noise"]["discriminative"]["mean"] > 0.3


def test_predictive_floor_matches_a_good_synthetic_set(scores) -> None:
    floor = scores["same"]["predictive_real"]["mean"]
    assert scores["same"]["predictive"]["mean"] < 1.5 * floor
    assert scores["noise"]["predictive_real"]["mean"] == floor  # the floor does not look at synthetic data


@pytest.mark.parametrize("distance", [correlational_score, marginal_distance, autocorrelation_distance,
                                      spectral_distance])
def test_deterministic_distances_are_exactly_zero_on_identical_sets(real, distance) -> None:
    assert distance(real, real) == 0.0
    assert distance(real, real[::-1]) == pytest.approx(0.0, abs=1e-12)  # window order does not matter


def test_context_fid_of_a_set_with_itself_is_near_zero(real) -> None:
    assert abs(context_fid(real, real, seed=0, iterations=10)) < 1e-6


def test_correlational_score_sees_a_broken_channel_correlation(real, same_process) -> None:
    decoupled = real.copy()
    decoupled[..., 2] = real[::-1, :, 2]  # same marginals, channel 2 no longer moves with channels 0 and 1
    assert marginal_distance(real, decoupled) == 0.0
    assert correlational_score(real, decoupled) > max(0.05, 10 * correlational_score(real, same_process))


# -- boundary and copy -----------------------------------------------------------------------------------------
def test_boundary_jump_is_about_one_for_smooth_series_and_large_with_seams() -> None:
    smooth = sine_windows(50, seed=5, length=48)
    seams = smooth + np.repeat(np.random.default_rng(6).normal(0, 3, (50, 48 // STAGE, CHANNELS)), STAGE, axis=1)
    assert 0.8 < boundary_jump(smooth, STAGE)["ratio"] < 1.25
    jump = boundary_jump(seams, STAGE)
    assert jump["ratio"] > 3
    assert jump["boundaries"] == 48 // STAGE - 1 and len(jump["per_channel_ratio"]) == CHANNELS


def test_copy_detector_flags_copies_and_passes_fresh_windows(real, same_process, training) -> None:
    copies = training[np.random.default_rng(7).integers(0, len(training), 100)]
    copied = copy_detector(copies, training, real)
    assert copied["ratio"] < 0.1 and copied["copy_fraction"] == 1.0
    fresh = copy_detector(same_process, training, real)
    assert 0.8 < fresh["ratio"] < 1.25 and fresh["copy_fraction"] < 0.05


def ar1(rows: int, seed: int) -> np.ndarray:
    """(rows, 2): a stationary AR(1) series, lag-1 correlation 0.9."""
    rng, values = np.random.default_rng(seed), np.zeros((rows, 2))
    for t in range(1, rows):
        values[t] = 0.9 * values[t - 1] + rng.normal(size=2)
    return values


def test_series_copy_detector_tells_copies_from_new_draws_without_held_out_windows() -> None:
    series, window = ar1(1500, 0), 32
    training = np.lib.stride_tricks.sliding_window_view(series, window, axis=0).transpose(0, 2, 1)
    copies = training[np.random.default_rng(1).choice(len(training), size=100, replace=False)]
    fresh = np.stack([ar1(window + 50, seed)[50:] for seed in range(2, 102)])  # each after a burn-in
    copied, new = series_copy_detector(copies, training), series_copy_detector(fresh, training)
    assert copied["ratio"] < 1e-6 and copied["copy_fraction"] == 1.0
    assert 0.8 < new["ratio"] < 1.25 and new["copy_fraction"] < 0.05, new
    # the same through evaluate, real windows drawn from the training series (the paper protocol)
    scored = evaluate(training[::7], fresh, metrics=["copy"], training=training, real_in_training=True)["copy"]
    assert 0.8 < scored["mean"] < 1.25 and scored["median_real_to_training"] > 0  # held out, they would be 0


def test_nearest_distances_can_leave_out_overlapping_windows() -> None:
    reference = np.arange(10.0)[:, None, None] * np.ones((1, 3, 1))  # window i is all i
    queries = reference[[2, 5]]
    assert nearest_distances(queries, reference).tolist() == [0.0, 0.0]
    starts = np.arange(10)
    apart = nearest_distances(queries, reference, query_starts=np.array([2, 5]), reference_starts=starts, min_gap=3)
    assert apart == pytest.approx([3 * np.sqrt(3), 3 * np.sqrt(3)])  # windows 5 and 2/8: three steps of 1 away


def test_series_copy_detector_needs_windows_that_do_not_overlap(real) -> None:
    series = np.lib.stride_tricks.sliding_window_view(ar1(2 * LENGTH - 1, 0), LENGTH, axis=0).transpose(0, 2, 1)
    with pytest.raises(DataError, match="do not overlap"):
        evaluate(series, series, metrics=["copy"], training=series, real_in_training=True)


def test_series_copy_detector_queries_only_windows_that_another_window_does_not_overlap() -> None:
    # 22 windows of 20 steps: only windows 0, 1, 20 and 21 have one that does not overlap them; three real
    # queries drawn from all 22 would all lack one about half the time
    series = np.lib.stride_tricks.sliding_window_view(ar1(41, 0), 20, axis=0).transpose(0, 2, 1)
    for seed in range(10):
        scores = series_copy_detector(series[::3], series, seed=seed, max_queries=3)
        assert np.isfinite(scores["median_real_to_training"]) and scores["median_real_to_training"] > 0
    # one reference window in the middle overlaps every query: a clear error, not the median of nothing
    with pytest.raises(DataError, match="raise max_reference"):
        for seed in range(10):
            series_copy_detector(series[::3], series, seed=seed, max_reference=1)


def test_boundary_and_copy_report_in_evaluate(scores) -> None:
    assert scores["same"]["boundary"]["real_ratio"] == pytest.approx(1.0, abs=0.2)
    assert scores["same"]["copy"]["mean"] == pytest.approx(1.0, abs=0.2)
    assert scores["noise"]["copy"]["copy_fraction"] == 0.0


# -- repeats, seeds, DataFrames ---------------------------------------------------------------------------------
def test_evaluate_reports_mean_and_std_over_seeded_repeats(real, same_process) -> None:
    result = evaluate(real, same_process, metrics=["context_fid", "marginal"], repeats=3, seed=5, fast=True)
    values = result["context_fid"]["values"]
    assert len(values) == 3 and len(set(values)) == 3  # seeds 5, 6, 7 train different encoders
    assert result["context_fid"]["mean"] == pytest.approx(np.mean(values))
    assert result["context_fid"]["std"] == pytest.approx(np.std(values))
    assert result["marginal"]["std"] == 0.0 and len(result["marginal"]["values"]) == 1
    assert result["settings"]["repeats"] == 3 and result["settings"]["seed"] == 5


def test_same_seed_gives_the_same_numbers(real, same_process) -> None:
    first = [discriminative_score(real, same_process, seed=3, iterations=30),
             predictive_score(same_process, real, seed=3, iterations=30),
             context_fid(real, same_process, seed=3, iterations=5)]
    torch.manual_seed(123)  # the judges must not depend on the global random state
    second = [discriminative_score(real, same_process, seed=3, iterations=30),
              predictive_score(same_process, real, seed=3, iterations=30),
              context_fid(real, same_process, seed=3, iterations=5)]
    assert first == second
    assert predictive_score(same_process, real, seed=4, iterations=30) != first[1]


def long_frame(windows: np.ndarray) -> pd.DataFrame:
    """The layout StageDiff.sample returns: sample, time column, channels."""
    n, length, channels = windows.shape
    frame = pd.DataFrame(windows.reshape(n * length, channels), columns=[f"c{i}" for i in range(channels)])
    frame.insert(0, "date", np.tile(pd.date_range("2024-01-01", periods=length, freq="h"), n))
    frame.insert(0, "sample", np.repeat(np.arange(n), length))
    return frame


def test_evaluate_accepts_the_library_dataframes(real, same_process) -> None:
    assert np.array_equal(to_windows(long_frame(real)), real)
    from_frames = evaluate(long_frame(real), long_frame(same_process), metrics=["marginal", "spectral"])
    from_arrays = evaluate(real, same_process, metrics=["marginal", "spectral"])
    for name in ("marginal", "spectral"):
        assert from_frames[name]["values"] == from_arrays[name]["values"]


def test_evaluate_scales_with_the_real_range(real) -> None:
    shifted = evaluate(real * 7 + 100, real * 7 + 100, metrics=["marginal"])["marginal"]["mean"]
    assert shifted == 0.0
    assert evaluate(real, real + 1.0, metrics=["marginal"])["marginal"]["mean"] == pytest.approx(
        1.0 / (real.max() - real.min()), rel=0.2)


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("synthetic, kwargs, message", [
    (lambda x: x[:, :-1], {}, "length"),
    (lambda x: x[..., :2], {}, "channels"),
    (lambda x: x[0], {}, r"\(n, length, channels\)"),
    (lambda x: np.where(np.arange(x.shape[2]) == 1, np.nan, x), {}, "NaN"),
    (lambda x: x[:5], {"metrics": ["discriminative"]}, "at least 10"),
    (lambda x: x, {"metrics": ["fid"]}, "valid names"),
    (lambda x: x, {"metrics": ["boundary"]}, "stage_length"),
    (lambda x: x, {"metrics": ["copy"]}, "training"),
    (lambda x: x, {"metrics": ["boundary"], "stage_length": LENGTH}, "no stage boundary"),
    (lambda x: x, {"repeats": 0}, "repeats"),
])
def test_evaluate_rejects_bad_input_before_any_work(real, synthetic, kwargs, message) -> None:
    with pytest.raises(DataError, match=message):
        evaluate(real, synthetic(real), **kwargs)


def test_evaluate_rejects_training_windows_of_another_shape(real) -> None:
    with pytest.raises(DataError, match="training"):
        evaluate(real, real, metrics=["copy"], training=real[..., :2])


def test_to_windows_rejects_samples_of_different_lengths(real) -> None:
    frame = long_frame(real).iloc[:-1]
    with pytest.raises(DataError, match="different lengths"):
        to_windows(frame)
