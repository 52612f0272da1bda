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

from serving.requests import GenerateRequest

TRAINING_END = pd.Timestamp("2022-01-20T23:00:00")  # the last row of the fit's frame: 480 hours from 2022-01-01


def call(service, endpoint: str = "generate", **fields):
    return asyncio.run(getattr(service, endpoint)(GenerateRequest(**fields)))


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
    assert (info["window"], info["stage_length"], info["diffusion_steps"]) == (32, 8, 20)
    assert info["sampling"] == {"sampler": "ddim", "steps": 5}  # what a request without sampler and steps gets
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
