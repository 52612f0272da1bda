"""Tests of stagediff.config: defaults, unknown keys, types, consistency checks and round trips."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from stagediff import StageDiff
from stagediff.config import RETIRED, RETIRED_AFTER, StageDiffConfig
from stagediff.errors import ConfigError
from stagediff.settings import field_names


def test_defaults_are_valid_and_consistent():
    config = StageDiffConfig()
    assert config.window % config.stage_length == 0
    assert config.stages == config.window // config.stage_length
    assert config.effective_stage_length == config.stage_length
    assert config.channels is None
    assert config.sampling_steps <= config.diffusion_steps


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StageDiffConfig().window = 64  # type: ignore[misc]


@pytest.mark.parametrize(
    "build",
    [
        lambda: StageDiffConfig.from_dict({"window": 64, "windw": 32}),
        lambda: StageDiffConfig().replace(windw=32),
        lambda: StageDiff(windw=32),
        lambda: StageDiffConfig(windw=32),
    ],
)
def test_unknown_key_is_named(build):
    with pytest.raises(ConfigError, match="windw") as raised:
        build()
    assert "Valid keys" in str(raised.value) and "did you mean 'window' for 'windw'?" in str(raised.value)


@pytest.mark.parametrize(
    "key, value",
    [
        ("window", "256"),
        ("window", 256.0),
        ("window", True),
        ("channel_fusion", 1),
        ("staged", "yes"),
        ("pool_kernels", [25, 9, 1]),
        ("pool_kernels", (25, 9.0, 1)),
        ("learning_rate", "1e-3"),
        ("sampler", None),
        ("channels", 2.5),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        StageDiffConfig(**{key: value})


def test_numbers_accepted_where_floats_are_expected():
    assert StageDiffConfig(learning_rate=1, dropout=0).learning_rate == 1


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(window=0), "window must be at least 1"),
        (dict(context=-1), "context must be non-negative"),
        (dict(sampler="euler"), "sampler must be one of"),
        (dict(schedule="sqrt"), "schedule must be one of"),
        (dict(missing="drop"), "missing must be one of"),
        (dict(diffusion_steps=10, sampling_steps=20), "cannot exceed diffusion_steps"),
        (dict(d_model=30, heads=4), "divisible by heads"),
        (dict(pool_kernels=(4, 1)), "odd"),
        (dict(pool_kernels=()), "at least one kernel"),
        (dict(fusion_kernel=4), "fusion_kernel must be odd"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(channels=0), "channels"),
        (dict(guidance=-1.0), "guidance must be in"),
    ],
)
def test_inconsistent_values_are_errors(changes, words):
    with pytest.raises(ConfigError, match=words):
        StageDiffConfig(**changes)


def test_retired_switches_at_their_old_value_are_dropped():
    default = StageDiffConfig()
    assert StageDiffConfig.from_dict(dict(RETIRED)) == default
    assert StageDiffConfig(**RETIRED) == default.replace(**RETIRED) == default
    assert StageDiffConfig.from_dict({"preset": "stock-24", **RETIRED}) == StageDiffConfig.preset("stock-24")
    assert StageDiffConfig(fourier_loss_weight=0) == default  # an int where the float was


@pytest.mark.parametrize(
    "key, value",
    [
        ("channel_embedding", True),
        ("channel_attention", True),
        ("detail_basis", True),
        ("loss", "l1"),
        ("loss_weighting", "diffusion_ts"),
        ("fourier_loss_weight", 2.26),
        ("channel_embedding", 0),
    ],
)
def test_retired_switches_set_otherwise_name_the_commit_that_has_them(tmp_path, key, value):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"window": 64, key: value}))
    for build in (
        lambda: StageDiffConfig.from_file(path),
        lambda: StageDiffConfig(**{key: value}),
        lambda: StageDiffConfig().replace(**{key: value}),
        lambda: StageDiff(**{key: value}),
    ):
        with pytest.raises(ConfigError, match=f"{key} was retired") as raised:
            build()
        assert RETIRED_AFTER in str(raised.value) and repr(value) in str(raised.value)
    assert not set(RETIRED) & set(field_names(StageDiffConfig))


def test_window_not_divisible_by_stage_length_suggests_multiples():
    with pytest.raises(ConfigError) as raised:
        StageDiffConfig(window=100, stage_length=32)
    message = str(raised.value)
    assert "not divisible" in message
    assert "96" in message and "128" in message  # the neighbouring multiples of 32


def test_window_not_divisible_is_fine_without_stages():
    config = StageDiffConfig(window=100, stage_length=32, staged=False, patch_length=4, patch_stride=4)
    assert config.effective_stage_length == 100 and config.stages == 1 and config.effective_context == 0


def test_patches_must_tile_the_stage():
    # stage 8 + 2 * context 2 = 12 steps; (12 - 4) is not a multiple of stride 3
    with pytest.raises(ConfigError, match="tile"):
        StageDiffConfig(window=32, stage_length=8, context=2, patch_length=4, patch_stride=3)
    with pytest.raises(ConfigError, match="patch_length"):
        StageDiffConfig(window=32, stage_length=8, context=0, patch_length=16, patch_stride=2)
    with pytest.raises(ConfigError, match="context"):
        StageDiffConfig(window=32, stage_length=8, context=10, patch_length=4, patch_stride=2)


def test_dict_round_trip_is_exact(tiny_config):
    data = tiny_config.to_dict()
    assert set(data) == set(field_names(StageDiffConfig))
    assert isinstance(data["pool_kernels"], list)  # JSON/YAML friendly
    assert StageDiffConfig.from_dict(data) == tiny_config
    assert StageDiffConfig.from_dict(yaml.safe_load(tiny_config.to_json())) == tiny_config


def test_from_dict_rejects_non_mappings():
    with pytest.raises(ConfigError, match="mapping"):
        StageDiffConfig.from_dict([("window", 32)])  # type: ignore[arg-type]


def test_yaml_file_round_trip(tmp_path, tiny_config):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_config.to_dict()))
    assert StageDiffConfig.from_file(path) == tiny_config

    partial = tmp_path / "partial.yaml"
    partial.write_text("window: 64\nstage_length: 16\npool_kernels: [9, 1]\n")
    loaded = StageDiffConfig.from_file(partial)
    assert (loaded.window, loaded.stage_length, loaded.pool_kernels) == (64, 16, (9, 1))
    defaults = StageDiffConfig()
    assert loaded.replace(window=256, stage_length=32, pool_kernels=defaults.pool_kernels) == defaults


def test_from_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        StageDiffConfig.from_file(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("window: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        StageDiffConfig.from_file(broken)
    typo = tmp_path / "typo.yaml"
    typo.write_text("windw: 64\n")
    with pytest.raises(ConfigError, match="windw"):
        StageDiffConfig.from_file(typo)


def test_replace_validates_and_leaves_original_alone(tiny_config):
    changed = tiny_config.replace(window=64)
    assert changed.window == 64 and tiny_config.window == 32
    with pytest.raises(ConfigError, match="not divisible"):
        tiny_config.replace(window=36)
    with pytest.raises(ConfigError, match="window"):
        tiny_config.replace(window="64")


def test_generator_overrides_go_through_validation():
    assert StageDiff(window=64, stage_length=16).config.stages == 4
    with pytest.raises(ConfigError, match="not divisible"):
        StageDiff(window=60, stage_length=16)
