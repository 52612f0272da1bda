"""A real `bentoml serve` on a free loopback port, called over HTTP: JSON, CSV, parquet and streams; every kind
of bad input gets a 4xx with its message; a fuzz run from the service's own OpenAPI document gets no 5xx;
and stopping the server leaves no process behind."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

READY_SECONDS = 90
STOP_SECONDS = 20
FUZZ_EXAMPLES = int(os.environ.get("STAGEDIFF_FUZZ_EXAMPLES", 150))
HOUR = pd.Timedelta("1h")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`bentoml serve` in its own session (so its whole process group can be stopped at once)."""

    def __init__(self, env: dict[str, str], root: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bentoml",
                    "serve",
                    "serving.service:StageDiffService",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                cwd=root,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes: list[psutil.Process] = []

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    self.processes = [
                        psutil.Process(self.process.pid),
                        *psutil.Process(self.process.pid).children(recursive=True),
                    ]
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"bentoml serve was not ready after {READY_SECONDS} s:\n{self.log_tail()}")

    def stop(self) -> list[psutil.Process]:
        """SIGTERM to the process group, SIGKILL after STOP_SECONDS; returns the processes still alive."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_SECONDS)
        _, alive = psutil.wait_procs(self.processes, timeout=STOP_SECONDS)
        return alive

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def server(serving_env, project_root, tmp_path_factory):
    running = Server(serving_env, project_root, tmp_path_factory.mktemp("server") / "serve.log")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as session:
        yield session


def generate(client: httpx.Client, **fields) -> httpx.Response:
    return client.post("/generate", json=fields)


def test_json_csv_and_parquet_over_http(client, model_tag):
    response = generate(client, n_samples=2, length=48, seed=21)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.headers["x-stagediff-seed"] == "21" and response.headers["x-stagediff-model"] == model_tag
    body = response.json()
    frame = pd.DataFrame(body["records"])
    assert list(frame.columns) == ["sample", "date", "a", "b"] and len(frame) == 96
    dates = pd.to_datetime(frame.loc[frame["sample"] == 1, "date"])
    assert dates.iloc[0] == pd.Timestamp("2022-01-21") and (dates.diff().dropna() == HOUR).all()
    assert frame[["a", "b"]].min().min() > 90 and frame[["a", "b"]].max().max() < 210  # data units (about 100..200)
    assert generate(client, n_samples=2, length=48, seed=21).content == response.content  # same seed, same data
    csv = generate(client, n_samples=2, length=48, seed=21, format="csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.headers["x-stagediff-steps"] == "5"
    as_csv = pd.read_csv(io.BytesIO(csv.content))
    parquet = generate(client, n_samples=2, length=48, seed=21, format="parquet")
    table = pq.read_table(io.BytesIO(parquet.content))
    assert json.loads(table.schema.metadata[b"stagediff"])["model_version"] == "7"
    for other in (as_csv, table.to_pandas()):
        assert len(other) == 96
        pd.testing.assert_series_equal(other["a"], frame["a"], check_dtype=False, rtol=1e-14)


def test_known_values_and_imputation_over_http(client):
    known = [{"date": f"2022-01-21T{hour:02d}:00:00", "b": 130.0 + 0.5 * hour} for hour in range(16)]
    response = generate(client, n_samples=2, seed=4, known=known)
    assert response.status_code == 200 and response.headers["x-stagediff-length"] == "16"
    frame = pd.DataFrame(response.json()["records"])
    assert frame["b"].tolist() == [record["b"] for record in known] * 2 and frame["a"].notna().all()
    records = [{**record, "a": None if 4 <= index < 10 else 150.0} for index, record in enumerate(known)]
    imputed = client.post("/impute", json={"records": records, "n_samples": 2, "seed": 4, "format": "csv"})
    assert imputed.status_code == 200 and imputed.headers["content-type"].startswith("text/csv")
    filled = pd.read_csv(io.BytesIO(imputed.content))
    assert list(filled.columns) == ["sample", "date", "a", "b"] and filled[["a", "b"]].notna().all().all()
    gap = (filled.index % 16 >= 4) & (filled.index % 16 < 10)
    assert (filled.loc[~gap, "a"] == 150.0).all() and (filled.loc[gap, "a"] != 150.0).all()
    assert filled["b"].tolist() == [record["b"] for record in known] * 2


def test_a_random_seed_is_chosen_and_echoed(client):
    first = generate(client, length=16)
    seed = int(first.headers["x-stagediff-seed"])
    assert first.json()["provenance"]["seed_chosen"] is True
    assert generate(client, length=16, seed=seed).json()["records"] == first.json()["records"]


def test_a_long_stream_arrives_in_pieces_and_stops_when_the_client_leaves(client, server):
    """20,000 steps (157 pieces): the first records arrive while the rest is still being computed; closing
    the connection stops the sampling (the service counts the pieces it computed)."""
    with httpx.Client(base_url=server.url, timeout=60) as own:
        with own.stream("POST", "/generate_stream", json={"length": 20_000, "seed": 2, "steps": 1}) as response:
            assert response.status_code == 200 and response.headers["x-stagediff-rows"] == "20000"
            lines = response.iter_lines()
            first = json.loads(next(lines))
            assert first["sample"] == 0 and first["date"] == "2022-01-21T00:00:00"
            assert client.get("/info").json()["serving"]["streams_open"] == 1
    deadline = time.monotonic() + 10
    while (serving := client.get("/info").json()["serving"])["streams_open"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert serving["streams_open"] == 0
    time.sleep(0.5)
    after = client.get("/info").json()["serving"]["pieces_streamed"]
    assert after == serving["pieces_streamed"] and after < 50  # a complete stream is 157 pieces


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system CPU time of the server's processes so far."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def leave(url: str, endpoint: str, body: dict, after: float) -> None:
    """Send ``body`` and close the connection ``after`` seconds later (read or not)."""
    with httpx.Client(base_url=url, timeout=after) as own:
        started = time.monotonic()
        try:
            with own.stream("POST", endpoint, json=body) as response:
                for _ in response.iter_bytes():
                    if time.monotonic() - started > after:
                        break
        except httpx.ReadTimeout:
            pass


@pytest.mark.parametrize(
    ("endpoint", "body", "after"),
    [
        ("/generate", {"length": 1248, "sampler": "ddpm", "seed": 3}, 0.5),  # 11 chunks of 20 evaluations: seconds
        ("/generate_stream", {"length": 20_000, "steps": 1, "seed": 3}, 0.5),  # left after its first records
        ("/generate_stream", {"length": 1248, "sampler": "ddpm", "seed": 3}, 0.05),  # before its first record
    ],
    ids=["generate", "stream", "stream before its first record"],
)
def test_a_client_that_leaves_stops_the_server_using_the_cpu_within_a_second(client, server, endpoint, body, after):
    before = client.get("/info").json()["serving"]
    leave(server.url, endpoint, body, after)
    left = time.monotonic()
    time.sleep(1.0)
    quiet = cpu_seconds(server.processes)
    time.sleep(2.0)
    assert cpu_seconds(server.processes) - quiet < 0.15  # an idle server: its event loops only
    serving = client.get("/info").json()["serving"]
    assert serving["cancelled"] == before["cancelled"] + 1 and serving["running_batches"] == 0
    assert serving["batches"] == before["batches"] and time.monotonic() - left < 5
    if after < 0.1:
        assert serving["pieces_streamed"] == before["pieces_streamed"]


def test_a_stream_in_csv(client):
    response = client.post("/generate_stream", json={"n_samples": 2, "length": 200, "seed": 1, "format": "csv"})
    frame = pd.read_csv(io.BytesIO(response.content), parse_dates=["date"])
    assert response.status_code == 200 and len(frame) == 400 and list(frame.columns) == ["sample", "date", "a", "b"]


PREFIX = [{"date": f"2022-01-21T{hour:02d}:00:00", "a": 150.0 + hour, "b": 140.0} for hour in range(4)]
KNOWN = [{"date": f"2022-01-21T{hour:02d}:00:00", "b": 140.0} for hour in range(8)]
GAPS = [{**record, "a": 150.0 if hour < 4 else None} for hour, record in enumerate(KNOWN)]
JSON_HEADERS = {"content-type": "application/json"}
ENDPOINTS = ("/generate", "/generate_stream")
POSTS = (*ENDPOINTS, "/impute")


def raw(content: bytes | str, content_type: str | None = "application/json") -> dict:
    return {"content": content, "headers": {} if content_type is None else {"content-type": content_type}}


BODIES = [  # (case, endpoints, request, status, message): bodies that are not one JSON object
    (
        "multipart without boundary",
        (*POSTS, "/info"),
        raw(b"x", "multipart/form-data"),
        415,
        "must be a JSON object sent with content-type application/json, got content-type 'multipart/form-data'",
    ),
    ("empty body", (*ENDPOINTS, "/info"), raw(b""), 400, "the request body is empty; send a JSON object: {} for every"),
    (
        "empty body",
        ("/impute",),
        raw(b""),
        400,
        'the request body is empty; send a JSON object such as {"records": [{"date": ',
    ),
    ("text/plain", (*POSTS, "/info"), raw(b"{}", "text/plain"), 415, "got content-type 'text/plain'"),
    (
        "form",
        POSTS,
        raw(b"n_samples=2", "application/x-www-form-urlencoded"),
        415,
        "got content-type 'application/x-www-form-urlencoded'",
    ),
    (
        "pickle",
        POSTS,
        raw(b"\x80\x04N.", "application/vnd.bentoml+pickle"),
        415,
        "got content-type 'application/vnd.bentoml+pickle'",
    ),
    ("invalid JSON", POSTS, raw(b'{"n_samples": 1,'), 400, "the request body is not valid JSON (EOF while parsing"),
    ("array", POSTS, raw(b"[1, 2]"), 400, "must be a JSON object such as"),
    ("string", ("/generate",), raw(b'"length"'), 400, "got a string"),
    ("null", ("/generate",), raw(b"null"), 400, "got null"),
    ("number", ("/generate",), raw(b"64"), 400, "got a number"),
    (
        "NaN in a prefix",
        ENDPOINTS,
        raw(b'{"prefix": [{"date": "2022-01-21T00:00:00", "a": NaN, "b": 1.0}]}'),
        400,
        "prefix: channels contain NaN or infinite values ('a': 1 missing/infinite, first at row 0)",
    ),
    (
        "Infinity in a prefix",
        ENDPOINTS,
        raw(b'{"prefix": [{"date": "2022-01-21T00:00:00", "a": Infinity, "b": 1.0}]}'),
        400,
        "NaN or infinite values ('a': 1 missing/infinite, first at row 0)",
    ),
    (
        "NaN in known",
        ENDPOINTS,
        raw(b'{"known": [{"b": 1.0}, {"b": NaN}' + b', {"b": 1.0}' * 6 + b"]}"),
        400,
        "known: channels contain NaN or infinite values ('b': 1 missing/infinite, first at row 1)",
    ),
    ("records to impute missing", ("/impute",), raw(b"{}"), 400, "records: Field required, got {}"),
    ("impute with length", ("/impute",), raw(b'{"records": [], "length": 8}'), 400, "length: Extra inputs are not"),
]
FIELDS = [  # (case, JSON body, message); each is sent to both endpoints and gets 400
    ("unknown field", {"n_samples": 1, "lenght": 64}, "lenght: Extra inputs are not permitted, got 64"),
    ("n_samples a string", {"n_samples": "two"}, "n_samples: Input should be a valid integer, got 'two'"),
    ("n_samples a boolean", {"n_samples": True}, "n_samples: Input should be a valid integer, got True"),
    ("n_samples 0", {"n_samples": 0}, "n_samples: Input should be greater than or equal to 1, got 0"),
    ("n_samples over the limit", {"n_samples": 17}, "n_samples must be an integer between 1 and 16, got 17"),
    ("length a float", {"length": 64.5}, "length: Input should be a valid integer, got 64.5"),
    ("length 0", {"length": 0}, "length: Input should be greater than or equal to 1"),
    (
        "length not a multiple of the stage",
        {"length": 30},
        "length must be a multiple of the stage length 8 between 8 and 20000, got 30",
    ),
    ("length over max_length", {"length": 1_000_000}, "between 8 and 20000, got 1000000"),
    (
        "over max_values",
        {"n_samples": 16, "length": 1_440, "steps": 1},
        "= 46,080 exceeds the limit of 40,000 values per request (max_values); with n_samples=16 and steps=1 the "
        "length may be at most 1248",
    ),
    (
        "over the budget max_cost",
        {"n_samples": 16, "length": 3_120, "steps": 20},
        "16 * 3120 * 2 * 20 = 1,996,800 exceeds the budget of 50,000 per request (max_cost); with n_samples=16 and "
        "steps=20 the length may be at most 72",
    ),
    (
        "over the budget with ddpm's steps",
        {"n_samples": 16, "length": 1_000, "sampler": "ddpm"},
        "with n_samples=16 and steps=20 the length may be at most 72",
    ),
    ("seed negative", {"seed": -5}, "seed: Input should be greater than or equal to 0, got -5"),
    ("seed over 2**63 - 1", {"seed": 2**63}, "seed: Input should be less than or equal to 9223372036854775807"),
    ("seed a string", {"seed": "7"}, "seed: Input should be a valid integer"),
    ("steps 0", {"steps": 0}, "steps: Input should be greater than or equal to 1"),
    ("steps over the diffusion steps", {"steps": 500}, "steps must be an integer between 1 and 20"),
    ("unknown sampler", {"sampler": "euler"}, "sampler: Input should be 'ddpm' or 'ddim', got 'euler'"),
    ("unknown format", {"format": "xml"}, "format: Input should be 'json', 'csv' or 'parquet', got 'xml'"),
    ("format null", {"format": None}, "format: Input should be 'json', 'csv' or 'parquet', got None"),
    ("start not a date", {"start": "yesterday"}, "start 'yesterday' is not an ISO 8601 timestamp"),
    ("start empty", {"start": ""}, "start '' is not an ISO 8601 timestamp"),
    ("start now", {"start": "now"}, "start 'now' is not an ISO 8601 timestamp"),
    ("start a number on a dated model", {"start": 5}, "start must be an ISO 8601 timestamp such as"),
    ("start a list", {"start": [2022]}, "start.str: Input should be a valid string"),
    (
        "timestamps after 9999",
        {"start": "9999-12-31T23:00:00", "length": 16},
        "end in 10000-01-01 14:00:00, after the year 9999 that ISO 8601 timestamps can name",
    ),
    ("start and prefix", {"start": "2030-01-01T00:00:00", "prefix": PREFIX}, "either start or prefix"),
    ("prefix empty", {"prefix": []}, "prefix is empty; send at least one record"),
    ("prefix not a list", {"prefix": {"a": 1}}, "prefix: Input should be a valid array"),
    ("prefix record not an object", {"prefix": [1]}, "prefix.0: Input should be an object"),
    (
        "prefix lacks a channel",
        {"prefix": [{k: v for k, v in PREFIX[0].items() if k != "b"}]},
        "prefix record 0 lacks ['b']",
    ),
    ("prefix lacks the time column", {"prefix": [{"a": 1.0, "b": 2.0}]}, "prefix record 0 lacks ['date']"),
    ("prefix has an unknown column", {"prefix": [{**PREFIX[0], "c": 1.0}]}, "prefix record 0 has unknown ['c']"),
    (
        "prefix not increasing",
        {"prefix": [PREFIX[1], PREFIX[0]]},
        "prefix: time column 'date' is not strictly increasing",
    ),
    ("prefix with a gap", {"prefix": [PREFIX[0], PREFIX[2]]}, "must be 1 hour apart (the model's frequency)"),
    ("prefix value null", {"prefix": [{**PREFIX[0], "a": None}]}, "channel 'a' must be a number, got None"),
    ("prefix value a string", {"prefix": [{**PREFIX[0], "a": "1"}]}, "channel 'a' must be a number, got '1'"),
    ("prefix value a boolean", {"prefix": [{**PREFIX[0], "b": True}]}, "channel 'b' must be a number, got True"),
    (
        "prefix time a number",
        {"prefix": [{**PREFIX[0], "date": 5}]},
        "value(s) that are not ISO 8601 timestamps (row 0: 5)",
    ),
    ("prefix time not a date", {"prefix": [{**PREFIX[0], "date": "soon"}]}, "not ISO 8601 timestamps (row 0: 'soon')"),
    (
        "prefix value 1e30",
        {"prefix": [PREFIX[0], {**PREFIX[1], "a": 1e30}]},
        "prefix record 1: channel 'a' is 1e+30, more than 10 training ranges outside the model's training range",
    ),
    (
        "prefix value -1e6",
        {"prefix": [{**PREFIX[0], "b": -1e6}]},
        "prefix record 0: channel 'b' is -1e+06, more than 10",
    ),
    ("known empty", {"known": []}, "known is empty; send one record per step of the samples, or leave known out"),
    ("known not a list", {"known": {"b": 1.0}}, "known: Input should be a valid array"),
    ("known record not an object", {"known": [1]}, "known.0: Input should be an object"),
    ("known too few for length", {"known": KNOWN, "length": 16}, "known has 8 records; it needs one per step"),
    (
        "known not a multiple of the stage",
        {"known": KNOWN[:5]},
        "length must be a multiple of the stage length 8 between 8 and 20000, got 5 (the number of known records",
    ),
    ("known unknown column", {"known": [{**r, "c": 1.0} for r in KNOWN]}, "known record 0 has unknown ['c']"),
    (
        "known columns differ",
        {"known": KNOWN[:7] + [{"b": 1.0}]},
        "known record 7 has the columns ['b'], record 0 has ['date', 'b']: every record needs the same columns",
    ),
    ("known every channel", {"known": [{**r, "a": 1.0} for r in KNOWN]}, "known gives every channel ['a', 'b']"),
    ("known no channel", {"known": [{"date": r["date"]} for r in KNOWN]}, "known has none of the model's channel"),
    ("known value null", {"known": KNOWN[:7] + [{**KNOWN[7], "b": None}]}, "known record 7: channel 'b' is null"),
    ("known value a string", {"known": [{**r, "b": "1"} for r in KNOWN]}, "channel 'b' must be a number, got '1'"),
    ("known value 1e30", {"known": [{**r, "b": 1e30} for r in KNOWN]}, "known record 0: channel 'b' is 1e+30, more"),
    ("known time not a date", {"known": [{**r, "date": "soon"} for r in KNOWN]}, "known: time column 'date' has 8"),
    (
        "known times and start disagree",
        {"known": KNOWN, "start": "2030-01-01T00:00:00"},
        "known: the time column 'date' must hold the samples' timestamps, consecutive steps of 1 hour from "
        "2030-01-01 00:00:00 (the start)",
    ),
    (
        "known times and prefix disagree",
        {"known": KNOWN, "prefix": PREFIX},
        "known: the time column 'date' must hold the samples' timestamps, consecutive steps of 1 hour from "
        "2022-01-21 04:00:00 (right after the prefix)",
    ),
]
IMPUTE = [  # (case, JSON body, message); each is sent to /impute and gets 400
    ("records empty", {"records": []}, "records is empty; send one record per step of the series to fill"),
    ("records not a list", {"records": 5}, "records: Input should be a valid array, got 5"),
    ("records over max_length", {"records": [GAPS[0]] * 20_001}, "records has 20001 records; at most 20000"),
    ("a record lacks a channel", {"records": [{"a": 1.0}] * 8}, "record 0 lacks ['b']: every record needs every"),
    ("a record has an unknown column", {"records": [{**r, "c": None} for r in GAPS]}, "record 0 has unknown ['c']"),
    ("records' columns differ", {"records": GAPS[:7] + [{"a": 1.0, "b": 1.0}]}, "every record needs the same columns"),
    ("a value a string", {"records": [{**GAPS[0], "a": "x"}]}, "record 0: channel 'a' must be a number or null"),
    ("timestamps going back", {"records": GAPS[::-1]}, "time column 'date' is not strictly increasing"),
    ("a gap at the first record", {"records": GAPS[4:]}, "misses ['a'] at its first step"),
    ("every value missing", {"records": [{**r, "b": None} for r in GAPS[4:]]}, "every value of the frame to impute"),
    ("a value 1e30", {"records": [{**r, "b": 1e30} for r in GAPS]}, "channel 'b' is 1e+30, more than 10 training"),
    ("timestamps with a gap", {"records": [GAPS[0], GAPS[2]]}, "records: time column 'date' must be 1 hour"),
    ("n_samples over the limit", {"records": GAPS, "n_samples": 17}, "n_samples must be an integer between 1 and 16"),
    ("steps over the diffusion steps", {"records": GAPS, "steps": 21}, "steps must be an integer between 1 and 20"),
    ("unknown sampler", {"records": GAPS, "sampler": "euler"}, "sampler: Input should be 'ddpm' or 'ddim'"),
    ("over the budget", {"records": [GAPS[0]] * 8_000}, "exceeds the budget of 50,000 per request (max_cost)"),
]
CATALOGUE = (
    [
        pytest.param(endpoint, request, status, message, id=f"{case} {endpoint}")
        for case, endpoints, request, status, message in BODIES
        for endpoint in endpoints
    ]
    + [
        pytest.param(endpoint, {"json": body}, 400, message, id=f"{case} {endpoint}")
        for case, body, message in FIELDS
        for endpoint in ENDPOINTS
    ]
    + [pytest.param("/impute", {"json": body}, 400, message, id=f"{case} /impute") for case, body, message in IMPUTE]
    + [
        pytest.param(
            "/generate_stream",
            {"json": {"format": "parquet"}},
            400,
            "format 'parquet' cannot be streamed; a stream is one of ['json', 'csv']",
            id="parquet stream /generate_stream",
        )
    ]
)


def test_the_catalogue_of_bad_requests_has_more_than_60_cases():
    assert len(CATALOGUE) >= 60
    assert len({param.id for param in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize(("endpoint", "request_", "status", "message"), CATALOGUE)
def test_every_bad_request_gets_a_4xx_naming_the_problem(client, endpoint, request_, status, message):
    response = client.post(endpoint, **request_)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"], response.json()["error"]


def test_a_body_over_the_size_limit_gets_413_before_it_is_read(client):
    huge = b'{"prefix": [' + b'{"date": "2022-01-21T00:00:00", "a": 1.0, "b": 1.0},' * 400_000 + b"]}"
    response = client.post("/generate", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over the limit of 16,777,216 bytes" in response.json()["error"]


def test_info_by_get_and_post(client, model_tag):
    got, posted = client.get("/info"), client.post("/info", json={})
    assert got.status_code == posted.status_code == 200
    assert got.json()["model"] == posted.json()["model"] and got.json()["model"]["tag"] == model_tag
    assert got.json()["data"]["channels"] == ["a", "b"] and got.json()["limits"]["max_samples"] == 16


def test_the_worker_starts_with_openmp_waiting_passively(server):
    """The server starts without OMP_WAIT_POLICY (serving_env); the service has BentoML start its worker with it
    (stagediff.runtime.ENVIRONMENT), so torch's OpenMP reads it whatever the import order."""
    arbiter = psutil.Process(server.process.pid)
    workers = arbiter.children(recursive=True)
    assert "OMP_WAIT_POLICY" not in arbiter.environ() and workers
    assert [worker.environ().get("OMP_WAIT_POLICY") for worker in workers] == ["PASSIVE"] * len(workers)


def test_thousands_of_requests_do_not_grow_the_memory(server, client):
    """BentoML's own timeout middleware kept every request's context (about 5 KB) for the timeout, 600 s
    here: 10 MB for these requests; serving/timeouts.py lets go of them."""
    workers = psutil.Process(server.process.pid).children(recursive=True)

    def resident_mb() -> float:
        return sum(worker.memory_info().rss for worker in workers) / 2**20

    for _ in range(300):
        client.get("/info")
    before = resident_mb()
    for index in range(2000):
        assert (client.get("/info") if index % 2 else client.post("/generate", json={"length": 30})).status_code < 500
    assert resident_mb() - before < 4


def test_the_openapi_document_describes_what_the_service_does(client):
    document = client.get("/docs.json").json()
    schemas, paths = document["components"]["schemas"], document["paths"]
    assert document["openapi"] == "3.1.0" and {"get", "post"} <= set(paths["/info"])
    length = schemas["GenerateRequest"]["properties"]["length"]["anyOf"][0]
    assert (length["multipleOf"], length["minimum"], length["maximum"]) == (8, 8, 20000)
    assert schemas["GenerateRequest"]["properties"]["n_samples"]["maximum"] == 16
    assert schemas["StreamRequest"]["properties"]["format"]["enum"] == ["json", "csv"]
    assert set(paths["/generate_stream"]["post"]["responses"]["200"]["content"]) == {"application/x-ndjson", "text/csv"}
    assert set(paths["/generate"]["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.parquet",
    }
    assert schemas["Error"]["properties"]["detail"]["type"] == "array"
    known = schemas["GenerateRequest"]["properties"]["known"]["anyOf"][0]
    assert known["items"] == {"$ref": "#/components/schemas/KnownRecord"} and known["maxItems"] == 20000
    assert set(schemas["KnownRecord"]["properties"]) == {"date", "a", "b"}
    assert schemas["ImputeRequest"]["required"] == ["records"] and schemas["ImputeRecord"]["required"] == ["a", "b"]
    assert schemas["ImputeRecord"]["properties"]["a"] == {"type": ["number", "null"]}
    assert "conditioning" in schemas["Info"]["required"]
    assert set(paths["/impute"]["post"]["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
        "application/vnd.apache.parquet",
    }
    for path in ("/generate", "/generate_stream", "/impute"):
        assert {"400", "413", "415", "429", "504"} <= set(paths[path]["post"]["responses"])
    # the 400 bodies are what the document says: error, and detail as a list of problems
    refused = client.post("/generate", json={"n_samples": "two", "lenght": 1}).json()
    assert set(refused) == {"error", "detail"} and [problem["loc"] for problem in refused["detail"]] == [
        ["n_samples"],
        ["lenght"],
    ]
    assert set(client.post("/generate", json={"length": 30}).json()) == {"error"}


RULES_THE_SCHEMA_CANNOT_EXPRESS = (
    "exceeds the budget of",
    "exceeds the limit of",  # products of fields
    "is not an ISO 8601 timestamp",  # what Python's datetime.fromisoformat reads
    "give either start or prefix",
    "prefix: time column",  # relations between fields and records: the library's rules (stagediff.data.rules)
    "prefix: channels contain NaN or infinite values",
    "more than 10 training ranges outside",
    "cannot be represented",
    "after the year 9999",
    "beyond the range of a float64 number",
    "known has",  # known values: one record per step, some channels and not all, the same columns in each
    "(the number of known records",
    "known gives every channel",
    "known: time column",
    "known: the time column",
    "every record needs the same columns",
    "records: time column",  # records to impute: their timestamps, a complete first record, not every value missing
    "at its first step",
    "every value of the frame to impute is missing",
)


def positive_data_names_a_rule_the_schema_cannot_express(ctx, response, case) -> None:
    """A request the schema calls valid may get 400 only for a rule the schema cannot express (named in the
    message): the budget, ISO 8601, start with prefix, prefix timestamps and values, the year 9999, known records
    (their number, channels and timestamps) and records to impute (timestamps, the first record, all missing)."""
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code == 400:
        error = response.json()["error"]
        assert any(rule in error for rule in RULES_THE_SCHEMA_CANNOT_EXPRESS), f"valid by the schema, yet: {error}"


def test_fuzzing_from_the_openapi_document_passes_every_check(server, client):
    """Schemathesis draws valid and invalid requests for every operation in /docs.json and runs all its checks on
    each response (no 5xx, documented statuses, content types, headers and bodies; invalid data refused, valid
    data accepted unless a rule above applies). STAGEDIFF_FUZZ_EXAMPLES sets the number (default 150)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis.config import SchemathesisConfig

    @schemathesis.deserializer("application/x-ndjson")
    def first_record(_, response):  # the schema describes one line; every line must parse
        lines = [json.loads(line) for line in response.content.splitlines()]
        return lines[0] if lines else None

    config = SchemathesisConfig.from_dict(
        {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}}}
    )
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json", config=config)
    cases = st.one_of(
        schema.as_strategy(schemathesis.GenerationMode.POSITIVE),
        schema.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )
    statuses: list[tuple[str, int]] = []
    failures: list[str] = []

    @given(case=cases)
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:
        response = case.call(base_url=server.url, timeout=60)
        statuses.append((f"{case.method} {case.path}", response.status_code))
        try:
            case.validate_response(response, additional_checks=[positive_data_names_a_rule_the_schema_cannot_express])
        except (AssertionError, BaseExceptionGroup) as failure:  # collected, so that every example runs
            failures.append(str(failure)[:2000])

    call()
    summary = pd.Series([status for _, status in statuses]).value_counts().to_dict()
    print(
        f"schemathesis: {len(statuses)} requests over {len({op for op, _ in statuses})} operations, statuses "
        f"{summary}, {len(failures)} failed checks"
    )
    assert not failures, "\n\n".join(failures[:5])
    assert len(statuses) >= FUZZ_EXAMPLES // 2 and all(status < 500 for _, status in statuses)
    assert client.get("/readyz").status_code == 200


def test_stopping_the_server_leaves_nothing_running(server):
    assert len(server.processes) >= 1
    assert server.stop() == []
    with pytest.raises(ProcessLookupError):
        os.killpg(server.process.pid, 0)  # the process group is empty
