"""Metrics: every score is ~0 for two draws of one process and clearly worse against noise; seeds repeat;
bad input is refused with a DataError that names the problem (docs: evaluation.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stagediff.errors import DataError
from stagediff.metrics import (
    METRICS,
    autocorrelation_distance,
    boundary_jump,
    cnn_detection_baseline,
    cnn_detection_score,
    context_fid,
    copy_detector,
    correlational_score,
    detection_baseline,
    detection_score,
    discriminative_score,
    evaluate,
    marginal_distance,
    predictive_score,
    series_copy_detector,
    spectral_distance,
    texture,
    texture_warnings,
    to_windows,
)
from stagediff.metrics.copying import nearest_distances
from stagediff.metrics.detection import (
    FAST_CNN_EPOCHS,
    feature_names,
    independent_windows,
    overlap_layout,
    purged_folds,
    window_features,
)
from stagediff.metrics.horizon import horizon_excursions
from stagediff.metrics.inputs import UnitScale

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
    return {
        name: evaluate(real, synthetic, repeats=1, seed=0, fast=True, stage_length=STAGE, training=training)
        for name, synthetic in (("same", same_process), ("noise", noise_like(real, seed=4)))
    }


# -- every metric separates the same process from noise --------------------------------------------------------
def test_evaluate_computes_every_metric_by_default_when_inputs_allow(scores) -> None:
    assert set(scores["same"]) == set(METRICS) | {"settings"}
    assert scores["same"]["settings"]["fast"] is True


@pytest.mark.parametrize(
    "metric", ["predictive", "context_fid", "correlational", "marginal", "autocorrelation", "spectral", "texture"]
)
def test_same_process_scores_far_better_than_noise(scores, metric) -> None:
    same, noise = scores["same"][metric]["mean"], scores["noise"][metric]["mean"]
    assert noise > 3 * same, (metric, same, noise)


def test_discriminative_cannot_tell_the_same_process_but_spots_noise(scores) -> None:
    assert scores["same"]["discriminative"]["mean"] < 0.15
    assert scores["noise"]["discriminative"]["mean"] > 0.3


def test_detectors_cannot_tell_the_same_process_but_spot_noise(scores) -> None:
    for name in ("detection", "detection_cnn"):
        assert scores["same"][name]["mean"] < 0.7 and scores["noise"][name]["mean"] > 0.95, name
        assert scores["same"][name]["real_baseline"] == scores["noise"][name]["real_baseline"]  # real data only
        assert scores["same"][name]["independent_real_windows"] == WINDOWS


def test_predictive_floor_matches_a_good_synthetic_set(scores) -> None:
    floor = scores["same"]["predictive_real"]["mean"]
    assert scores["same"]["predictive"]["mean"] < 1.5 * floor
    assert scores["noise"]["predictive_real"]["mean"] == floor  # the floor does not look at synthetic data


@pytest.mark.parametrize(
    "distance", [correlational_score, marginal_distance, autocorrelation_distance, spectral_distance]
)
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
    first = [
        discriminative_score(real, same_process, seed=3, iterations=30),
        predictive_score(same_process, real, seed=3, iterations=30),
        context_fid(real, same_process, seed=3, iterations=5),
    ]
    torch.manual_seed(123)  # the judges must not depend on the global random state
    second = [
        discriminative_score(real, same_process, seed=3, iterations=30),
        predictive_score(same_process, real, seed=3, iterations=30),
        context_fid(real, same_process, seed=3, iterations=5),
    ]
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
        1.0 / (real.max() - real.min()), rel=0.2
    )


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "synthetic, kwargs, message",
    [
        (lambda x: x[:, :-1], {}, "length"),
        (lambda x: x[..., :2], {}, "channels"),
        (lambda x: x[0], {}, r"\(n, length, channels\)"),
        (lambda x: np.where(np.arange(x.shape[2]) == 1, np.nan, x), {}, "NaN"),
        (lambda x: x[:5], {"metrics": ["discriminative"]}, "at least 10"),
        (lambda x: x[:5], {"metrics": ["detection_cnn"]}, "at least 10 synthetic windows for its cross-validation"),
        (lambda x: x, {"metrics": ["fid"]}, "valid names"),
        (lambda x: x, {"metrics": ["boundary"]}, "stage_length"),
        (lambda x: x, {"metrics": ["copy"]}, "training"),
        (lambda x: x, {"metrics": ["boundary"], "stage_length": LENGTH}, "no stage boundary"),
        (lambda x: x, {"repeats": 0}, "repeats"),
    ],
)
def test_evaluate_rejects_bad_input_before_any_work(real, synthetic, kwargs, message) -> None:
    with pytest.raises(DataError, match=message):
        evaluate(real, synthetic(real), **kwargs)


def test_evaluate_rejects_windows_too_short_or_folds_too_few_for_the_new_metrics(real) -> None:
    with pytest.raises(DataError, match="at least 2 steps"):
        evaluate(real[:, :1], real[:, :1], metrics=["texture"])
    with pytest.raises(DataError, match="folds must be an integer from 2"):
        detection_score(real, real, folds=1)
    with pytest.raises(DataError, match="at least 10 real windows"):
        cnn_detection_score(real[:9], real)


def test_evaluate_rejects_training_windows_of_another_shape(real) -> None:
    with pytest.raises(DataError, match="training"):
        evaluate(real, real, metrics=["copy"], training=real[..., :2])


def test_to_windows_rejects_samples_of_different_lengths(real) -> None:
    frame = long_frame(real).iloc[:-1]
    with pytest.raises(DataError, match="different lengths"):
        to_windows(frame)


# -- detection, texture, long horizons ---------------------------------------------------------------------------
def correlated_ar(n: int, seed: int, length: int = 64, channels: int = 3, burn_in: int = 30) -> np.ndarray:
    """(n, length, channels): independent windows of a stationary AR(1) (coefficient 0.9) whose innovations are
    correlated 0.7 between channels, each after a burn-in."""
    rng = np.random.default_rng(seed)
    mixing = np.linalg.cholesky(np.full((channels, channels), 0.7) + 0.3 * np.eye(channels))
    level = rng.normal(size=(n, channels)) @ mixing.T / np.sqrt(1 - 0.9**2)
    values = np.empty((n, burn_in + length, channels))
    for t in range(burn_in + length):
        level = 0.9 * level + rng.normal(size=(n, channels)) @ mixing.T
        values[:, t] = level
    return values[:, burn_in:]


def smoothed(n: int, seed: int, width: int = 5, length: int = 64) -> np.ndarray:
    """Windows of the same process, each a moving average over ``width`` steps (same length)."""
    longer = correlated_ar(n, seed, length + width - 1)
    kernel = np.ones(width) / width
    return np.stack(
        [np.apply_along_axis(np.convolve, 1, longer[..., c], kernel, "valid") for c in range(longer.shape[2])], axis=-1
    )


def channel_shuffled(windows: np.ndarray, seed: int) -> np.ndarray:
    """Each channel's windows in another random order: same marginals and texture, channels decorrelated."""
    rng = np.random.default_rng(seed)
    return np.stack([windows[rng.permutation(len(windows)), :, c] for c in range(windows.shape[2])], axis=-1)


def unit(real: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every set scaled to [0, 1] per channel with the real range (what evaluate does)."""
    scale = UnitScale.fit(real)
    return [scale.transform(w) for w in (real, *others)]


@pytest.fixture(scope="module")
def ar_sets() -> dict[str, np.ndarray]:
    real, same, smooth = unit(correlated_ar(300, 11), correlated_ar(300, 12), smoothed(300, 13))
    return {"real": real, "same": same, "smooth": smooth}


def test_window_features_are_named_and_read_the_steps() -> None:
    windows = correlated_ar(20, 0, length=32)
    features, names = window_features(windows), feature_names(32, ["x", "y", "z"])
    assert features.shape == (20, len(names)) and len(set(names)) == len(names)
    steps = np.diff(windows, axis=1)
    assert np.allclose(features[:, names.index("y.step_std")], steps[..., 1].std(axis=1))
    assert np.allclose(
        features[:, names.index("x~z.level_corr")], [np.corrcoef(w[:, 0], w[:, 2])[0, 1] for w in windows]
    )
    assert np.isfinite(window_features(np.zeros((3, 32, 2)))).all()  # constant windows: zeros, no NaN


def test_detection_cannot_tell_two_draws_of_one_process_but_spots_a_smoothed_copy(ar_sets) -> None:
    same = detection_score(ar_sets["real"], ar_sets["same"], seed=0)
    smooth = detection_score(ar_sets["real"], ar_sets["smooth"], seed=0)
    assert same["auc"] < 0.62 and len(same["fold_aucs"]) == 5
    assert smooth["auc"] > 0.9
    name, alone = smooth["top_features"][0]  # the giveaway: smaller or less autocorrelated steps
    assert "step" in name or "band" in name, smooth["top_features"]
    assert abs(alone - 0.5) > 0.3


def test_cnn_detection_cannot_tell_two_draws_of_one_process_but_spots_a_smoothed_copy(ar_sets) -> None:
    assert cnn_detection_score(ar_sets["real"], ar_sets["same"], seed=0)["auc"] < 0.62
    assert cnn_detection_score(ar_sets["real"], ar_sets["smooth"], seed=0)["auc"] > 0.9


def test_detection_baselines_are_about_one_half_and_seeds_repeat(ar_sets) -> None:
    real, same = ar_sets["real"], ar_sets["same"]
    assert abs(detection_baseline(real, seed=0) - 0.5) < 0.1
    assert abs(cnn_detection_baseline(real, seed=0) - 0.5) < 0.12
    first, first_cnn = detection_score(real, same, seed=3), cnn_detection_score(real, same, seed=3)
    torch.manual_seed(123)  # the detectors must not depend on the global random state
    np.random.seed(123)
    assert detection_score(real, same, seed=3) == first and cnn_detection_score(real, same, seed=3) == first_cnn
    assert abs(detection_score(real, same, seed=4)["auc"] - first["auc"]) < 0.05


def test_detection_never_tests_on_windows_that_overlap_its_training_windows() -> None:
    # real windows cut from one series overlap; shuffled folds would let the classifier recognise the series
    # (AUC near 1 against independent windows of the same process); purged folds in time do not
    series = correlated_ar(1, 21, length=1500)[0]
    cut = np.lib.stride_tricks.sliding_window_view(series, 64, axis=0).transpose(0, 2, 1)
    starts = np.sort(np.random.default_rng(0).choice(len(cut), size=300, replace=False))
    real, synthetic = unit(cut[starts], correlated_ar(300, 22))
    component, start = overlap_layout(np.concatenate([real, synthetic]))
    assert (component[:300] == component[0]).all() and np.array_equal(start[:300], starts - starts[0])
    assert len(np.unique(component[300:])) == 300 and not np.isin(component[300:], component[0]).any()
    labels = np.repeat([0, 1], 300)
    for train, test in purged_folds(component, start, labels, 64, 5, seed=0):
        real_train, real_test = (start[part[part < 300]] for part in (train, test))
        assert np.abs(real_train[:, None] - real_test[None, :]).min() >= 64
    assert detection_score(real, synthetic, seed=0)["auc"] < 0.65
    assert independent_windows(cut) == pytest.approx(1500 / 64) and independent_windows(synthetic) == 300


def test_texture_matches_two_draws_and_sees_smoothing_and_decoupled_channels(ar_sets) -> None:
    real = ar_sets["real"]
    same = texture(real, ar_sets["same"])
    assert same["roughness_ratio"] == pytest.approx(1.0, abs=0.08)
    assert same["step_spread_ratio"] == pytest.approx(1.0, abs=0.08)
    assert same["step_correlation_error"] < 0.05 and same["level_correlation_error"] < 0.05
    assert same["roughness_error"] < 0.08 and set(same["per_channel"]) == {"0", "1", "2"}
    assert texture(real, ar_sets["smooth"])["roughness_ratio"] < 0.5
    decoupled = texture(real, channel_shuffled(ar_sets["same"], seed=1))
    assert decoupled["step_correlation_error"] > 0.4
    assert decoupled["roughness_ratio"] == pytest.approx(same["roughness_ratio"])


def test_texture_warnings_are_quiet_on_a_good_sample_and_name_what_broke() -> None:
    channels = ["load", "temp", "wind"]
    real, same = 50 + 3 * correlated_ar(300, 11), 50 + 3 * correlated_ar(300, 12)  # data units
    assert texture_warnings(real, same, channels) == []
    smooth = texture_warnings(real, 50 + 3 * smoothed(300, 13), channels)
    assert len(smooth) == 1 and "smoother" in smooth[0] and "'temp'" in smooth[0] and "max_steps" in smooth[0]
    decoupled = " ".join(texture_warnings(real, channel_shuffled(same, seed=1), channels, channel_independent=True))
    assert "set channel_independent=false" in decoupled and "'load' and 'temp'" in decoupled
    joint = " ".join(texture_warnings(real, channel_shuffled(same, seed=1), channels, channel_independent=False))
    assert "modelled jointly already: train longer" in joint and "set channel_independent" not in joint
    with pytest.raises(DataError, match="channel names"):
        texture_warnings(real, same, channels[:2])


def test_horizon_is_small_for_the_same_process_and_large_for_a_drift() -> None:
    series = correlated_ar(1, 31, length=6000)[0]
    samples = correlated_ar(4, 32, length=640)
    assert horizon_excursions(series, series, 64)["mean"] == pytest.approx(0.02, abs=0.005)
    same = horizon_excursions(series, samples, 64, channels=["a", "b", "c"])
    assert same["mean"] < 0.1 and set(same["per_channel"]) == {"a", "b", "c"}
    drifting = horizon_excursions(series, samples + np.linspace(0, 8, 640)[None, :, None], 64)
    assert drifting["mean"] > 0.3 and drifting["mean_outside"] > 0.5
    with pytest.raises(DataError, match="at least one window"):
        horizon_excursions(series, samples[:, :32], 64)


def test_evaluate_reports_detection_with_its_baseline_and_texture(ar_sets) -> None:
    scores = evaluate(
        ar_sets["real"],
        ar_sets["smooth"],
        metrics=["detection", "detection_cnn", "texture"],
        repeats=2,
        fast=True,
        channels=["x", "y", "z"],
    )
    for name in ("detection", "detection_cnn"):
        entry = scores[name]
        assert len(entry["values"]) == 2 and entry["mean"] > 0.9, name
        assert abs(entry["real_baseline"] - 0.5) < 0.12 and len(entry["fold_aucs"]) == 2
    assert scores["detection"]["top_features"][0][0][0] in "xyz"
    figures = texture(ar_sets["real"], ar_sets["smooth"])
    assert scores["texture"]["mean"] == pytest.approx(figures["roughness_error"])
    assert set(scores["texture"]["per_channel"]) == {"x", "y", "z"}
    assert scores["settings"]["iterations"]["detection_cnn"] == FAST_CNN_EPOCHS
    few = evaluate(ar_sets["real"][:30], ar_sets["same"][:30], metrics=["detection"], repeats=1)["detection"]
    assert few["real_baseline"] is None and 0 <= few["mean"] <= 1  # 30 real windows: too few for two halves


def test_a_detection_that_cannot_keep_folds_apart_is_reported_as_skipped() -> None:
    series = correlated_ar(1, 41, length=100)[0]  # 37 windows of 64, every one overlapping every other
    real = np.lib.stride_tricks.sliding_window_view(series, 64, axis=0).transpose(0, 2, 1)
    with pytest.raises(DataError, match="overlap too much"):
        detection_score(real, real[::-1] + 0.01, seed=0)
    entry = evaluate(real, correlated_ar(37, 42), metrics=["detection", "marginal"], repeats=1)
    assert entry["detection"]["mean"] is None and "overlap too much" in entry["detection"]["skipped"]
    longer = np.lib.stride_tricks.sliding_window_view(correlated_ar(1, 43, length=700)[0], 64, axis=0)
    overlapping = evaluate(longer.transpose(0, 2, 1)[::5], correlated_ar(128, 44), metrics=["detection"])["detection"]
    assert overlapping["mean"] is not None and "about 11 windows of distinct rows" in overlapping["note"]
    assert entry["marginal"]["mean"] > 0
