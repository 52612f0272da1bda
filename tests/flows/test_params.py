"""Tests of flows.params: params.yaml's sections, typed and validated like StageDiffConfig, and the request limits
that its package section sets for the service."""

from __future__ import annotations

import pytest

from flows import PARAMS
from flows.params import PipelineParams
from serving.requests import RequestLimits
from stagediff import StageDiffConfig
from stagediff.errors import ConfigError


def test_the_projects_params_yaml_reads_and_round_trips():
    params = PipelineParams.from_file(PARAMS)
    assert params.model.window == 128 and params.retrain.metrics == ("detection", "texture", "predictive")
    assert PipelineParams.from_dict(params.to_dict()) == params
    assert PipelineParams.from_dict({}) == PipelineParams()


def test_request_limits_are_one_set_that_params_yaml_sets():
    package = PipelineParams.from_dict({"package": {"max_samples": 4, "max_cost": 1000}}).package
    assert package.limits() == RequestLimits(max_samples=4, max_cost=1000)
    assert package.limits().to_dict() == {**RequestLimits().to_dict(), "max_samples": 4, "max_cost": 1000}
    assert RequestLimits.from_dict(None) == RequestLimits()
    with pytest.raises(ConfigError, match="unknown request limit key.*did you mean 'max_length'"):
        RequestLimits.from_dict({"max_lenght": 5})
    with pytest.raises(ConfigError, match="max_values must be at least 1"):
        PipelineParams.from_dict({"package": {"max_values": 0}})
    with pytest.raises(ConfigError, match="max_cost' must be a int"):
        RequestLimits(max_cost=True)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"modle": {}}, "unknown params.yaml section key.*did you mean 'model'"),
        ({"data": ["synthetic"]}, "section 'data' must be a mapping"),
        ({"data": {"sorce": "etth1"}}, "unknown data key.*did you mean 'source'"),
        ({"data": {"max_missing_fraction": 1.0}}, "data.max_missing_fraction must be in"),
        ({"evaluate": {"windows": 5}}, "evaluate.windows must be at least 10"),
        ({"evaluate": {"fast": "no"}}, "evaluate key 'fast' must be a bool"),
        ({"package": {"name": "Stage Diff"}}, "package.name must be lower-case"),
        ({"retrain": {"cron": "0 3 * *"}}, "retrain.cron must have 5 fields"),
        ({"retrain": {"margin": 1.5}}, "retrain.margin must be in"),
        ({"model": {"windw": 64}}, "did you mean 'window'"),
        ({"model": {"loss": "l1"}}, "loss was retired"),
    ],
)
def test_a_bad_section_or_key_is_named(data, words):
    with pytest.raises(ConfigError, match=words):
        PipelineParams.from_dict(data)


def test_the_model_section_is_a_stage_diff_config_with_its_preset_and_retired_keys():
    params = PipelineParams.from_dict({"model": {"preset": "stock-24", "loss": "mse", "max_steps": 7}})
    assert params.model == StageDiffConfig.preset("stock-24", max_steps=7)
    assert PipelineParams.from_dict({"data": {"columns": ["a", "b"]}}).data.columns == ("a", "b")  # YAML lists
