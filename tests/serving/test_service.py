"""The service class in this process, as a BentoML worker runs it: responses in data units with timestamps
and provenance, reproducible by seed, streamed piece by piece; bad input is a 400 that names the problem."""

from __future__ import annotations

import asyncio
import io
import json
import platform
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from serving.requests import GenerateRequest, ImputeRequest
from tests.conftest import smooth_frame

TRAINING_END = pd.Timestamp("2022-01-20T23:00:00")  # the last row of the fit's frame: 480 hours from 2022-01-01


def call(service, endpoint: str = "generate", **fields):
    schema = ImputeRequest if endpoint == "impute" else GenerateRequest
    return asyncio.run(getattr(service, endpoint)(schema(**fields)))


def body_of(response) -> dict:
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def frame_of(body: dict) -> pd.DataFrame:
    frame = pd.DataFrame(body["records"], columns=body["columns"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def collect(response) -> list[bytes]:
    async def read():
        return [chunk async for chunk in response.body_iterator]

    return asyncio.run(read())


def test_json_has_series_in_data_units_with_timestamps_and_provenance(service, training_frame, model_tag):
    response = call(service, n_samples=3, length=64, seed=11)
    body = body_of(response)
    frame = frame_of(body)
    assert body["columns"] == ["sample", "date", "a", "b"]
    assert len(frame) == 3 * 64 and sorted(frame["sample"].unique()) == [0, 1, 2]
    hours = pd.date_range(TRAINING_END + pd.Timedelta("1h"), periods=64, freq="h")
    assert all((group["date"].to_numpy() == hours.to_numpy()).all() for _, group in frame.groupby("sample"))
    for channel in ("a", "b"):  # data units: inside the training range (about 100..200), not the model's [-1, 1]
        low, high = training_frame[channel].min(), training_frame[channel].max()
        assert frame[channel].between(low - 1e-9, high + 1e-9).all() and frame[channel].std() > 1
    provenance = body["provenance"]
    assert provenance == {
        "model": model_tag,
        "model_version": "7",
        "registered_model": "stagediff-smooth",
        "mlflow_run_id": "0123456789abcdef",
        "seed": 11,
        "seed_chosen": False,
        "steps": 5,
        "sampler": "ddim",
        "n_samples": 3,
        "length": 64,
        "start": "2022-01-21T00:00:00",
        "prefix_rows": 0,
    }
    assert response.headers["x-stagediff-seed"] == "11" and response.headers["x-stagediff-model-version"] == "7"
    assert response.headers["x-stagediff-steps"] == "5" and response.headers["x-stagediff-model"] == model_tag


def test_the_same_seed_gives_the_same_series_and_a_chosen_seed_regenerates_them(service, served_model):
    first, again = call(service, n_samples=4, length=32, seed=5), call(service, n_samples=4, length=32, seed=5)
    assert first.body == again.body
    assert first.body != call(service, n_samples=4, length=32, seed=6).body
    chosen = body_of(call(service, n_samples=2, length=32))
    assert chosen["provenance"]["seed_chosen"] is True
    regenerated = body_of(call(service, n_samples=2, length=32, seed=chosen["provenance"]["seed"]))
    assert regenerated["records"] == chosen["records"]
    # From 4 samples on, the library gives the very same values.
    library = served_model.sample(4, 32, seed=5, steps=5)
    np.testing.assert_allclose(
        frame_of(body_of(first))[["a", "b"]].to_numpy(), library[["a", "b"]].to_numpy(), rtol=1e-14
    )


def test_csv_and_parquet_carry_the_same_values(service, served_model):
    as_json = frame_of(body_of(call(service, n_samples=4, length=40, seed=2)))
    csv = call(service, n_samples=4, length=40, seed=2, format="csv")
    assert csv.media_type == "text/csv" and csv.headers["x-stagediff-seed"] == "2"
    as_csv = pd.read_csv(io.BytesIO(csv.body), parse_dates=["date"])
    parquet = call(service, n_samples=4, length=40, seed=2, format="parquet")
    table = pq.read_table(io.BytesIO(parquet.body))
    assert json.loads(table.schema.metadata[b"stagediff"])["seed"] == 2
    as_parquet = table.to_pandas()
    library = served_model.sample(4, 40, seed=2, steps=5)  # from 4 samples on, bit for bit
    pd.testing.assert_frame_equal(as_parquet, library, check_dtype=False)  # exact float64
    pd.testing.assert_frame_equal(as_csv, library, check_dtype=False, check_exact=True)
    pd.testing.assert_frame_equal(as_json, library, check_dtype=False, rtol=1e-14)


def test_start_sets_the_first_timestamp(service):
    frame = frame_of(body_of(call(service, length=16, seed=0, start="2030-06-01T12:00:00")))
    assert frame["date"].iloc[0] == pd.Timestamp("2030-06-01T12:00") and frame["date"].iloc[-1] == pd.Timestamp(
        "2030-06-02T03:00"
    )


def test_a_prefix_is_continued_right_after_its_last_timestamp(service, served_model, training_frame):
    history = training_frame.tail(24)
    records = [
        {"date": t.isoformat(), "a": a, "b": b} for t, a, b in history[["date", "a", "b"]].itertuples(index=False)
    ]
    body = body_of(call(service, n_samples=4, length=32, seed=4, prefix=records))
    frame = frame_of(body)
    assert frame["date"].iloc[0] == history["date"].iloc[-1] + pd.Timedelta("1h")
    assert body["provenance"]["prefix_rows"] == 24
    library = served_model.sample(4, 32, seed=4, steps=5, prefix=history)
    pd.testing.assert_frame_equal(frame, library, check_dtype=False, rtol=1e-14)


def test_long_series_equal_their_stream(service):
    long = frame_of(body_of(call(service, n_samples=2, length=400, seed=9)))  # 400 > 4 windows: several chunks
    assert len(long) == 800
    response = call(service, "generate_stream", n_samples=2, length=400, seed=9)
    assert response.media_type == "application/x-ndjson" and response.headers["x-stagediff-rows"] == "800"
    chunks = collect(response)
    assert len(chunks) > 1  # sent piece by piece
    streamed = pd.read_json(io.BytesIO(b"".join(chunks)), lines=True, convert_dates=["date"])
    streamed = streamed.sort_values(["sample", "date"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(streamed, long, check_dtype=False, rtol=1e-14)


def test_a_short_stream_equals_generate_and_csv_streams_have_one_header(service):
    lines = b"".join(collect(call(service, "generate_stream", n_samples=2, length=64, seed=3))).splitlines()
    assert len(lines) == 128
    # the stream sends each chunk of every sample in turn (these continue the data: a chunk of history first)
    streamed = sorted((json.loads(line) for line in lines), key=lambda record: (record["sample"], record["date"]))
    assert streamed == body_of(call(service, n_samples=2, length=64, seed=3))["records"]
    csv = b"".join(collect(call(service, "generate_stream", length=400, seed=3, format="csv")))
    assert csv.count(b"sample,date,a,b") == 1 and len(pd.read_csv(io.BytesIO(csv))) == 400


def test_closing_a_stream_stops_the_sampling(service):
    """What a disconnect does: the response's iterator is closed, which closes the library's generator
    after the chunk in progress; nothing more is computed."""
    response = call(service, "generate_stream", length=20_000, seed=1, steps=1)

    async def read_one_then_leave():
        iterator = response.body_iterator
        first = await iterator.__anext__()
        await iterator.__anext__()
        await iterator.aclose()
        return first

    before = service.pieces_streamed
    assert asyncio.run(read_one_then_leave()).startswith(b'{"sample":0')
    assert service.streams_open == 0
    service.executor.submit(lambda: None).result()  # the close ran on the sampling thread
    after = service.pieces_streamed
    time.sleep(0.2)
    assert service.pieces_streamed == after == before + 2  # of 157 pieces


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"length": 30}, "length must be a multiple of the stage length 8 between 8 and 20000, got 30"),
        ({"length": 20_008}, "between 8 and 20000, got 20008"),
        ({"n_samples": 17}, "n_samples must be an integer between 1 and 16, got 17"),
        (
            {"n_samples": 16, "length": 8_000},
            "= 1,280,000 exceeds the budget of 50,000 per request (max_cost); with "
            "n_samples=16 and steps=5 the length may be at most 312",
        ),
        (
            {"n_samples": 16, "length": 1_440, "steps": 1},
            "= 46,080 exceeds the limit of 40,000 values per request "
            "(max_values); with n_samples=16 and steps=1 the length may be at "
            "most 1248",
        ),
        ({"start": ""}, "start '' is not an ISO 8601 timestamp"),
        ({"start": "now"}, "start 'now' is not an ISO 8601 timestamp"),
        ({"steps": 21}, "steps must be an integer between 1 and 20, got 21"),
        ({"start": "soon"}, "start 'soon' is not an ISO 8601 timestamp"),
        ({"prefix": [{"date": "2022-01-21T00:00:00", "a": 1.0}]}, "prefix record 0 lacks ['b']"),
        (
            {"prefix": [{"date": "2022-01-21T00:00:00", "a": float("nan"), "b": 1.0}]},
            "('a': 1 missing/infinite, first at row 0)",
        ),
    ],
)
def test_bad_requests_get_400_with_the_problem_named(service, fields, message):
    for endpoint in ("generate", "generate_stream"):
        response = call(service, endpoint, **fields)
        assert response.status_code == 400
        assert message in json.loads(response.body)["error"]


HOURS_AFTER = pd.date_range(TRAINING_END + pd.Timedelta("1h"), periods=400, freq="h")


def test_known_channels_come_back_exactly_as_sent_and_the_others_fit_them(service, served_model):
    values = 120.0 + np.sqrt(np.arange(32.0))  # 16-17 significant digits: parquet and csv carry them exactly
    known = [{"date": t.isoformat(), "b": float(v)} for t, v in zip(HOURS_AFTER, values)]
    response = call(service, n_samples=3, seed=8, known=known, format="parquet")  # length: one step per record
    assert response.status_code == 200, response.body
    frame = pq.read_table(io.BytesIO(response.body)).to_pandas()
    assert len(frame) == 3 * 32 and response.headers["x-stagediff-length"] == "32"
    for _, sample in frame.groupby("sample"):
        assert np.array_equal(sample["b"].to_numpy(), values) and sample["a"].notna().all()
        assert (sample["date"].to_numpy() == HOURS_AFTER[:32].to_numpy()).all()
    assert frame.groupby("sample")["a"].apply(tuple).nunique() == 3  # a drawn for each sample
    scenario = pd.DataFrame({"date": HOURS_AFTER[:32], "b": values})
    library = served_model.sample(3, 32, seed=8, steps=5, known=scenario)  # the same bytes as the library's
    pd.testing.assert_frame_equal(frame, library, check_dtype=False, check_exact=True)
    # JSON carries 15 significant digits; csv exactly; without the time column the series continue the data
    plain = [{"b": 100.0 + 0.125 * i} for i in range(32)]
    body = body_of(call(service, n_samples=2, length=32, seed=8, known=plain))
    assert [r["b"] for r in body["records"]] == [r["b"] for r in plain] * 2
    assert body["records"][0]["date"] == "2022-01-21T00:00:00"
    csv = pd.read_csv(io.BytesIO(call(service, n_samples=3, seed=8, known=known, format="csv").body))
    assert np.array_equal(csv["b"].to_numpy(), np.tile(values, 3))


def test_known_timestamps_elsewhere_start_the_series_there_without_the_data_s_last_window(service, served_model):
    """Records dated in 2030 do not continue the training data: the service hands their first timestamp to the
    library as the start (from which the library decides whether the series continue the data)."""
    times = pd.date_range("2030-03-01T05:00:00", periods=16, freq="h")
    values = np.linspace(110.0, 130.0, 16)
    known = [{"date": t.isoformat(), "b": float(v)} for t, v in zip(times, values)]
    frame = pq.read_table(io.BytesIO(call(service, seed=2, known=known, format="parquet").body)).to_pandas()
    scenario = pd.DataFrame({"date": times, "b": values})
    expected = served_model.sample(1, 16, seed=2, steps=5, start=times[0], known=scenario)
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False, check_exact=True)
    gapped = scenario.assign(a=[150.0] * 4 + [np.nan] * 12)[["date", "a", "b"]]
    records = [{"date": t.isoformat(), "a": None if np.isnan(a) else a, "b": b} for t, a, b in gapped.itertuples(False)]
    filled = pq.read_table(io.BytesIO(call(service, "impute", records=records, seed=2, format="parquet").body))
    expected = served_model.sample(1, 16, seed=2, steps=5, start=times[0], known=gapped, fill=True)
    pd.testing.assert_frame_equal(filled.to_pandas(), expected, check_dtype=False, check_exact=True)


def test_a_stream_with_known_values_sends_them_in_every_piece(service):
    plain = [{"b": 110.0 + 0.25 * (i % 200)} for i in range(400)]  # several chunks
    response = call(service, "generate_stream", n_samples=2, seed=1, known=plain)
    chunks = collect(response)
    assert response.status_code == 200 and len(chunks) > 1
    streamed = pd.read_json(io.BytesIO(b"".join(chunks)), lines=True).sort_values(["sample", "date"], kind="stable")
    assert streamed["b"].tolist() == [r["b"] for r in plain] * 2 and streamed["a"].notna().all()


def records_to_impute() -> tuple[list[dict], np.ndarray]:
    """40 hours right after the training data (its waves, continued) with a gap of 10 hours in a and the last b
    missing; and where values were observed."""
    frame = smooth_frame(length=520).iloc[480:].reset_index(drop=True)
    frame.loc[10:19, "a"] = np.nan
    frame.loc[39, "b"] = np.nan
    records = [
        {"date": t.isoformat(), "a": None if np.isnan(a) else a, "b": None if np.isnan(b) else b}
        for t, a, b in frame.itertuples(index=False)
    ]
    return records, frame


def test_impute_keeps_every_observed_value_and_fills_the_gaps(service, served_model):
    records, gapped = records_to_impute()
    observed = gapped[["a", "b"]].notna().to_numpy()
    response = call(service, "impute", records=records, n_samples=3, seed=5, format="parquet")
    assert response.status_code == 200, response.body
    assert response.headers["x-stagediff-n-samples"] == "3" and response.headers["x-stagediff-length"] == "40"
    frame = pq.read_table(io.BytesIO(response.body)).to_pandas()
    assert list(frame.columns) == ["sample", "date", "a", "b"] and len(frame) == 3 * 40
    draws = frame[["a", "b"]].to_numpy().reshape(3, 40, 2)
    assert np.isfinite(draws).all()
    for draw, (_, sample) in zip(draws, frame.groupby("sample")):
        assert np.array_equal(draw[observed], gapped[["a", "b"]].to_numpy()[observed])
        assert (sample["date"].to_numpy() == gapped["date"].to_numpy()).all()
    assert not np.allclose(draws[0][~observed], draws[1][~observed])  # each draw its own
    library = served_model.impute(gapped, n=3, seed=5, steps=5)  # the same bytes as the library's
    pd.testing.assert_frame_equal(frame, library, check_dtype=False, check_exact=True)
    body = body_of(call(service, "impute", records=records, n_samples=3, seed=5))  # the response of /generate
    assert body["columns"] == ["sample", "date", "a", "b"] and len(body["records"]) == 120
    assert body["provenance"]["seed"] == 5 and body["provenance"]["start"] == "2022-01-21T00:00:00"
    chosen = body_of(call(service, "impute", records=records[:13]))  # any number of records
    assert chosen["provenance"]["seed_chosen"] is True and len(chosen["records"]) == 13


@pytest.mark.parametrize(
    ("endpoint", "fields", "message"),
    [
        ("generate", {"known": [{"c": 1.0}] * 8}, "known record 0 has unknown ['c']"),
        ("generate", {"known": [{"b": 150.0}] * 16, "length": 32}, "known has 16 records; it needs one per step"),
        ("generate", {"known": [{"b": 150.0}] * 7 + [{"b": None}]}, "known record 7: channel 'b' is null"),
        ("generate", {"known": [{"b": float("nan")}] * 8}, "known: channels contain NaN or infinite values"),
        ("generate", {"known": [{"a": 150.0, "b": 150.0}] * 8}, "known gives every channel ['a', 'b']"),
        ("generate", {"known": [{"b": 1e12}] * 8}, "more than 10 training ranges outside"),
        ("generate", {"known": [{"b": 150.0}] * 20_008}, "known has 20008 records; at most 20000 are accepted"),
        ("impute", {"records": [{"a": 150.0}] * 8}, "record 0 lacks ['b']: every record needs every channel"),
        ("impute", {"records": [{"a": None, "b": 150.0}] + [{"a": 1.0, "b": 1.0}] * 7}, "misses ['a'] at its first"),
        ("impute", {"records": [{"a": None, "b": None}] * 8}, "every value of the frame to impute is missing"),
        ("impute", {"records": [{"a": 1.0, "b": 1.0}] * 20_001}, "records has 20001 records; at most 20000"),
        ("impute", {"records": [{"a": 1.0, "b": 1.0}] * 8, "n_samples": 17}, "n_samples must be an integer between"),
        ("impute", {"records": [{"a": 1.0, "b": 1.0}] * 8, "steps": 21}, "steps must be an integer between 1 and 20"),
        ("impute", {"records": [{"a": 1.0, "b": 1.0}] * 8000}, "exceeds the budget of 50,000 per request"),
    ],
)
def test_bad_known_values_and_records_to_impute_get_400_with_the_problem_named(service, endpoint, fields, message):
    for name in ("generate", "generate_stream") if endpoint == "generate" else (endpoint,):
        response = call(service, name, **fields)
        assert response.status_code == 400, response.body
        assert message in json.loads(response.body)["error"]


def test_info_describes_model_data_scores_and_limits(service, model_tag):
    info = asyncio.run(service.info())
    assert info["model"] | {"created": None} == {
        "name": "stagediff-test",
        "tag": model_tag,
        "version": "7",
        "registered_model": "stagediff-smooth",
        "mlflow_run_id": "0123456789abcdef",
        "created": None,
        "parameters": info["model"]["parameters"],
    }
    assert info["data"] == {
        "dataset": "smooth",
        "hash": "feedc0de",
        "channels": ["a", "b"],
        "time_column": "date",
        "frequency": "P0DT1H0M0S",
        "first_time": "2022-01-01T00:00:00",
        "last_time": "2022-01-20T23:00:00",
        "timezone": None,
    }
    assert info["calendar"] == ["day"] and info["continues_data"] is True  # 16 training days: the day's cycle
    assert info["conditioning"] == 0.0  # the default: known channels and gaps (known, /impute) by replacement
    assert (info["window"], info["stage_length"], info["diffusion_steps"]) == (32, 8, 20)
    assert info["sampling"] == {"sampler": "ddim", "steps": 5, "ddim_eta": 1.0}  # a request without sampler, steps
    assert info["metrics_sampling"] == {"sampler": "ddim", "steps": 5}  # what the scores were measured with
    assert info["metrics"] == {"discriminative": 0.12, "context_fid": 0.5}
    assert info["limits"] == {
        "max_length": 20_000,
        "max_samples": 16,
        "max_values": 40_000,
        "max_cost": 50_000,
        "max_body_bytes": 16 * 2**20,
    }
    assert info["serving"]["torch_threads"] >= 1 and info["serving"]["batching"] is True
    # glibc (every Linux this runs on in CI): the sampling threads share 2 malloc arenas (memory stays flat)
    assert info["serving"]["malloc_arenas"] == (2 if platform.libc_ver()[0] == "glibc" else None)


def test_values_that_are_not_finite_are_never_sent(service_module):
    """A model that gives NaN (here: a weight set to NaN) gets a 500 naming the value, never a 200 of nulls; a
    prefix that could overflow the model is refused before any work (test_requests.py)."""
    broken = service_module.StageDiffService()
    with torch.no_grad():
        next(broken.generator.denoiser.parameters()).fill_(float("nan"))
    for endpoint, length in (("generate", 64), ("generate_stream", 64), ("generate_stream", 400)):
        response = call(broken, endpoint, length=length, seed=1)
        assert response.status_code == 500, response.body
        assert json.loads(response.body)["error"].startswith("the model produced nan for channel 'a' of sample 0 (and ")
