"""Conditioning (issue 32): calendar features and the choice of cycles, samples that follow their timestamps, and
samples that continue the data by default."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stagediff import StageDiff, StageDiffConfig
from stagediff.calendar import calendar_features, choose_cycles, series_times
from stagediff.data import validate_frame
from stagediff.data.prepared import describe_series
from stagediff.errors import ConfigError, DataError


def phases(times: pd.DatetimeIndex, cycle: str) -> np.ndarray:
    """The phase in [0, 1) that the sine/cosine pair of ``cycle`` encodes."""
    sine, cosine = calendar_features(times, [cycle]).T
    return np.mod(np.arctan2(sine, cosine) / (2 * np.pi), 1.0)


def test_the_hour_of_day_is_the_local_wall_clock_across_daylight_saving_changes():
    for first in ("2021-03-27 22:00", "2021-10-30 22:00"):  # Berlin: clocks forward on 28 March, back on 31 October
        times = pd.date_range(first, periods=10, freq="h", tz="Europe/Berlin")
        assert np.allclose(phases(times, "day") * 24, np.asarray(times.hour), atol=1e-4)
    spring = pd.date_range("2021-03-28 00:00", periods=4, freq="h", tz="Europe/Berlin")
    assert np.asarray(spring.hour).tolist() == [0, 1, 3, 4]  # 2 o'clock does not exist that night
    assert np.allclose(phases(spring, "day") * 24, [0, 1, 3, 4], atol=1e-4)
    # a saved series in a named zone comes back in that zone, daylight-saving rules and all
    description = {
        "frequency": {"kind": "timedelta", "value": "PT1H"},
        "first_time": "2021-03-27T22:00:00+01:00",
        "timezone": "Europe/Berlin",
    }
    assert series_times(description, 0, 6).hour.tolist() == [22, 23, 0, 1, 3, 4]


def test_the_day_of_year_counts_366_days_in_a_leap_year():
    times = pd.DatetimeIndex(["2020-12-31 12:00", "2021-12-31 12:00", "2020-02-29 00:00", "2021-03-01 00:00"])
    assert np.allclose(phases(times, "year"), [365.5 / 366, 364.5 / 365, 59 / 366, 59 / 365], atol=1e-6)
    assert np.allclose(phases(pd.DatetimeIndex(["2021-01-04 06:00"]), "week"), [0.25 / 7], atol=1e-6)  # a Monday


@pytest.mark.parametrize(
    ("step", "rows", "expected"),
    [
        ("1h", 24 * 365 * 3 + 24, ["day", "week", "year"]),
        ("1h", 24 * 700, ["day", "week"]),  # fewer than 3 years of data: no yearly cycle
        ("1h", 24 * 20, ["day"]),  # nor a weekly one in under 3 weeks
        ("15min", 4 * 24 * 3, ["day"]),
        ("1D", 3 * 366, ["week", "year"]),  # a daily step cannot show the hour
        ("7D", 200, ["year"]),
        ("1D", 400, ["week"]),
    ],
)
def test_the_cycles_are_those_the_step_samples_and_the_data_covers(step, rows, expected):
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=rows, freq=step), "x": np.arange(rows)})
    description = describe_series(validate_frame(frame, "date"), rows)
    assert choose_cycles(description)["value"] == expected


def test_no_datetime_time_column_means_no_calendar():
    numeric = pd.DataFrame({"t": np.arange(100.0), "x": np.arange(100.0)})
    assert choose_cycles(describe_series(validate_frame(numeric, "t"), 100))["value"] == []
    assert choose_cycles(describe_series(validate_frame(numeric[["x"]]), 100))["value"] == []
    with pytest.raises(ConfigError, match="calendar must list each of"):
        StageDiffConfig(calendar=["hour"])


@pytest.fixture(scope="module")
def calendar_model(training_frame):
    """A tiny model of hourly data with the day and week cycles (asked for: 16 days of data would choose the day's)."""
    from tests.conftest import TINY

    config = StageDiffConfig(**TINY, max_steps=30, validation_fraction=0.2, calendar=["day", "week"])
    return StageDiff(config).fit(training_frame, "date", progress=False, device="cpu", check=False)


def test_a_model_of_hourly_data_conditions_on_its_calendar_and_start_sets_the_phase(calendar_model):
    model = calendar_model
    assert model.config.calendar == ("day", "week")
    first = pd.Timestamp("2024-05-06 00:00")  # a Monday
    base = model.sample_array(2, 64, seed=3, start=first)
    # the calendar repeats after a week, so the samples do; half a day later they differ
    assert np.array_equal(base, model.sample_array(2, 64, seed=3, start=first + pd.Timedelta(days=7)))
    assert not np.array_equal(base, model.sample_array(2, 64, seed=3, start=first + pd.Timedelta(hours=12)))
    assert model.config.to_dict()["calendar"] == ["day", "week"]  # as config.json saves it


def test_one_start_per_sample(calendar_model, tmp_path):
    model = calendar_model
    first = pd.Timestamp("2024-05-06 00:00")
    same = model.sample_array(3, 32, seed=1, start=[first, first, first])
    assert np.array_equal(same, model.sample_array(3, 32, seed=1, start=first))
    pair = model.sample_array(2, 32, seed=1, start=first)
    mixed = model.sample_array(2, 32, seed=1, start=[first, first + pd.Timedelta(hours=6)])
    assert np.array_equal(mixed[0], pair[0]) and not np.array_equal(mixed[1], pair[1])
    with pytest.raises(DataError, match="start gives 2 timestamps for 3 samples"):
        model.sample_array(3, 32, seed=1, start=[first, first])
    with pytest.raises(DataError, match="one start for all samples"):
        model.sample(2, 32, seed=1, start=[first, first])
    model.save(tmp_path / "model")
    loaded = StageDiff.load(tmp_path / "model")
    assert np.array_equal(loaded.sample_array(2, 32, seed=1, start=[first, first]), pair)


def test_a_time_index_is_the_time_column(training_frame):
    series = validate_frame(training_frame.set_index("date"))
    assert series.time_column == "date" and series.timestamps.equals(pd.DatetimeIndex(training_frame["date"]))
    unnamed = training_frame.set_index("date").rename_axis(None)
    assert validate_frame(unnamed).time_column == "time"
    with pytest.raises(DataError, match="index holds times"):
        validate_frame(training_frame.set_index("date"), "a")


def test_a_time_zone_is_kept_in_the_samples_timestamps(training_frame):
    from tests.conftest import TINY

    times = pd.date_range("2021-03-20", periods=len(training_frame), freq="h", tz="Europe/Berlin")
    frame = training_frame.assign(date=times)
    model = StageDiff(StageDiffConfig(**TINY, max_steps=2, validation_fraction=0.2)).fit(
        frame, "date", progress=False, check=False
    )
    assert model.metadata["timezone"] == "Europe/Berlin"
    sampled = model.sample(1, 8, seed=0, start="2021-10-31T00:00:00")  # the night the clocks go back
    times = pd.DatetimeIndex(sampled["date"])
    assert str(times.tz) == "Europe/Berlin"
    assert times.hour.tolist() == [0, 1, 2, 2, 3, 4, 5, 6]


def test_a_calendar_needs_a_datetime_time_column(training_frame):
    from tests.conftest import TINY

    config = StageDiffConfig(**TINY, max_steps=2, calendar=["day"])
    with pytest.raises(DataError, match="needs a datetime time column, and this data has none"):
        StageDiff(config).fit(training_frame.drop(columns="date"), progress=False)
    numbered = training_frame.assign(date=np.arange(len(training_frame)))
    with pytest.raises(DataError, match="holds numbers"):
        StageDiff(config).fit(numbered, "date", progress=False)


def test_requests_with_their_own_starts_sampled_together_give_each_its_own_bytes(calendar_model):
    from stagediff import SampleRequest

    model = calendar_model
    first = pd.Timestamp("2024-05-06 00:00")
    requests = [
        SampleRequest(1, 32, 5, start=first),
        SampleRequest(2, 32, 6, start=first + pd.Timedelta(hours=5)),
        SampleRequest(2, 32, 7, start=[first, first + pd.Timedelta(hours=9)]),
    ]
    together = model.sample_many(requests)
    for request, values in zip(requests, together):
        assert np.array_equal(values, model.sample_array(request.n, 32, request.seed, start=request.start))


def test_samples_that_continue_after_the_data_continue_its_last_window(calendar_model, training_frame):
    model = calendar_model
    tail = np.asarray(model.metadata["tail"])
    assert tail.shape == (model.config.window, 2)
    assert np.allclose(tail, training_frame[["a", "b"]].to_numpy()[-model.config.window :])
    after = training_frame["date"].iloc[-1] + pd.Timedelta(hours=1)
    continued = model.sample_array(3, 32, seed=2)
    # the default start is right after the data, and a sample from there is conditioned on the data's last window
    assert (
        model.continues(None)
        and model.continues(after.isoformat())
        and not model.continues(after + pd.Timedelta(1, "h"))
    )
    assert np.array_equal(continued, model.sample_array(3, 32, seed=2, prefix=tail))
    assert np.array_equal(continued, model.sample_array(3, 32, seed=2, start=after))
    assert model.sample(1, 4, seed=2)["date"].iloc[0] == after
    # a start given per sample, or anywhere else, samples without the data's history
    free = model.sample_array(3, 32, seed=2, start=[after] * 3)
    assert not np.array_equal(continued, free)
    assert np.array_equal(free, model.sample_array(3, 32, seed=2, start=after + pd.Timedelta(days=7)))


def test_a_model_may_keep_no_data_values(training_frame):
    from tests.conftest import TINY

    model = StageDiff(StageDiffConfig(**TINY, max_steps=2, continuation=False)).fit(
        training_frame, "date", progress=False, check=False
    )
    assert model.metadata["tail"] is None and not model.continues(None)
    after = training_frame["date"].iloc[-1] + pd.Timedelta(hours=1)
    assert np.array_equal(model.sample_array(2, 32, seed=0), model.sample_array(2, 32, seed=0, start=[after] * 2))


def test_without_a_time_column_the_step_after_the_data_continues_it(training_frame):
    from tests.conftest import TINY

    values = training_frame.drop(columns="date")
    model = StageDiff(StageDiffConfig(**TINY, max_steps=2)).fit(values, progress=False, check=False)
    assert not model.continues(None)  # the steps are numbered from 0: a sample does not continue the data by default
    assert model.continues(len(values)) and not model.continues(len(values) + 1)
    tail = np.asarray(model.metadata["tail"])
    assert np.array_equal(
        model.sample_array(2, 32, seed=0, start=len(values)), model.sample_array(2, 32, seed=0, prefix=tail)
    )


def test_a_continuation_is_guided_toward_its_history_and_nothing_else_is(calendar_model, training_frame):
    import dataclasses

    import torch

    from stagediff.sampling import pull_toward

    model = calendar_model
    tail = np.asarray(model.metadata["tail"])
    assert model.config.guidance == 8.0  # the default
    after = pd.Timestamp(model.metadata["last_time"]) + pd.Timedelta(hours=1)
    guided = model.sample_array(3, 32, seed=2, prefix=tail)
    free = model.sample_array(3, 32, seed=2, start=[after] * 3)
    # the guidance never takes a sample beyond the training range (this model's margin is 0)
    wide = model.sample_array(8, 64, seed=11, prefix=tail)
    low, high = training_frame[["a", "b"]].min().to_numpy(), training_frame[["a", "b"]].max().to_numpy()
    assert ((wide >= low - 1e-9) & (wide <= high + 1e-9)).all()
    saved = model.config
    try:
        model.config = dataclasses.replace(saved, guidance=0.0)
        assert not np.array_equal(guided, model.sample_array(3, 32, seed=2, prefix=tail))
        # without a history nothing is guided: the same bytes
        assert np.array_equal(free, model.sample_array(3, 32, seed=2, start=[after] * 3))
    finally:
        model.config = saved
    # the pull points downhill: a small step against it brings the estimate of the history nearer the history
    denoiser = model.denoiser
    torch.manual_seed(0)
    x = torch.randn(2, 64, 2)
    steps = torch.full((2,), 60)
    calendar = torch.zeros(2, 64, denoiser.calendar_inputs)  # day and week: four features
    history = torch.rand(2, 32, 2) * 2 - 1

    def distance(x):
        with torch.no_grad():
            return (denoiser(x, steps, calendar).float()[:, :32] - history).pow(2).sum(dim=(1, 2)).sqrt()

    _, pull = pull_toward(denoiser, x, steps, calendar, None, history)
    assert pull.abs().sum() > 0
    assert (distance(x - 0.05 * pull) < distance(x)).all()
