"""Judging a trained generator: the two protocols' windows, bad requests, and the full report on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stagediff.errors import DataError
from stagediff.evaluation import evaluate_generator, protocol_windows


def test_paper_protocol_takes_windows_of_the_whole_series(trained_model, training_frame):
    real, training, series, _ = protocol_windows(trained_model, training_frame, "paper", n=50, seed=0)
    window = trained_model.config.window
    assert real.shape == (50, window, 2) and len(series) == len(training_frame)
    assert len(training) == len(series) - window + 1 and np.array_equal(training[7], series[7 : 7 + window])
    starts = [int(np.flatnonzero(series[:, 0] == w[0, 0])[0]) for w in real]
    assert min(starts) < len(series) * 0.5 and max(starts) > len(series) * 0.8  # from all over the series
    again, _, _, _ = protocol_windows(trained_model, training_frame, "paper", n=50, seed=0)
    assert np.array_equal(real, again)


@pytest.mark.parametrize("extra, has_training", [(0, False), (1, True)])
def test_paper_protocol_has_training_windows_only_when_two_do_not_overlap(
    trained_model, training_frame, extra, has_training
):
    window = trained_model.config.window
    short = training_frame.iloc[: 2 * window - 1 + extra]  # 2 * window rows: windows 0 and `window` are apart
    training = protocol_windows(trained_model, short, "paper", n=20, seed=0)[1]
    assert (training is not None) == has_training


def test_heldout_protocol_scores_only_windows_after_the_models_split(trained_model, training_frame):
    real, training, series, _ = protocol_windows(trained_model, training_frame, "heldout", n=1000, seed=0)
    split = len(series) - int(len(series) * trained_model.config.validation_fraction)
    window = trained_model.config.window
    assert len(real) == len(series) - split - window + 1  # every held-out window, none crossing the split
    assert len(training) == split - window + 1
    assert np.array_equal(real[0], series[split : split + window])


@pytest.mark.parametrize(
    "protocol, n, words", [("future", 100, "protocol must be one of"), ("paper", 5, "at least 10")]
)
def test_bad_requests_are_named_before_any_work(trained_model, training_frame, tmp_path, protocol, n, words):
    with pytest.raises(DataError, match=words):
        evaluate_generator(trained_model, training_frame, tmp_path / "out", protocol=protocol, n=n)
    assert not (tmp_path / "out").exists()


def test_other_channels_are_refused_and_extra_columns_are_left_out(trained_model, training_frame, tmp_path):
    with pytest.raises(DataError, match=r"column\(s\) \[b\] named in columns are not in the data"):
        protocol_windows(trained_model, training_frame.rename(columns={"b": "c"}), "paper", n=20, seed=0)
    wider = training_frame.assign(extra=1.0)
    assert np.array_equal(
        protocol_windows(trained_model, wider, "paper", n=20, seed=0)[0],
        protocol_windows(trained_model, training_frame, "paper", n=20, seed=0)[0],
    )


def test_report_has_every_metric_and_is_written(trained_model, training_frame, tmp_path):
    scores = evaluate_generator(
        trained_model, training_frame, tmp_path, protocol="heldout", n=40, repeats=1, fast=True, pictures=False
    )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["settings"]["protocol"] == "heldout" and written["copy"]["mean"] == scores["copy"]["mean"]
    assert {
        "discriminative",
        "predictive",
        "context_fid",
        "boundary",
        "copy",
        "detection",
        "detection_cnn",
        "texture",
        "horizon",
    } <= set(written)
    assert 0 <= written["horizon"]["mean"] <= 1 and set(written["horizon"]["per_channel"]) == {"a", "b"}
    assert set(written["texture"]["per_channel"]) == {"a", "b"}


def test_a_single_stage_model_is_evaluated_without_the_boundary_score(tiny_settings, training_frame, tmp_path):
    from stagediff import StageDiff, StageDiffConfig

    model = StageDiff(StageDiffConfig(**{**tiny_settings, "staged": False}, max_steps=2, validation_fraction=0.2)).fit(
        training_frame, "date", progress=False
    )
    scores = evaluate_generator(
        model, training_frame, tmp_path, protocol="paper", n=20, repeats=1, fast=True, pictures=False
    )
    assert "boundary" not in scores and "discriminative" in scores


def test_a_metric_subset_is_scored_and_bad_names_fail_before_sampling(trained_model, training_frame, tmp_path):
    scores = evaluate_generator(
        trained_model,
        training_frame,
        tmp_path / "some",
        protocol="paper",
        n=20,
        repeats=1,
        fast=True,
        pictures=False,
        metrics=["discriminative", "marginal"],
    )
    assert {k for k in scores if k != "settings"} == {"discriminative", "marginal"}
    with pytest.raises(DataError, match=r"unknown metric.*'horizon'"):  # the valid names include horizon
        evaluate_generator(trained_model, training_frame, tmp_path / "bad", protocol="paper", n=20, metrics=["nope"])
    with pytest.raises(DataError, match="'copy' metric needs"):  # one window: none to compare it with
        evaluate_generator(
            trained_model,
            training_frame.iloc[: trained_model.config.window],
            tmp_path / "bad",
            protocol="paper",
            n=20,
            metrics=["copy"],
        )
    assert not (tmp_path / "bad").exists()


def test_the_paper_protocol_checks_copying_against_windows_that_do_not_overlap(trained_model, training_frame, tmp_path):
    scores = evaluate_generator(
        trained_model,
        training_frame,
        tmp_path,
        protocol="paper",
        n=20,
        repeats=1,
        fast=True,
        pictures=False,
        metrics=["copy"],
    )
    assert scores["copy"]["mean"] > 0 and scores["copy"]["median_real_to_training"] > 0


def test_the_horizon_metric_scores_long_samples_against_the_whole_series(trained_model, training_frame, tmp_path):
    scores = evaluate_generator(
        trained_model,
        training_frame,
        tmp_path,
        protocol="paper",
        n=20,
        repeats=1,
        pictures=False,
        metrics=["horizon", "marginal"],
        long_windows=4,
        long_samples=2,
    )
    assert {k for k in scores if k != "settings"} == {"horizon", "marginal"}
    horizon = json.loads((tmp_path / "metrics.json").read_text())["horizon"]
    assert 0 <= horizon["mean"] <= 1 and horizon["values"] == [horizon["mean"]]
    assert horizon["samples"] == 2 and horizon["sample_length"] == 4 * trained_model.config.window
    series = training_frame[["a", "b"]].to_numpy()
    low, high = horizon["real_range"]["mean"]["a"]
    assert series[:, 0].min() < low < high < series[:, 0].max()
    with pytest.raises(DataError, match="long_samples must be a positive integer"):
        evaluate_generator(
            trained_model, training_frame, tmp_path / "bad", protocol="paper", n=20, metrics=["horizon"], long_samples=0
        )


def test_the_long_sample_picture_shows_the_real_band(tmp_path):
    from stagediff.plots import plot_long_sample_statistics

    rng = np.random.default_rng(0)
    series = rng.normal(size=(400, 2)).cumsum(axis=0) * 0.1
    samples = rng.normal(size=(2, 160, 2)).cumsum(axis=1) * 0.1
    path = plot_long_sample_statistics(
        series[-160:], samples, tmp_path / "long_sample.png", ["a", "b"], 32, reference=series, excursions=0.125
    )
    assert path.stat().st_size > 5_000
