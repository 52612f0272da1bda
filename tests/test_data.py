"""Tests of stagediff.data: built-ins, loading, validation, split, windows, stages and scaler."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stagediff.data import (
    BUILTIN_DATASETS,
    MinMaxScaler,
    Series,
    load_frame,
    load_series,
    resolve_data_dir,
    segment_stages,
    sliding_windows,
    split_by_time,
    synthetic_frame,
    validate_frame,
)
from stagediff.errors import DataError

# The benchmark files are expected here; tests that read them fail (never skip) when they are absent.
SHARED_DATASETS = Path(
    os.environ.get("STAGEDIFF_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
)


def small_frame(length: int = 6) -> pd.DataFrame:
    """Hourly frame with a time column and two numeric channels."""
    return pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=length, freq="h"),
            "a": np.arange(length, dtype=float),
            "b": np.linspace(-1.0, 1.0, length) ** 2,
        }
    )


def autocorrelation(values: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(values[:-lag], values[lag:])[0, 1])


# ----------------------------------------------------------------------------------------- synthetic


def test_synthetic_frame_is_deterministic_per_seed_and_differs_across_seeds():
    pd.testing.assert_frame_equal(synthetic_frame(500, seed=3), synthetic_frame(500, seed=3))
    assert not synthetic_frame(500, seed=3).equals(synthetic_frame(500, seed=4))


def test_synthetic_frame_structure_and_daily_seasonality():
    frame = synthetic_frame(24 * 7 * 6, seed=0)
    assert list(frame.columns) == ["date", "temperature", "load", "wind", "solar", "price"]
    assert frame["date"].iloc[0] == pd.Timestamp("2020-01-01")
    assert (frame["date"].diff().iloc[1:] == pd.Timedelta(hours=1)).all()
    channels = frame.drop(columns="date").to_numpy()
    assert channels.dtype == np.float64 and np.isfinite(channels).all()
    assert (channels.std(axis=0) > 0).all()
    load = frame["load"].to_numpy()
    assert autocorrelation(load, 24) > autocorrelation(load, 12) + 0.5


def test_synthetic_frame_has_drift_and_coupling():
    frame = synthetic_frame(8760, seed=1)
    load = frame["load"].to_numpy()
    half = len(load) // 2
    assert load[half:].std() > load[:half].std()  # amplitude grows along the series
    price = frame["price"].to_numpy()
    assert np.corrcoef(price[1:], load[:-1])[0, 1] > 0.5  # price follows lagged load


def test_synthetic_builtin_loads_without_files(tmp_path):
    series = load_series("Synthetic", data_dir=tmp_path)
    assert series.values.shape == (8760, 5)
    assert series.time_column == "date"
    assert series.frequency == pd.Timedelta(hours=1)


# ------------------------------------------------------------------------------------------ builtins


@pytest.mark.parametrize(
    ("name", "shape", "time_column"),
    [("etth1", (17420, 7), "date"), ("stock", (3685, 6), None), ("exchange", (7588, 8), "date")],
)
def test_benchmark_builtins_load_from_shared_directory(name, shape, time_column):
    series = load_series(name.upper(), data_dir=SHARED_DATASETS)  # must fail, not skip, when files are absent
    assert series.values.shape == shape
    assert series.time_column == time_column
    assert np.isfinite(series.values).all()
    assert str(SHARED_DATASETS / BUILTIN_DATASETS[name].filename) in series.source
    if time_column is None:
        assert series.timestamps is None and series.frequency is None
    else:
        assert isinstance(series.timestamps, pd.DatetimeIndex) and series.timestamps.is_monotonic_increasing


def test_builtin_facts():
    etth1 = load_series("etth1", data_dir=SHARED_DATASETS)
    assert etth1.channels == ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
    assert etth1.frequency == pd.Timedelta(hours=1)
    assert etth1.timestamps[0] == pd.Timestamp("2016-07-01 00:00:00")
    stock = load_series("stock", data_dir=SHARED_DATASETS)
    assert stock.values[0, 0] == pytest.approx(49.676899)  # file order, oldest first
    assert stock.values[-1, 0] == pytest.approx(1196.0, abs=0.5)
    exchange = load_series("exchange", data_dir=SHARED_DATASETS)
    assert exchange.frequency == pd.Timedelta(days=1)
    assert exchange.timestamps[-1] == pd.Timestamp("2010-10-10")


def test_data_dir_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("STAGEDIFF_DATA_DIR", str(SHARED_DATASETS))
    assert resolve_data_dir() == SHARED_DATASETS
    assert resolve_data_dir(tmp_path) == tmp_path  # explicit argument wins
    assert load_series("stock").values.shape == (3685, 6)
    monkeypatch.delenv("STAGEDIFF_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir() == tmp_path / "data"


def test_missing_builtin_file_names_path_and_url(tmp_path):
    with pytest.raises(DataError) as raised:
        load_series("etth1", data_dir=tmp_path)
    message = str(raised.value)
    assert str(tmp_path / "ETTh1.csv") in message
    assert "https://github.com/zhouhaoyi/ETDataset" in message
    assert "STAGEDIFF_DATA_DIR" in message


def test_modified_builtin_file_fails_checksum(tmp_path):
    with (SHARED_DATASETS / "ETTh1.csv").open() as handle:
        head = [next(handle) for _ in range(5)]
    (tmp_path / "ETTh1.csv").write_text("".join(head).replace("5.827", "5.828"))
    with pytest.raises(DataError, match="sha256"):
        load_series("etth1", data_dir=tmp_path)


def test_unmodified_copy_passes_checksum(tmp_path):
    shutil.copy(SHARED_DATASETS / "stock_data.csv", tmp_path / "stock_data.csv")
    assert load_series("stock", data_dir=tmp_path).length == 3685


def test_unknown_builtin_lists_names():
    with pytest.raises(DataError) as raised:
        load_series("ettm9")
    for name in BUILTIN_DATASETS:
        assert name in str(raised.value)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"not a table")
    with pytest.raises(DataError, match="unsupported file type"):
        load_series(path)


def test_missing_file_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_series(tmp_path / "absent.csv")


# ----------------------------------------------------------------------------------------- file types


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_file_round_trip(tmp_path, suffix):
    frame = small_frame(10)
    path = tmp_path / f"table{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    series = load_series(path, time_column="date")
    expected = validate_frame(frame, "date")
    np.testing.assert_array_equal(series.values, frame[["a", "b"]].to_numpy())
    assert series.channels == ("a", "b")
    assert series.content_hash == expected.content_hash
    assert series.timestamps.equals(expected.timestamps)
    assert series.frequency == pd.Timedelta(hours=1)
    assert series.source == str(path)
    raw, time_column, description = load_frame(str(path), "date")
    assert time_column == "date" and description == str(path) and raw.shape == (10, 3)


# -------------------------------------------------------------------------------------------- Series


def test_validate_frame_series_fields():
    frame = small_frame(6)
    series = validate_frame(frame, "date")
    assert isinstance(series, Series)
    assert series.values.dtype == np.float64 and series.values.shape == (6, 2)
    assert (series.length, series.n_channels) == (6, 2)
    assert series.source == "DataFrame"
    assert not series.values.flags.writeable
    assert series == validate_frame(frame.copy(), "date")
    changed = frame.assign(a=frame["a"] + 1)
    assert validate_frame(changed, "date").content_hash != series.content_hash
    renamed = frame.rename(columns={"a": "x"})
    assert validate_frame(renamed, "date").content_hash != series.content_hash


def test_numeric_time_column_and_no_time_column():
    frame = pd.DataFrame({"step": [0, 2, 4, 6], "x": [1.0, 2.0, 3.0, 5.0]})
    series = validate_frame(frame, "step")
    assert list(series.timestamps) == [0, 2, 4, 6]
    assert series.frequency == 2
    without_time = validate_frame(frame[["x"]])
    assert without_time.timestamps is None and without_time.frequency is None


# -------------------------------------------------------------------------------------------- errors


def test_not_a_dataframe():
    with pytest.raises(DataError, match="ndarray"):
        validate_frame(np.zeros((3, 2)))


def test_unknown_time_column_lists_columns():
    with pytest.raises(DataError, match="'time'.*date"):
        validate_frame(small_frame(), "time")


def test_non_numeric_column_is_named():
    frame = small_frame().assign(city=["x"] * 6)
    with pytest.raises(DataError, match="non-numeric.*city"):
        validate_frame(frame, "date")


def test_date_column_without_time_column_suggests_passing_it():
    with pytest.raises(DataError, match="date.*time_column"):
        validate_frame(small_frame())


def test_a_text_column_of_timestamps_is_named_as_the_time_column_to_pass():
    frame = small_frame().assign(date=lambda f: f["date"].astype(str), city=["x"] * 6)
    with pytest.raises(
        DataError, match="'date' holds timestamps \\(time_column='date'; on the command line --time-column date\\)"
    ):
        validate_frame(frame)
    with pytest.raises(DataError, match="time_column=... \\(on the command line --time-column NAME\\)") as error:
        validate_frame(frame.drop(columns="date"))
    assert "holds timestamps" not in str(error.value)  # 'city' does not


def test_no_channels():
    with pytest.raises(DataError, match="no channel"):
        validate_frame(small_frame()[["date"]], "date")


def test_unparseable_timestamps():
    frame = small_frame(3).assign(date=["2021-01-01", "not a date", "2021-01-03"])
    with pytest.raises(DataError, match="not a date"):
        validate_frame(frame, "date")


def test_missing_timestamp():
    frame = small_frame(3)
    frame.loc[1, "date"] = pd.NaT
    with pytest.raises(DataError, match="missing value"):
        validate_frame(frame, "date")


def test_nan_is_an_error_naming_column_and_option():
    frame = small_frame()
    frame.loc[2, "b"] = np.nan
    with pytest.raises(DataError) as raised:
        validate_frame(frame, "date")
    message = str(raised.value)
    assert "'b'" in message and "row 2" in message and 'missing="interpolate"' in message
    assert "'a'" not in message


def test_infinity_is_an_error():
    frame = small_frame()
    frame.loc[4, "a"] = -np.inf
    with pytest.raises(DataError, match="'a'.*row 4"):
        validate_frame(frame, "date")


def test_interpolate_fills_linearly_in_time_and_at_edges():
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=5, freq="h"),
            "a": [np.nan, 1.0, np.inf, np.nan, 4.0],
            "b": [0.0, np.nan, 6.0, np.nan, np.nan],
        }
    )
    series = validate_frame(frame, "date", missing="interpolate")
    np.testing.assert_allclose(series.values[:, 0], [1.0, 1.0, 2.0, 3.0, 4.0])  # edge: nearest; inside: in time
    np.testing.assert_allclose(series.values[:, 1], [0.0, 3.0, 6.0, 6.0, 6.0])
    assert np.isnan(frame.loc[0, "a"])  # the input is untouched


def test_interpolating_a_long_gap_warns_naming_the_channel_and_rows():
    frame = small_frame(length=200)
    frame.loc[50:149, "b"] = np.nan
    with pytest.warns(UserWarning, match=r"channel 'b' misses 100 values in a row \(rows 50-149\)"):
        series = validate_frame(frame, "date", missing="interpolate")
    assert np.isfinite(series.values).all()
    frame.loc[50:149, "b"] = frame.loc[50:149, "a"]
    frame.loc[60:70, "b"] = np.nan  # 11 missing values: below LONG_GAP, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_frame(frame, "date", missing="interpolate")


def test_irregular_steps_are_refused_naming_the_rows_and_the_fix():
    frame = small_frame(length=50).drop(index=[10, 11, 30])
    with pytest.raises(DataError, match=r"not regular: most steps are 1 hour, but 2 differ \(row 10") as error:
        validate_frame(frame, "date")
    assert "resample('h')" in str(error.value) and "time_column=None" in str(error.value)
    assert validate_frame(frame.drop(columns="date")).length == 47  # rows as consecutive steps
    numeric = pd.DataFrame({"t": np.arange(20) * 0.1, "a": np.arange(20.0)})
    assert validate_frame(numeric, "t").length == 20  # float steps equal up to rounding
    with pytest.raises(DataError, match="not regular"):
        validate_frame(numeric.drop(index=[5]), "t")


def test_a_header_only_table_is_blamed_on_having_no_rows(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("date,a,b\n")
    with pytest.raises(DataError, match="the data has no rows"):
        load_series(path, "date")


def test_columns_choose_the_channels_and_their_order():
    frame = small_frame(length=40).assign(note="text", c=np.cos(np.arange(40.0)))
    series = validate_frame(frame, "date", columns=["c", "a"])
    assert series.channels == ("c", "a")
    np.testing.assert_array_equal(series.values[:, 1], frame["a"])
    for columns, words in (
        (["a", "zz"], r"column\(s\) \[zz\] named in columns are not in the data"),
        ("a", "must be a list of column names"),
        (["a", "a"], "more than once"),
        (["date", "a"], "names the time column"),
        (["note"], "non-numeric"),
    ):
        with pytest.raises(DataError, match=words):
            validate_frame(frame, "date", columns=columns)


def test_interpolate_without_time_column_uses_row_order():
    frame = pd.DataFrame({"a": [0.0, np.nan, np.nan, 3.0]})
    np.testing.assert_allclose(validate_frame(frame, missing="interpolate").values[:, 0], [0.0, 1.0, 2.0, 3.0])


def test_interpolate_rejects_entirely_missing_column():
    frame = small_frame().assign(b=np.nan)
    with pytest.raises(DataError, match="b"):
        validate_frame(frame, "date", missing="interpolate")


def test_unknown_missing_option():
    with pytest.raises(DataError, match="missing must be"):
        validate_frame(small_frame(), "date", missing="drop")


def test_duplicate_timestamps_are_named():
    frame = small_frame()
    frame.loc[3, "date"] = frame.loc[2, "date"]
    with pytest.raises(DataError, match="duplicated timestamp.*2021-01-01 02:00:00"):
        validate_frame(frame, "date")


def test_decreasing_timestamps_name_the_row():
    frame = small_frame()
    frame.loc[4, "date"] = pd.Timestamp("2020-12-31")
    with pytest.raises(DataError, match="not strictly increasing.*row 4"):
        validate_frame(frame, "date")


def test_too_short_for_one_window():
    with pytest.raises(DataError, match="series has 6 rows, shorter than one window of 24"):
        validate_frame(small_frame(6), "date", min_length=24)


def test_more_channels_than_model():
    with pytest.raises(DataError, match="data has 2 channels but the model is configured for 1"):
        validate_frame(small_frame(), "date", max_channels=1)


def test_constant_channel_warns():
    frame = small_frame().assign(flat=7.0)
    with pytest.warns(UserWarning, match="flat"):
        series = validate_frame(frame, "date")
    assert series.channels == ("a", "b", "flat")


# ---------------------------------------------------------------------------------- split and windows


def test_split_by_time_is_chronological():
    values = np.arange(20, dtype=float).reshape(10, 2)
    train, validation = split_by_time(values, 0.3)
    np.testing.assert_array_equal(train, values[:7])
    np.testing.assert_array_equal(validation, values[7:])
    train, validation = split_by_time(values, 0.0)
    assert train.shape == (10, 2) and validation.shape == (0, 2)
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(DataError, match="validation_fraction"):
            split_by_time(values, bad)


def test_sliding_windows_shape_content_and_read_only():
    values = np.arange(30, dtype=float).reshape(10, 3)
    windows = sliding_windows(values, 4)
    assert windows.shape == (7, 4, 3)
    for index in range(7):
        np.testing.assert_array_equal(windows[index], values[index : index + 4])
    assert not windows.flags.writeable
    with pytest.raises(DataError, match="shorter than one window"):
        sliding_windows(values, 11)


def test_segment_stages_shape_and_content():
    windows = sliding_windows(np.arange(24, dtype=float).reshape(12, 2), 6)
    stages = segment_stages(windows, 2)
    assert stages.shape == (7, 3, 2, 2)
    np.testing.assert_array_equal(stages[1, 2], windows[1, 4:6])
    np.testing.assert_array_equal(stages.reshape(7, 6, 2), windows)
    with pytest.raises(DataError, match="not a multiple.*e.g. 4 or 8"):
        segment_stages(windows, 4)


# ---------------------------------------------------------------------------------------------- scaler


def test_scaler_fits_train_only_and_inverts():
    values = np.stack([np.linspace(0.0, 10.0, 20), np.linspace(-5.0, 5.0, 20) ** 2], axis=1)
    train, validation = split_by_time(values, 0.25)
    scaler = MinMaxScaler.fit(train)
    scaled_train = scaler.transform(train)
    assert scaled_train.min() == pytest.approx(-1.0) and scaled_train.max() == pytest.approx(1.0)
    scaled_validation = scaler.transform(validation)
    assert scaled_validation[:, 0].min() > 1.0  # later, larger values stay outside [-1, 1]
    windows = sliding_windows(values, 5)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(windows)), windows)


def test_scaler_dict_round_trip_through_json():
    scaler = MinMaxScaler.fit(np.array([[0.0, 1.0], [2.0, 5.0]]))
    restored = MinMaxScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert restored == scaler
    np.testing.assert_array_equal(restored.transform([[1.0, 3.0]]), [[0.0, 0.0]])
    with pytest.raises(DataError, match="minimum"):
        MinMaxScaler.from_dict({"min": [0.0]})


def test_scaler_constant_channel_maps_to_zero():
    values = np.array([[3.0, 0.0], [3.0, 1.0], [3.0, 2.0]])
    scaler = MinMaxScaler.fit(values)
    scaled = scaler.transform(values)
    assert np.isfinite(scaled).all()
    np.testing.assert_array_equal(scaled[:, 0], 0.0)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), values)


def test_scaler_rejects_wrong_channel_count():
    scaler = MinMaxScaler.fit(np.zeros((3, 2)) + np.arange(3)[:, None])
    with pytest.raises(DataError, match="channels"):
        scaler.transform(np.zeros((4, 3)))
