"""Known values (issue 32): known channels, imputation and training on data with gaps (missing="mask"), all through
one mechanism (stagediff.conditioning)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stagediff import SampleRequest, StageDiff, StageDiffConfig
from stagediff.conditioning import KINDS, draw_known
from stagediff.data import load_prepared, prepare, save_prepared, validate_frame
from stagediff.errors import DataError
from stagediff.metrics.conditional import conditional_scores
from stagediff.train import Trainer, build_denoiser
from tests.conftest import TINY, smooth_frame


@pytest.fixture(scope="module")
def known_model(training_frame):
    """A tiny model trained with known values (conditioning, not the default), with the day cycle."""
    config = StageDiffConfig(**TINY, max_steps=40, validation_fraction=0.2, calendar=["day"], conditioning=0.5)
    return StageDiff(config).fit(training_frame, "date", progress=False, device="cpu", check=False)


def test_training_windows_have_known_values_of_every_kind_and_always_something_to_generate():
    shape = (600, 32, 3)
    known = draw_known(shape, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(known, draw_known(shape, 0.5, torch.Generator().manual_seed(0)))  # seeded
    some = known.flatten(1).any(dim=1)
    assert 0.4 < some.float().mean() < 0.6  # the rate
    assert not known.flatten(1).all(dim=1).any()  # every window keeps a value to generate
    whole_channels = (known.all(dim=1) | ~known.any(dim=1)).all(dim=1) & some
    history = (known.all(dim=2)[:, :1] & ~known.any(dim=2)[:, -1:]).squeeze(1) & ~whole_channels
    assert whole_channels.any() and history.any() and (some & ~whole_channels & ~history).any()  # all KINDS
    assert len(KINDS) == 3
    assert not draw_known(shape, 0.0, torch.Generator()).any()
    single = draw_known((200, 16, 1), 1.0, torch.Generator().manual_seed(1))
    assert single.flatten(1).any(dim=1).float().mean() > 0.9  # (gaps may cover a whole window now and then)
    assert not single.flatten(1).all(dim=1).any()


def test_the_denoiser_sees_known_values_only_where_it_was_trained_to(tiny_config):
    conditioned, plain = build_denoiser(tiny_config.replace(conditioning=0.5), 2).eval(), build_denoiser(tiny_config, 2)
    patch = tiny_config.patch_length
    # each channel's input and noisy stage, its known values and mask, and every channel's beside a lone channel
    assert conditioned.layers[0].stage_patches.projection.in_features == (2 + 2 + 2 * 2) * patch
    joint = build_denoiser(tiny_config.replace(conditioning=0.5, channel_independent=False), 2)
    assert joint.layers[0].stage_patches.projection.in_features == (2 + 2) * 2 * patch
    x, k = torch.randn(2, 32, 2), torch.tensor([5, 50])
    observed = torch.full_like(x, float("nan"))
    with torch.no_grad():
        assert torch.equal(conditioned(x, k), conditioned(x, k, observed=observed))  # nothing known = None
        observed[:, :, 0] = 0.5
        assert not torch.allclose(conditioned(x, k), conditioned(x, k, observed=observed))
    with pytest.raises(ValueError, match="no conditioning inputs"):
        plain(x, k, observed=observed)


def test_known_channels_come_back_exactly_as_given_and_the_others_are_drawn(known_model):
    scenario = pd.DataFrame({"a": np.linspace(110.123456789, 190.987654321, 48)})
    frame = known_model.sample(n=3, length=48, seed=2, known=scenario)
    for _, sample in frame.groupby("sample"):
        assert np.array_equal(sample["a"].to_numpy(), scenario["a"].to_numpy())
    draws = frame["b"].to_numpy().reshape(3, 48)
    assert np.isfinite(draws).all() and not np.allclose(draws[0], draws[1])
    again = known_model.sample(n=3, length=48, seed=2, known=scenario)
    pd.testing.assert_frame_equal(frame, again)
    # sampled beside other requests, the same bytes
    together = known_model.sample_many([SampleRequest(2, 48, seed=1), SampleRequest(3, 48, seed=2, known=scenario)])
    assert np.array_equal(together[1], known_model.sample_array(3, 48, seed=2, known=scenario))


def test_known_values_with_timestamps_set_the_start(known_model):
    times = pd.date_range("2023-05-01 07:00", periods=32, freq="h")
    scenario = pd.DataFrame({"date": times, "b": np.full(32, 140.0)})
    frame = known_model.sample(n=1, length=32, known=scenario)
    assert frame["date"].tolist() == list(times)
    assert frame.equals(known_model.sample(n=1, length=32, known=scenario.set_index("date")))
    with pytest.raises(DataError, match="must hold the samples' timestamps"):
        known_model.sample(n=1, length=32, known=scenario.assign(date=times + pd.Timedelta("30min") * np.arange(32)))
    with pytest.raises(DataError, match="must hold the samples' timestamps"):
        known_model.sample(n=1, length=32, known=scenario, start="2023-05-02 00:00")
    # dated long after the data, they do not continue it; dated right after a prefix, they continue that
    assert known_model.plan_sampling(SampleRequest(1, 32, known=scenario)).known is None
    right_after = known_model.sample_times(32)[1]
    assert known_model.plan_sampling(SampleRequest(1, 32, known=scenario.assign(date=right_after))).known is not None
    history = smooth_frame().iloc[:40]
    following = scenario.assign(date=pd.date_range(history["date"].iloc[-1], periods=33, freq="h")[1:])
    assert known_model.sample(n=1, length=32, prefix=history, known=following)["date"].equals(following["date"])
    with pytest.raises(DataError, match="right after the prefix"):
        known_model.sample(n=1, length=32, prefix=history, known=scenario)


@pytest.mark.parametrize(
    ("known", "length", "message"),
    [
        (pd.DataFrame({"c": np.ones(32)}), 32, r"column\(s\) \['c'\] that are not channels of this model"),
        (pd.DataFrame({"a": np.ones(32), "b": np.ones(32)}), 32, "known gives every channel"),
        (pd.DataFrame({"a": np.ones(31)}), 32, "known has 31 rows; it must have one per step"),
        (pd.DataFrame({"a": [1.0] * 10 + [np.nan] + [1.0] * 21}), 32, "known record 10: channel 'a' is missing"),
        (pd.DataFrame({"a": [1.0] * 5 + [np.inf] + [1.0] * 26}), 32, "known record 5: channel 'a' is infinite"),
        (pd.DataFrame({"a": ["x"] * 32}), 32, "channel 'a' must hold numbers"),
        (pd.DataFrame({"a": np.full(32, 1e30)}), 32, "known record 0: channel 'a' is 1e\\+30, more than 10"),
        (np.ones((32, 1)), 32, "known must be a DataFrame"),
    ],
)
def test_bad_known_values_are_refused_by_name(known_model, known, length, message):
    with pytest.raises(DataError, match=message):
        known_model.sample(n=1, length=length, known=known)


def gapped_frame(model: StageDiff) -> tuple[pd.DataFrame, np.ndarray]:
    frame = model.sample(n=1, length=160, seed=7).drop(columns="sample")
    gapped = frame.copy()
    gapped.loc[40:99, "a"] = np.nan  # a long gap in one channel
    gapped.loc[120:135, ["a", "b"]] = np.nan  # a shorter one in both
    gapped.loc[159, "b"] = np.nan  # the last step
    return gapped, gapped[["a", "b"]].notna().to_numpy()


def test_imputation_never_changes_an_observed_value_and_fills_every_gap(known_model):
    gapped, observed = gapped_frame(known_model)
    filled = known_model.impute(gapped, n=4, seed=3)
    assert len(filled) == 4 * len(gapped)
    draws = filled[["a", "b"]].to_numpy().reshape(4, len(gapped), 2)
    assert np.isfinite(draws).all()
    for draw in draws:
        assert np.array_equal(draw[observed], gapped[["a", "b"]].to_numpy()[observed])
    assert not np.allclose(draws[0][~observed], draws[1][~observed])  # several draws, each its own
    assert (filled.groupby("sample")["date"].apply(list) == [list(gapped["date"])] * 4).all()
    # the model trained without known values fills gaps too, by replacement alone, and keeps what was observed
    plain = StageDiff(known_model.config.replace(conditioning=0.0, max_steps=5)).fit(  # the default
        smooth_frame(), "date", progress=False, check=False
    )
    alone = plain.impute(gapped, n=2, seed=3)[["a", "b"]].to_numpy().reshape(2, len(gapped), 2)
    assert np.array_equal(alone[0][observed], gapped[["a", "b"]].to_numpy()[observed])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(a=np.nan, b=np.nan), "every value of the frame to impute is missing"),
        (lambda f: f.assign(a=[np.nan] * 3 + list(f["a"][3:])), r"misses \['a'\] at its first step"),
        (lambda f: f.drop(columns="b"), r"lacks the channel column\(s\) \['b'\]"),
        (lambda f: f.assign(b=np.inf), "channel 'b' is infinite"),
        (lambda f: f.assign(c=1.0), r"column\(s\) \['c'\] that are not channels"),
    ],
)
def test_bad_frames_to_impute_are_refused_by_name(known_model, change, message):
    gapped, _ = gapped_frame(known_model)
    with pytest.raises(DataError, match=message):
        known_model.impute(change(gapped))


def test_missing_mask_keeps_the_gaps_out_of_the_loss(tmp_path):
    frame = smooth_frame()
    frame.loc[100:160, "a"] = np.nan
    frame.loc[300:305, "b"] = np.nan
    series = validate_frame(frame, "date", missing="mask")
    assert series.missing is not None and series.missing.sum() == 61 + 6
    assert np.isfinite(series.values).all()  # filled for the windows; left out of the loss
    prepared = prepare(series, 32, 0.2)
    again = load_prepared(save_prepared(tmp_path, prepared, 32, 8))
    assert np.array_equal(again.missing, prepared.missing)
    config = StageDiffConfig(**TINY, channels=2, max_steps=3, validation_fraction=0.2, conditioning=0.5)
    trainer = Trainer(
        config,
        build_denoiser(config, 2),
        prepared.train,
        prepared.validation,
        device="cpu",
        missing=prepared.missing_of("train"),
        validation_missing=prepared.missing_of("validation"),
    )
    windows = trainer.windows[100:101].expand(64, -1, -1)  # a window that starts at the gap
    *_, observed, counted = trainer.noisy_batch(windows, torch.Generator().manual_seed(0), 64)
    gap = torch.tensor(series.missing[100:132]).expand(64, -1, -1)
    assert (counted[gap] == 0).all() and (counted[~gap] > 0).any()
    assert not observed[gap].isfinite().any()  # a missing value is never given as known
    trainer.model.conditioned = False  # as a model without conditioning (the default): nothing known, gaps not counted
    *_, observed, counted = trainer.noisy_batch(windows, torch.Generator().manual_seed(0), 64)
    assert observed is None and (counted[gap] == 0).all() and (counted[~gap] == 1).all()
    model = StageDiff(config.replace(missing="mask")).fit(frame, "date", progress=False, check=False)
    assert np.isfinite(model.sample_array(2, 32)).all()
    with pytest.raises(DataError, match="missing"):
        StageDiff(config).fit(frame, "date", progress=False, check=False)  # missing="error", the default


def test_the_conditional_scores_of_the_evaluate_stage(known_model):
    from stagediff.metrics.conditional import draw_scores, interpolate_gaps, point_scores, remove_gaps

    real = smooth_frame(length=200, seed=5)
    values = real[["a", "b"]].to_numpy()
    removed = remove_gaps(200, 2, np.random.default_rng(0))
    assert not removed[0].any() and (removed.mean(axis=0) >= 0.1).all()
    scale = values.std(axis=0)
    perfect = draw_scores(np.stack([values] * 5), values, scale, removed)
    assert perfect == {"mae": 0.0, "crps": 0.0, "coverage": 1.0}
    assert point_scores(interpolate_gaps(values, removed), values, scale, removed)["mae"] > 0
    scores = conditional_scores(known_model, values, scale, pd.DatetimeIndex(real["date"]), draws=3, windows=2)
    assert set(scores) == {f"{kind}_{key}" for kind in ("known", "impute") for key in ("mae", "crps", "coverage")} | {
        "impute_interpolation_mae"
    }
    assert all(np.isfinite(value) and value >= 0 for value in scores.values())
