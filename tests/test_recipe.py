"""The default recipe (stagediff.recipe): settings that follow the window, choices made from the training data,
presets and the benchmark cells' configurations, and the range margin of the samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from stagediff import StageDiff, StageDiffConfig
from stagediff.diffusion import make_sampler
from stagediff.errors import ConfigError
from stagediff.recipe import JOINT_MIN_WINDOWS, PRESETS, cell_config, data_choices, held_bounds, stage_length_for


@pytest.mark.parametrize(
    ("window", "stage", "patch", "context", "kernels", "width"),
    [
        (24, 8, 4, 4, (7, 1), 32),
        (64, 16, 8, 4, (13, 1), 32),
        (128, 32, 8, 8, (25, 1), 64),
        (256, 32, 8, 8, (25, 1), 64),
        (100, 25, 5, 10, (21, 1), 32),
    ],
)
def test_window_dependent_settings_follow_the_window(window, stage, patch, context, kernels, width):
    config = StageDiffConfig(window=window)
    assert (config.stage_length, config.patch_length, config.patch_stride, config.context) == (
        stage,
        patch,
        patch,
        context,
    )
    assert (config.pool_kernels, config.d_model, config.feedforward) == (kernels, width, 2 * width)


def test_a_changed_window_takes_its_own_settings_but_explicit_ones_stay():
    config = StageDiffConfig()
    assert config.replace(window=24).stage_length == 8  # was "not divisible into stages of stage_length 32"
    assert config.replace(window=24, d_model=48).feedforward == 96  # follows the width it was given
    explicit = StageDiffConfig(window=256, stage_length=64)
    assert (explicit.replace(window=512).stage_length, explicit.replace(window=512).pool_kernels) == (64, (51, 1))
    with pytest.raises(ConfigError, match="not divisible into stages of stage_length 64"):
        explicit.replace(window=96)
    with pytest.raises(ConfigError, match="cannot be cut into 3 or more stages"):
        stage_length_for(7)
    assert StageDiffConfig(window=7, staged=False).effective_stage_length == 7


def test_a_saved_configuration_is_concrete_and_round_trips():
    config = StageDiffConfig(window=64)
    again = StageDiffConfig.from_dict(config.to_dict())
    assert again == config and again.automatic == frozenset()


def test_presets_round_trip_and_unknown_names_are_refused():
    for name, settings in PRESETS.items():
        config = StageDiffConfig.preset(name)
        assert all(getattr(config, k) == v for k, v in settings.items())
        assert StageDiffConfig.from_dict(config.to_dict()) == config
        assert StageDiffConfig.from_dict({"preset": name, "max_steps": 5}) == config.replace(max_steps=5)
    assert StageDiffConfig.preset("exchange-256", d_model=16).d_model == 16
    with pytest.raises(ConfigError, match="unknown preset 'etth9'; the presets are: etth1-24"):
        StageDiffConfig.preset("etth9")


def coupled(length: int, coupling: float, seed: int = 0) -> np.ndarray:
    """(length, 3) random walks whose first two channels' steps correlate about ``coupling``, scaled to [-1, 1]."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=length)
    steps = np.stack(
        [shared, coupling * shared + np.sqrt(1 - coupling**2) * rng.normal(size=length), rng.normal(size=length)],
        axis=1,
    )
    walk = np.cumsum(steps, axis=0)
    low, high = walk.min(0), walk.max(0)
    return 2 * (walk - low) / (high - low) - 1


def test_cell_config_is_the_cells_preset_or_the_default_recipe():
    exchange = cell_config("exchange", 256, 7, validation_fraction=0.0)
    assert (exchange.stage_length, exchange.d_model, exchange.channel_independent) == (64, 32, True)
    assert (exchange.max_steps, exchange.batch_size, exchange.validation_fraction) == (7, 64, 0.0)
    default = cell_config("exchange", 256, 7, recipe="default")
    assert (default.stage_length, default.d_model, default.channel_independent) == (32, 64, None)  # chosen at fit
    assert cell_config("etth1", 256, 7, d_model=8).d_model == 8  # a change overrides the preset
    for name, settings in PRESETS.items():  # every preset is a valid configuration of its cell
        dataset, window = name.split("-")
        config = cell_config(dataset, int(window), 7)
        assert all(getattr(config, k) == v for k, v in settings.items()), name
    with pytest.raises(ValueError, match="recipe"):
        cell_config("etth1", 24, 7, recipe="cells")


def test_channels_are_modelled_jointly_only_where_they_move_together_and_the_data_suffice():
    window = 32
    long = coupled(window * (JOINT_MIN_WINDOWS + 10), 0.9)
    choice = data_choices(long, window, {})["channel_independent"]
    assert choice["value"] is False and choice["step_coupling"] > 0.8 and "jointly" in choice["because"]
    assert data_choices(long, window, {}) == data_choices(long.copy(), window, {})  # deterministic
    short = long[: window * (JOINT_MIN_WINDOWS - 10)]
    assert data_choices(short, window, {})["channel_independent"]["value"] is True
    assert "too few" in data_choices(short, window, {})["channel_independent"]["because"]
    loose = coupled(window * (JOINT_MIN_WINDOWS + 10), 0.1)
    assert data_choices(loose, window, {})["channel_independent"]["value"] is True
    given = {"channel_independent": True, "range_margin": 0.0, "calendar": ()}
    assert data_choices(long, window, given) == {}  # the user's stay


def test_the_range_margin_grows_with_how_far_the_series_left_its_own_range():
    flat = np.tile(np.sin(np.linspace(0, 60, 2000))[:, None], (1, 2))
    assert data_choices(flat, 32, {})["range_margin"]["value"] == 0.05  # the lower bound
    rising = np.linspace(-1, 1, 2000)[:, None] + 0.05 * flat[:, :1]
    margin = data_choices(rising, 32, {})["range_margin"]
    assert 0.15 < margin["value"] <= 0.5 and margin["observed"] > 0.15


def test_the_sampler_clips_to_the_training_range_widened_by_the_margin():
    x0 = torch.linspace(-3, 3, 61)
    assert make_sampler(StageDiffConfig(window=32, range_margin=0.0)).clip(x0).abs().max() == 1.0
    widened = make_sampler(StageDiffConfig(window=32, range_margin=0.25)).clip(x0)
    assert widened.max() == 1.5 and widened.min() == -1.5  # 25 % of the range (width 2) on either side
    assert make_sampler(StageDiffConfig(window=32, sampler="ddim", range_margin=0.5)).clip(x0).max() == 2.0


def test_fit_chooses_from_the_data_saves_the_choices_and_samples_within_the_margin(tiny_settings, frame_factory):
    frame = frame_factory(length=480)
    settings = {**tiny_settings, "channel_independent": None, "range_margin": None}
    model = StageDiff(StageDiffConfig(**settings, max_steps=30)).fit(
        frame, "date", progress=False, device="cpu", check=False
    )
    choices = model.metadata["choices"]
    assert set(choices) == {"calendar", "channel_independent", "range_margin"}
    assert model.config.channel_independent is choices["channel_independent"]["value"]
    assert model.config.range_margin == choices["range_margin"]["value"]
    samples = model.sample_array(8, seed=0)
    train = frame[["a", "b"]].to_numpy()[: int(0.9 * len(frame))]
    low, high = train.min(0), train.max(0)
    span = high - low
    margin = model.config.range_margin
    slack = 1e-5 * span  # float32 sampling
    assert (samples >= low - margin * span - slack).all() and (samples <= high + margin * span + slack).all()
    assert (samples < low).any() or (samples > high).any()  # this short fit overshoots: the margin lets it
    again = StageDiff(StageDiffConfig(**settings, max_steps=30)).fit(
        frame, "date", progress=False, device="cpu", check=False
    )
    assert again.metadata["choices"] == choices


def test_window_24_fits_with_the_default_recipe(frame_factory):
    frame = frame_factory(length=200)
    model = StageDiff(StageDiffConfig(window=24, max_steps=2, diffusion_steps=10, sampling_steps=5, d_model=8)).fit(
        frame, "date", progress=False, device="cpu", check=False
    )
    assert model.config.stage_length == 8 and model.sample_array(1).shape == (1, 24, 2)
    assert isinstance(pd.Timestamp(model.metadata["last_time"]), pd.Timestamp)


def test_bounds_the_data_piles_up_against_are_never_crossed():
    rng = np.random.default_rng(0)
    wave = np.sin(np.linspace(0, 80, 3000))
    solar = np.clip(wave, 0, None) + 0.01 * np.abs(rng.normal(size=3000))  # night: zero and a little noise
    share = 100 * np.minimum(1, 0.5 + 0.6 * wave)  # a percentage that often sits at 100
    held = held_bounds(np.stack([solar, share, wave + 0.1 * rng.normal(size=3000)], axis=1))
    assert held == {"low": [True, False, False], "high": [False, True, False]}
    sampler = make_sampler(StageDiffConfig(window=32, range_margin=0.5)).hold(held)
    clipped = sampler.clip(torch.full((4, 3), -5.0)), sampler.clip(torch.full((4, 3), 5.0))
    assert clipped[0][0].tolist() == [-1.0, -2.0, -2.0] and clipped[1][0].tolist() == [2.0, 1.0, 2.0]
