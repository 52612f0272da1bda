"""The request checks of the service, without a server: each bad request is refused with a message that
names the problem and the allowed range; good ones get their defaults filled in."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from serving.requests import (
    BodyError,
    GenerateRequest,
    ImputeRequest,
    RequestError,
    RequestLimits,
    check_body,
    check_prefix,
    plan_impute,
    plan_request,
)
from stagediff import DataError, StageDiff, StageDiffConfig
from stagediff.data import MinMaxScaler
from stagediff.model import StageDiffDenoiser

LIMITS = RequestLimits(max_length=1024, max_samples=8, max_values=4096)
HOURLY = {
    "channels": ["a", "b"],
    "time_column": "date",
    "frequency": {"kind": "timedelta", "value": "PT1H"},
    "last_time": "2022-01-20T23:00:00",
}
STEPS = {"channels": ["a", "b"], "time_column": None, "frequency": None, "last_time": None}


@pytest.fixture
def untrained(tiny_settings):
    """A tiny model with the given metadata and random weights: the checks read configuration and metadata, and
    plan the sampling run (which scales a prefix), but sample nothing."""

    def build(metadata: dict) -> StageDiff:
        config = StageDiffConfig(**tiny_settings, channels=2)
        model = StageDiff(config)
        model.metadata = dict(metadata)
        model.denoiser = StageDiffDenoiser(config, 2).eval()
        model.scaler = MinMaxScaler(np.array([100.0, 100.0]), np.array([200.0, 200.0]))
        return model

    return build


@pytest.fixture
def hourly(untrained) -> StageDiff:
    return untrained(HOURLY)


def plan(model: StageDiff, **fields):
    return plan_request(GenerateRequest(**fields), model, LIMITS)


def refused(model: StageDiff, *, stream: bool = False, **fields) -> str:
    with pytest.raises(RequestError) as error:
        plan_request(GenerateRequest(**fields), model, LIMITS, stream=stream)
    return str(error.value)


def records(times, a=None, b=None) -> list[dict]:
    a = a or [150.0 + i for i in range(len(times))]
    b = b or [120.0 - i for i in range(len(times))]
    return [{"date": t, "a": x, "b": y} for t, x, y in zip(times, a, b)]


HOURS = [f"2022-01-21T{h:02d}:00:00" for h in range(4)]


def test_defaults_are_filled_in_and_a_seed_is_chosen(hourly):
    chosen = plan(hourly)
    assert (chosen.n_samples, chosen.length, chosen.steps, chosen.sampler) == (1, 32, 5, "ddim")
    assert chosen.seed_chosen and 0 <= chosen.seed < 2**31
    given = plan(hourly, seed=123, steps=20, n_samples=2, length=64)
    assert (given.seed, given.seed_chosen, given.sampler) == (123, False, "ddim")  # the model's sampler, always
    ancestral = plan(hourly, sampler="ddpm")
    assert (ancestral.sampler, ancestral.steps) == ("ddpm", 20)  # every diffusion step unless asked for fewer
    assert plan(hourly, sampler="ddpm", steps=8).steps == 8


@pytest.mark.parametrize("length", [4, 12, 1032])
def test_length_must_be_a_multiple_of_the_stage_length_within_the_limit(hourly, length):
    assert (
        refused(hourly, length=length)
        == f"length must be a multiple of the stage length 8 between 8 and 1024, got {length}"
    )


def test_counts_and_steps_out_of_range_name_the_range(hourly):
    assert refused(hourly, n_samples=9) == "n_samples must be an integer between 1 and 8, got 9"
    assert refused(hourly, steps=21) == "steps must be an integer between 1 and 20, got 21"


def test_a_request_over_the_value_limit_says_how_long_it_may_be(hourly):
    assert refused(hourly, n_samples=8, length=512) == (
        "n_samples * length * channels = 8 * 512 * 2 = 8,192 exceeds the limit of 4,096 values per request "
        "(max_values); with n_samples=8 and steps=5 the length may be at most 256 (or ask for fewer samples)"
    )


def test_a_request_over_the_cost_budget_says_how_long_it_may_be(hourly):
    """The budget counts work: n_samples * length * channels * steps."""
    budget = RequestLimits(max_length=1024, max_samples=8, max_values=4096, max_cost=40_000)
    assert plan_request(GenerateRequest(n_samples=8, length=248, steps=10), hourly, budget).length == 248  # 39,680
    with pytest.raises(RequestError) as error:
        plan_request(GenerateRequest(n_samples=8, length=256, steps=10), hourly, budget)
    assert str(error.value) == (
        "n_samples * length * channels * steps = 8 * 256 * 2 * 10 = 40,960 exceeds the budget of 40,000 per request "
        "(max_cost); with n_samples=8 and steps=10 the length may be at most 248 (or ask for fewer samples or steps)"
    )
    with pytest.raises(RequestError, match="with n_samples=8 and steps=20 not even one stage of 8 steps fits"):
        plan_request(GenerateRequest(n_samples=8, length=8, steps=20), hourly, RequestLimits(max_cost=2000))
    assert budget.longest(1, 2, 20, 8) == 1000 and budget.longest(8, 2, 1, 8) == 256


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("multipart/form-data", b"x", 415, "got content-type 'multipart/form-data'"),
        (
            "text/plain",
            b"{}",
            415,
            "must be a JSON object sent with content-type application/json, got content-type "
            "'text/plain'; e.g. curl -H 'content-type: application/json'",
        ),
        (
            "application/x-www-form-urlencoded",
            b"n_samples=2",
            415,
            "got content-type 'application/x-www-form-urlencoded'",
        ),
        ("", b"{}", 415, "got content-type ''"),
        ("application/json", b"", 400, "the request body is empty; send a JSON object: {} for every default"),
        (None, b"  \n", 400, "the request body is empty"),
        (
            "application/json",
            b'{"n_samples": 1,',
            400,
            "the request body is not valid JSON (EOF while parsing a value at "
            "line 1 column 16); send a JSON object such as",
        ),
        (
            "application/json",
            b'{"lenght": 64, "seed": -1}',
            400,
            "the request body does not fit the schema (see "
            "/docs.json): seed: Input should be greater than or equal "
            "to 0, got -1; lenght: Extra inputs are not permitted, got 64",
        ),
        (
            "application/json",
            b"[1, 2]",
            400,
            'must be a JSON object such as {"n_samples": 2, "length": 256} ({} for every default), got an array',
        ),
        ("application/json", b'"text"', 400, "got a string"),
        ("application/json", b"null", 400, "got null"),
        ("application/json", b"12", 400, "got a number"),
    ],
)
def test_a_body_that_is_not_a_json_object_of_the_schema_is_refused(content_type, body, status, message):
    with pytest.raises(BodyError) as error:
        check_body(content_type, body, GenerateRequest)
    assert error.value.status == status and message in str(error.value)
    if "does not fit the schema" in message:
        assert [problem["loc"] for problem in error.value.detail] == [("seed",), ("lenght",)]


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_a_json_object_passes_the_body_check(content_type):
    for body in (b"{}", b' {"length": 64} ', b'{"prefix": [{"a": NaN}]}'):  # NaN: refused later, naming the record
        check_body(content_type, body, GenerateRequest)


def test_unknown_fields_and_wrong_types_fail_in_the_schema():
    for body in (
        {"n_samples": 1, "lenght": 64},
        {"n_samples": "2"},
        {"length": 64.5},
        {"seed": -1},
        {"format": "xml"},
        {"n_samples": True},
        {"steps": "5"},
    ):
        with pytest.raises(ValidationError):
            GenerateRequest.model_validate(body)


def test_a_number_without_a_fraction_is_an_integer_as_in_json_schema():
    request = GenerateRequest.model_validate_json(b'{"n_samples": 2.0, "length": 64.0, "seed": 7.0, "steps": 3.0}')
    assert (request.n_samples, request.length, request.seed, request.steps) == (2, 64, 7, 3)


def test_start_is_parsed_on_the_model_time_axis(hourly, untrained):
    assert plan(hourly, start="2030-01-01T00:00:00").start == pd.Timestamp("2030-01-01")
    assert "is not an ISO 8601 timestamp" in refused(hourly, start="next tuesday")
    assert "must be an ISO 8601 timestamp" in refused(hourly, start=5)
    for vague in ("", "now", "tomorrow", "-999999-01-01"):  # pandas reads some of these; ISO 8601 does not
        assert f"start {vague!r} is not an ISO 8601 timestamp" in refused(hourly, start=vague)
    steps = untrained(STEPS)
    assert plan(steps, start=100).start == 100
    for bad in ("2030-01-01", 1.5, 2**70, math.inf):
        assert "integer step number between" in refused(steps, start=bad)


def test_timestamps_after_the_year_9999_are_refused(hourly):
    assert plan(hourly, start="9999-12-31T08:00:00", length=16).start == pd.Timestamp("9999-12-31T08:00:00")
    assert refused(hourly, start="9999-12-31T23:00:00", length=16) == (
        "the 16 timestamps from start 9999-12-31 23:00:00 end in 10000-01-01 14:00:00, after the year 9999 that "
        "ISO 8601 timestamps can name; choose an earlier start or a shorter length"
    )


def test_start_and_prefix_together_are_refused(hourly):
    assert "either start or prefix" in refused(hourly, start="2030-01-01T00:00:00", prefix=records(HOURS))


def test_a_good_prefix_becomes_a_frame(hourly):
    frame = plan(hourly, prefix=records(HOURS)).prefix
    assert list(frame.columns) == ["date", "a", "b"]
    assert frame["date"].iloc[-1] == pd.Timestamp("2022-01-21T03:00:00")


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ([], "prefix is empty"),
        (
            [{"date": HOURS[0], "a": 1.0}],
            "prefix record 0 lacks ['b']: every record needs exactly the columns ['date', 'a', 'b']",
        ),
        ([{"date": HOURS[0], "a": 1.0, "b": 2.0, "c": 3.0}], "prefix record 0 has unknown ['c']"),
        ([{"a": 1.0, "b": 2.0}], "prefix record 0 lacks ['date']"),
        (
            records(HOURS, a=[1.0, math.nan, 2.0, 3.0]),
            "prefix: channels contain NaN or infinite values ('a': 1 missing/infinite, first at row 1)",
        ),
        (
            records(HOURS, b=[1.0, 2.0, math.inf, 3.0]),
            "('b': 1 missing/infinite, first at row 2); fill them before sending",
        ),
        (records(HOURS, a=[1.0, "2", 2.0, 3.0]), "prefix record 1: channel 'a' must be a number, got '2'"),
        (records(HOURS, a=[1.0, None, 2.0, 3.0]), "channel 'a' must be a number, got None"),
        (records(HOURS, a=[1.0, True, 2.0, 3.0]), "channel 'a' must be a number, got True"),
        (
            records([HOURS[0], HOURS[2], HOURS[1], HOURS[3]]),
            "prefix: time column 'date' is not strictly increasing: it goes back at row 2",
        ),
        (
            records([HOURS[0], HOURS[0]]),
            "prefix: time column 'date' has 1 duplicated timestamp(s), e.g. [2022-01-21 00:00:00]",
        ),
        (
            records([HOURS[0], HOURS[1], HOURS[3]]),
            "prefix: time column 'date' must be 1 hour apart (the model's frequency); rows 1 and 2 are 2 hours apart",
        ),
        (records(["2022-01-21", "tomorrow"]), "not ISO 8601 timestamps (row 1: 'tomorrow')"),
        (records(["2022-01-21T00:00:00", "now"]), "not ISO 8601 timestamps (row 1: 'now')"),
        (
            records(["2022-01-21T00:00:00", ""]),
            "prefix: time column 'date' has 1 value(s) that are not ISO 8601 timestamps (row 1: '')",
        ),
        (records([1, 2]), "has 2 value(s) that are not ISO 8601 timestamps (row 0: 1; row 1: 2)"),
    ],
)
def test_bad_prefixes_are_named(hourly, prefix, expected):
    assert expected in refused(hourly, prefix=prefix)


def test_a_number_beyond_float64_is_refused_by_name(hourly):
    """JSON allows integers of any size; 10**400 once reached numpy (an OverflowError, a 500)."""
    history = records(HOURS)
    history[1]["a"] = 10**400
    assert "prefix record 1: channel 'a' is 1000000000" in refused(hourly, prefix=history)
    assert "beyond the range of a float64 number" in refused(hourly, prefix=history)


def test_a_prefix_over_the_limits_is_refused(hourly):
    hours = pd.date_range("2022-01-01", periods=1500, freq="h").strftime("%Y-%m-%dT%H:%M:%S").tolist()
    assert "prefix has 1500 records; at most 1024 are accepted" in refused(hourly, prefix=records(hours))


def test_a_numeric_time_axis_checks_its_frequency_with_a_float_tolerance(untrained):
    tenths = untrained(
        {"channels": ["a", "b"], "time_column": "t", "frequency": {"kind": "number", "value": 0.1}, "last_time": 1.0}
    )
    times = [0.1 * i for i in range(1, 8)]  # 0.30000000000000004 - 0.2 is not exactly 0.1
    frame = check_prefix([{"t": t, "a": 1.0, "b": 2.0} for t in times], tenths, LIMITS)
    assert frame["t"].tolist() == times
    with pytest.raises(RequestError, match="must be 0.1 apart"):
        check_prefix([{"t": t, "a": 1.0, "b": 2.0} for t in (0.1, 0.2, 0.4)], tenths, LIMITS)


def test_a_step_model_prefix_has_only_channels(untrained):
    steps = untrained(STEPS)
    frame = check_prefix([{"a": 1.0, "b": 2.0}, {"a": 1.5, "b": 2.5}], steps, LIMITS)
    assert list(frame.columns) == ["a", "b"]
    assert "has unknown ['date']" in refused(steps, prefix=records(HOURS[:2]))


def test_parquet_cannot_be_streamed(hourly):
    assert "cannot be streamed" in refused(hourly, stream=True, format="parquet")
    assert plan_request(GenerateRequest(format="csv"), hourly, LIMITS, stream=True).format == "csv"


def test_limits_come_from_the_metadata_with_defaults():
    assert RequestLimits.from_dict(None) == RequestLimits()
    assert RequestLimits.from_dict({"max_length": 2048}).max_length == 2048
    assert RequestLimits.from_dict({"max_cost": 5}).max_cost == 5 and RequestLimits().max_cost == 10_000_000
    with pytest.raises(ValueError, match="unknown request limit"):
        RequestLimits.from_dict({"max_lenght": 5})
    with pytest.raises(ValueError, match="at least 1"):
        RequestLimits.from_dict({"max_values": 0})


@pytest.mark.parametrize(("value", "channel"), [(1e30, "a"), (-1e30, "b"), (1200.5, "a"), (-900.5, "b")])
def test_a_prefix_far_outside_the_training_range_is_refused_by_the_library(hourly, value, channel):
    """The scaler's range is 100..200: 10 ranges beyond it is [-900, 1200]. 1e30 once gave a 200 of nulls."""
    history = records(HOURS)
    history[2][channel] = value
    with pytest.raises(DataError) as error:
        plan(hourly, prefix=history)
    assert str(error.value) == (
        f"prefix record 2: channel {channel!r} is {value:.6g}, more than 10 training ranges outside the model's "
        "training range [100, 200]; values must lie within [-900, 1200]: check the units and the channel order"
    )
    with pytest.raises(DataError, match=f"prefix record 2: channel {channel!r}"):  # the library itself refuses it
        hourly.scale_values(pd.DataFrame(history).assign(date=lambda f: pd.to_datetime(f["date"])), "prefix")


def test_a_prefix_at_the_edge_of_the_allowed_range_is_sampled_to_finite_values(served_model):
    low, high = served_model.scaler.minimum, served_model.scaler.maximum
    edge = np.stack([high + 9.99 * (high - low), low - 9.99 * (high - low)] * 8)
    values = served_model.sample_array(4, 32, seed=0, prefix=edge, progress=False)
    assert np.isfinite(values).all()
    with pytest.raises(DataError, match="more than 10 training ranges outside"):
        served_model.sample_array(1, 32, seed=0, prefix=high + 10.01 * (high - low) + 0 * edge)


@pytest.mark.parametrize(
    "sampling",
    [
        {"sampler": "ddpm"},  # a model saved with DDPM: every diffusion step
        {"sampler": "ddim", "ddim_eta": 0.0, "sampling_steps": 10},  # deterministic DDIM, as the presets had it
        {k: getattr(StageDiffConfig(), k) for k in ("sampler", "ddim_eta", "sampling_steps")},  # the new default
    ],
    ids=["ddpm", "ddim", "default"],
)
def test_the_service_samples_a_model_as_the_library_does_by_default(untrained, tiny_settings, sampling):
    """A request that names no sampler and no steps draws, for its seed, the bytes the library's sample_array draws
    with its own defaults: one rule (stagediff.diffusion.sampling_choice) decides both."""
    model = untrained(STEPS)
    model.config = StageDiffConfig(**{**tiny_settings, **sampling, "diffusion_steps": 40}, channels=2)
    model.denoiser = StageDiffDenoiser(model.config, 2).eval()
    planned = plan(model, seed=7, n_samples=2, length=32)
    expected_steps = 40 if sampling["sampler"] == "ddpm" else sampling["sampling_steps"]
    assert (planned.sampler, planned.steps) == (sampling["sampler"], expected_steps)
    (served,) = model.sample_many([planned.run])
    np.testing.assert_array_equal(served, model.sample_array(2, length=32, seed=7, progress=False))


# -- known values (/generate, /generate_stream) and records to impute (/impute) ----------------------------------
def hours(count: int, first: str = "2022-01-21T00:00:00") -> list[str]:
    return pd.date_range(first, periods=count, freq="h").strftime("%Y-%m-%dT%H:%M:%S").tolist()


def known_records(count: int = 16, times: bool = True, **channels) -> list[dict]:
    channels = channels or {"b": [120.0 + 0.5 * i for i in range(count)]}
    return [
        {**({"date": t} if times else {}), **{c: values[i] for c, values in channels.items()}}
        for i, t in enumerate(hours(count))
    ]


def refused_by_any(model: StageDiff, **fields) -> str:
    """The message of a refusal by the service's checks or by the library's (the service answers 400 to both)."""
    with pytest.raises((RequestError, DataError)) as error:
        plan_request(GenerateRequest(**fields), model, LIMITS)
    return str(error.value)


def test_known_records_become_the_run_s_known_values_and_set_length_and_start(hourly):
    known = known_records(16)
    planned = plan(hourly, known=known, seed=1)
    assert planned.length == 16 and planned.start == pd.Timestamp("2022-01-21T00:00:00")
    given = planned.run.given  # (length, channels) in data units, NaN for the channels to generate
    assert np.isnan(given[:, 0]).all() and given[:, 1].tolist() == [r["b"] for r in known]
    later = [{**r, "date": t} for r, t in zip(known, hours(16, "2030-06-01T05:00:00"))]
    assert plan(hourly, known=later).start == pd.Timestamp("2030-06-01T05:00:00")
    assert plan(hourly, known=later, start="2030-06-01T05:00:00", length=16).length == 16
    without_times = plan(hourly, known=known_records(24, times=False), start="2030-01-01T00:00:00")
    assert without_times.length == 24 and without_times.start == pd.Timestamp("2030-01-01")
    history = records(hours(4, "2022-01-20T20:00:00"))  # ends at 23:00, the hour before the known records
    assert plan(hourly, known=known, prefix=history).run.given is not None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"known": []}, "known is empty; send one record per step of the samples, or leave known out"),
        (
            {"known": known_records(1025, times=False, b=[1.0] * 1025)},
            "known has 1025 records; at most 1024 are accepted (max_length: one record per step)",
        ),
        (
            {"known": known_records(12)},
            "length must be a multiple of the stage length 8 between 8 and 1024, got 12 (the number of known records",
        ),
        ({"known": known_records(16), "length": 32}, "known has 16 records; it needs one per step of the samples, 32"),
        (
            {"known": [{**r, "c": 1.0} for r in known_records(8)]},
            "known record 0 has unknown ['c']: a known record has some of the channels ['a', 'b'] and, optionally, "
            "the time column 'date'",
        ),
        (
            {"known": known_records(7) + [{"b": 1.0}]},
            "known record 7 has the columns ['b'], record 0 has ['date', 'b']: every record needs the same columns",
        ),
        (
            {"known": known_records(8, b=[150.0] * 3 + [None] + [150.0] * 4)},
            "known record 3: channel 'b' is null; a known channel needs a value at every step",
        ),
        (
            {"known": known_records(8, b=[150.0] * 5 + [math.nan] * 2 + [150.0])},
            "known: channels contain NaN or infinite values ('b': 2 missing/infinite, first at row 5); a known channel "
            "needs a finite value at every step (to fill gaps, use /impute)",
        ),
        ({"known": known_records(8, b=[150.0] * 7 + [math.inf])}, "('b': 1 missing/infinite, first at row 7)"),
        ({"known": known_records(8, b=[150.0] * 7 + ["1"])}, "known record 7: channel 'b' must be a number, got '1'"),
        ({"known": known_records(8, b=[True] * 8)}, "known record 0: channel 'b' must be a number, got True"),
        ({"known": known_records(8, b=[1e30] * 8)}, "known record 0: channel 'b' is 1e+30, more than 10 training"),
        ({"known": known_records(8, a=[150.0] * 8, b=[150.0] * 8)}, "known gives every channel ['a', 'b']"),
        ({"known": [{"date": t} for t in hours(8)]}, "known has none of the model's channel columns"),
        (
            {"known": [{**r, "date": t} for r, t in zip(known_records(8), hours(8)[::-1])]},
            "known: time column 'date' is not strictly increasing",
        ),
        (
            {"known": [{**r, "date": "soon"} for r in known_records(8)]},
            "known: time column 'date' has 8 value(s) that are not ISO 8601 timestamps",
        ),
        (
            {"known": known_records(8), "start": "2030-01-01T00:00:00"},
            "known: the time column 'date' must hold the samples' timestamps, consecutive steps of 1 hour "
            "from 2030-01-01 00:00:00 (the start); it holds 2022-01-21 00:00:00 .. 2022-01-21 07:00:00",
        ),
        (
            {"known": known_records(8), "prefix": records(HOURS)},
            "from 2022-01-21 04:00:00 (right after the prefix); it holds 2022-01-21 00:00:00 .. 2022-01-21 07:00:00",
        ),
    ],
)
def test_bad_known_values_are_named(hourly, fields, expected):
    assert expected in refused_by_any(hourly, **fields)


def gapped_records(count: int = 24) -> list[dict]:
    rows = records(hours(count), a=[150.0 + i for i in range(count)], b=[140.0 - i for i in range(count)])
    for row in range(5, min(9, count - 1)):
        rows[row]["a"] = None
    rows[-1]["b"] = None
    return rows


def impute(model: StageDiff, limits: RequestLimits = LIMITS, **fields):
    return plan_impute(ImputeRequest(**fields), model, limits)


def refused_impute(model: StageDiff, **fields) -> str:
    with pytest.raises((RequestError, DataError)) as error:
        impute(model, **fields)
    return str(error.value)


def test_records_to_impute_become_the_run_s_observed_values(hourly):
    rows = gapped_records(24)
    planned = impute(hourly, records=rows, n_samples=3, seed=4)
    assert (planned.n_samples, planned.length, planned.seed, planned.steps, planned.seed_chosen) == (3, 24, 4, 5, False)
    assert planned.start == pd.Timestamp("2022-01-21T00:00:00") and planned.prefix is None and planned.format == "json"
    expected = np.array([[np.nan if r[c] is None else r[c] for c in ("a", "b")] for r in rows])
    np.testing.assert_array_equal(planned.run.given, expected)
    assert impute(hourly, records=rows[:13]).length == 13  # any number of records, not a multiple of the stage
    assert impute(hourly, records=[{k: v for k, v in r.items() if k != "date"} for r in rows]).start is None
    assert impute(hourly, records=rows).seed_chosen


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"records": []}, "records is empty; send one record per step of the series to fill"),
        (
            {"records": gapped_records(1025)},
            "records has 1025 records; at most 1024 are accepted (max_length: one record per step)",
        ),
        ({"records": gapped_records(), "n_samples": 9}, "n_samples must be an integer between 1 and 8, got 9"),
        ({"records": gapped_records(), "steps": 21}, "steps must be an integer between 1 and 20, got 21"),
        (
            {"records": gapped_records(512), "n_samples": 8},
            "n_samples * records * channels = 8 * 512 * 2 = 8,192 exceeds the limit of 4,096 values per request "
            "(max_values); with n_samples=8 and steps=5 at most 256 records fit (or ask for fewer samples)",
        ),
        (
            {"records": [{k: v for k, v in r.items() if k != "b"} for r in gapped_records()]},
            "record 0 lacks ['b']: every record needs every channel ['a', 'b'] (null where a value is missing) and, "
            "optionally, the time column 'date'",
        ),
        ({"records": [{**r, "c": None} for r in gapped_records()]}, "record 0 has unknown ['c']"),
        (
            {"records": gapped_records()[:3] + [{"a": 1.0, "b": 2.0}]},
            "record 3 has the columns ['a', 'b'], record 0 has ['date', 'a', 'b']: every record needs the same",
        ),
        ({"records": [{**r, "a": "1"} for r in gapped_records()]}, "record 0: channel 'a' must be a number or null"),
        ({"records": [{**r, "a": None} for r in gapped_records()][:1] + gapped_records()[1:]}, "misses ['a'] at its"),
        (
            {"records": [{**r, "a": None, "b": None} for r in gapped_records()]},
            "every value of the frame to impute is missing",
        ),
        ({"records": gapped_records()[:2] + [{**gapped_records()[2], "b": math.inf}]}, "channel 'b' is infinite"),
        ({"records": [{**r, "b": -1e9} for r in gapped_records()]}, "more than 10 training ranges outside"),
        (
            {"records": [{**r, "date": t} for r, t in zip(gapped_records(3), [HOURS[0], HOURS[2], HOURS[3]])]},
            "records: time column 'date' must be 1 hour apart (the model's frequency)",
        ),
        ({"records": [{**r, "date": None} for r in gapped_records(3)]}, "time column 'date' has 3 missing value(s)"),
        (
            {"records": [{**r, "date": t} for r, t in zip(gapped_records(16), hours(16, "9999-12-31T12:00:00"))]},
            "records: time column 'date' has 4 value(s) that are not ISO 8601 timestamps (row 12: '10000-01-01T00:00",
        ),
    ],
)
def test_bad_records_to_impute_are_named(hourly, fields, expected):
    assert expected in refused_impute(hourly, **fields)


def test_the_body_of_impute_names_its_required_field():
    with pytest.raises(BodyError) as error:
        check_body("application/json", b"{}", ImputeRequest)
    assert "records: Field required" in str(error.value) and error.value.detail[0]["loc"] == ("records",)
    with pytest.raises(BodyError, match=r"the request body is empty; send a JSON object such as \{\"records\""):
        check_body("application/json", b"", ImputeRequest)
    with pytest.raises(BodyError, match="records: Input should be a valid array, got 5"):
        check_body("application/json", b'{"records": 5}', ImputeRequest)
    check_body(None, b'{"records": [{"date": "2022-01-21T00:00:00", "a": 1.0, "b": null}]}', ImputeRequest)
