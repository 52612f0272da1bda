"""The BentoML service: synthetic series on demand from a packaged Stage-Diff model.

    STAGEDIFF_MODEL_TAG=stagediff:latest bentoml serve serving.service:StageDiffService

Endpoints: ``POST /generate`` (JSON, CSV or parquet; optionally with some channels known), ``POST
/generate_stream`` (JSON lines or CSV, sent piece by piece as the series is denoised), ``POST /impute`` (series
with gaps filled, as /generate answers), ``GET``/``POST /info``, ``GET /docs.json`` (OpenAPI,
serving.openapi); BentoML adds ``/readyz``, ``/livez`` and ``/metrics``. Every request is checked before any work
(content type, a JSON object, unknown fields, types, length, budget, prefix, known values, records to impute) and
bad input gets a 4xx with a message naming the problem; a client that leaves stops its work.

Environment: STAGEDIFF_MODEL_TAG (default ``stagediff:latest``), STAGEDIFF_THREADS (torch threads;
default 1 on up to 2 cores, see stagediff.runtime), STAGEDIFF_BATCHING (``1``/``0``, default 1),
STAGEDIFF_MAX_BATCH (rows per batch, default 32), STAGEDIFF_MAX_BODY_BYTES (default 16 MiB).
Sampling computes one request (or batch) at a time, so requests never compete for the CPU's cores, in turns
between network evaluations, so a small request does not wait for a large one to end (serving.batching).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bentoml
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from serving import openapi, timeouts
from serving.batching import Batcher, Work, rows_independent
from serving.encoding import MEDIA_TYPES, STREAM_MEDIA_TYPES, NonFiniteOutput, encode, encode_piece, provenance_headers
from serving.requests import (
    BodyError,
    GenerateRequest,
    ImputeRequest,
    Plan,
    RequestError,
    RequestLimits,
    check_body,
    plan_impute,
    plan_request,
)
from stagediff import StageDiff, StageDiffError, runtime
from stagediff.diffusion import sampling_choice
from stagediff.generator import SamplePiece
from stagediff.runtime import configure_threads

logger = logging.getLogger(__name__)

MODEL_TAG = os.environ.get("STAGEDIFF_MODEL_TAG", "stagediff:latest")
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
MAX_CONCURRENCY = 256
"""Requests in the service at once (BentoML answers 429 beyond); also the most sampling threads."""
MALLOC_ARENAS = 2
M_ARENA_MAX = -8
"""glibc's mallopt parameter for the most malloc arenas (malloc.h)."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> int | None:
    """Let the process's threads share ``arenas`` glibc malloc arenas; returns the number set, None off glibc.

    By default glibc gives each thread that allocates under contention an arena of its own (up to 8 per core) and
    keeps what is freed in it for that arena's next use. With requests sampling on many threads, the worker crept
    up by about 150 MB over a 5-minute soak; with 2 arenas it stayed flat (docs/serving.md, Performance). Takes
    effect for arenas not created yet, so it runs before the sampling threads start; ``MALLOC_ARENA_MAX`` set in
    the environment is the same setting, for the whole process from its start."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    return arenas if mallopt(M_ARENA_MAX, arenas) == 1 else None


class ClientGuard:
    """ASGI middleware: the service sees a request only once its body passed the checks, and no longer than its
    client stays.

    - The body is read here, at most ``max_bytes`` of it (413 past that), then replayed to the app: BentoML turns any
      exception raised while it reads a body into a 500.
    - A POST to an endpoint (a key of ``schemas``) must carry one JSON object of its schema
      (:func:`serving.requests.check_body`: 415 for another content type; 400 for an empty body, invalid JSON, JSON
      that is not an object, or fields that do not fit, with pydantic's list of problems as ``detail``). BentoML
      checks the same schema again; its own 400 names no problem in ``error``.
    - A client that disconnects before its response is complete cancels the app's handling of its request, and
      with it the request's sampling (serving.batching stops it between two network evaluations)."""

    def __init__(self, app: Any, max_bytes: int, schemas: dict[str, type[BaseModel]]):
        self.app, self.max_bytes, self.schemas = app, max_bytes, schemas

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self.too_large(scope, receive, send)
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_bytes:
                return await self.too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        if scope["method"] == "POST" and scope["path"] in self.schemas:
            content_type = headers.get(b"content-type")
            try:
                check_body(
                    None if content_type is None else content_type.decode("latin-1"), body, self.schemas[scope["path"]]
                )
            except BodyError as error:
                answer = {"error": str(error), **({"detail": error.detail} if error.detail else {})}
                return await JSONResponse(answer, status_code=error.status)(scope, receive, send)
        await self.serve(scope, body, receive, send)

    async def serve(self, scope: dict, body: bytes, receive: Any, send: Any) -> None:
        """Run the app with the body replayed; cancel it when the client disconnects."""
        gone = asyncio.Event()
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        app = asyncio.ensure_future(self.app(scope, replay, send))

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            app.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await app
        except asyncio.CancelledError:
            if not gone.is_set() or asyncio.current_task().cancelling():
                raise
        finally:
            watcher.cancel()
            app.cancel()

    async def too_large(self, scope: dict, receive: Any, send: Any) -> None:
        message = f"the request body is over the limit of {self.max_bytes:,} bytes; send fewer records"
        await JSONResponse({"error": message}, status_code=413)(scope, receive, send)


class Provenance(BaseModel):
    model: str = Field(description="BentoML model tag, e.g. stagediff:abc123")
    model_version: str = Field(description="Registered model version (or the BentoML version)")
    registered_model: str | None = None
    mlflow_run_id: str | None = None
    seed: int
    seed_chosen: bool = Field(description="True when the service chose the seed")
    steps: int
    sampler: str
    n_samples: int
    length: int
    start: str | float | int
    prefix_rows: int


class GenerateResponse(BaseModel):
    """The body of /generate with format json (csv and parquet carry the same columns)."""

    provenance: Provenance
    columns: list[str]
    records: list[dict[str, Any]]


class StreamedRecord(BaseModel):
    """One line of /generate_stream with format json: a record (sample, time column, channels)."""

    model_config = ConfigDict(extra="allow")
    sample: int


@dataclass
class Stream:
    """The rest of a stream: its work (for the turns), the library's pieces, and the series' timestamps."""

    work: Work
    pieces: Iterator[SamplePiece]
    times: tuple[str, pd.Index]

    def frame(self, model: StageDiff, piece: SamplePiece) -> pd.DataFrame:
        time_column, index = self.times
        return model.to_frame(
            piece.values,
            (time_column, index[piece.step : piece.step + piece.values.shape[1]]),
            first_sample=piece.sample,
        )


async def get_info(_: Request) -> Response:
    return JSONResponse(bentoml.get_current_service().describe())


async def get_openapi(_: Request) -> Response:
    return JSONResponse(bentoml.get_current_service().openapi())


# Mounted before BentoML's own routes for these paths: GET /info, and the OpenAPI document of serving.openapi.
info_app = Starlette(
    routes=[Route("/info", get_info, methods=["GET"]), Route("/docs.json", get_openapi, methods=["GET"])]
)


# envs: BentoML starts the worker with these where the server's environment lacks them, so they precede torch's
# import (a built Bento carries them too).
@bentoml.service(
    name="stagediff",
    workers=1,
    traffic={"timeout": 600, "max_concurrency": MAX_CONCURRENCY},
    envs=[{"name": name, "value": value} for name, value in runtime.ENVIRONMENT.items()],
)
@bentoml.asgi_app(info_app, path="/")
class StageDiffService:
    """Stage-Diff synthetic multivariate time series in the data's units, with timestamps."""

    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.threads = configure_threads(
            int(os.environ["STAGEDIFF_THREADS"]) if "STAGEDIFF_THREADS" in os.environ else None
        )
        self.malloc_arenas = limit_malloc_arenas()
        self.generator = StageDiff.load(self.model.path)
        self.metadata = dict(self.model.info.metadata)
        self.limits = RequestLimits.from_dict(self.metadata.get("limits"))
        # A thread per request that samples at most; serving.batching.Turns lets one of them compute at a time.
        self.executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="stagediff-sampling")
        max_rows = int(os.environ.get("STAGEDIFF_MAX_BATCH", DEFAULT_MAX_BATCH))
        exact = self.executor.submit(rows_independent, self.generator, max_rows).result()
        batching = os.environ.get("STAGEDIFF_BATCHING", "1") != "0" and exact
        self.batcher = Batcher(self.generator, self.executor, max_rows=max_rows, max_jobs=max_rows if batching else 1)
        self.streams_open = 0
        self.pieces_streamed = 0
        logger.info(
            "serving %s with %d torch thread(s); batching %s%s",
            self.model.tag,
            self.threads,
            "on" if batching else "off",
            "" if exact else " (rows depend on the batch on this machine)",
        )

    # -- endpoints --------------------------------------------------------------------------------
    @bentoml.api(route="/generate", output_spec=GenerateResponse)
    async def generate(self, request: GenerateRequest, /) -> Response:
        """Synthetic series: format json (records with provenance), csv or parquet. Provenance is also in
        the X-StageDiff-* headers (model, version, seed, steps, sampler). With known values (``known``), the other
        channels are generated to fit them. A client that disconnects stops the sampling at its next network
        evaluation."""
        return await self.respond(lambda: plan_request(request, self.generator, self.limits))

    @bentoml.api(route="/impute", output_spec=GenerateResponse)
    async def impute(self, request: ImputeRequest, /) -> Response:
        """Series with gaps (null) filled: n_samples draws of the records, every value sent coming back unchanged, in
        the response of /generate (format json, csv or parquet). A client that disconnects stops the sampling at its
        next network evaluation."""
        return await self.respond(lambda: plan_impute(request, self.generator, self.limits))

    @bentoml.api(route="/generate_stream", output_spec=StreamedRecord)
    async def generate_stream(self, request: GenerateRequest, /) -> Response:
        """Like /generate, sent piece by piece as the series is denoised: JSON lines (format json) or CSV.
        Rows come chunk by chunk (all samples' steps of a chunk, then the next chunk). A client that
        disconnects stops the sampling at its next network evaluation."""
        try:
            plan = plan_request(request, self.generator, self.limits, stream=True)
            rest, first = await self.open_stream(plan)
            head = encode_piece(first, plan.format, first=True)
        except (RequestError, StageDiffError) as error:
            return bad_request(error)
        except NonFiniteOutput as error:
            return model_fault(error)
        provenance = self.provenance(plan, first)
        headers = {**provenance_headers(provenance), "X-StageDiff-Rows": str(plan.n_samples * plan.length)}
        return StreamingResponse(
            self.stream(head, rest, plan.format), media_type=STREAM_MEDIA_TYPES[plan.format], headers=headers
        )

    @bentoml.api(route="/info")
    async def info(self) -> dict[str, Any]:
        """The model (name, version, MLflow run, data hash, channels, frequency, window, stage length, how much it
        was trained with known values, evaluation scores) and the request limits. Also served at GET /info."""
        return self.describe()

    # -- work ---------------------------------------------------------------------------------------
    async def respond(self, planned: Callable[[], Plan]) -> Response:
        """The response of /generate and /impute: the planned request sampled (by the batcher) and encoded; 400 for a
        request the checks refuse, 500 for values that are not finite."""
        try:
            plan = planned()
            frame = await self.sample(plan)
            provenance = self.provenance(plan, frame)
            body = await asyncio.get_running_loop().run_in_executor(None, encode, frame, provenance, plan.format)
        except (RequestError, StageDiffError) as error:
            return bad_request(error)
        except NonFiniteOutput as error:
            return model_fault(error)
        return Response(body, media_type=MEDIA_TYPES[plan.format], headers=provenance_headers(provenance))

    async def sample(self, plan: Plan) -> pd.DataFrame:
        """All series of ``plan`` as one frame, sampled by the batcher (beside other requests where they can share
        the denoiser's batches; the same bytes either way)."""
        model = self.generator
        values = await self.batcher.sample(plan.run)
        return model.to_frame(values, model.sample_times(plan.length, plan.start, plan.prefix))

    async def open_stream(self, plan: Plan) -> tuple[Stream | None, pd.DataFrame]:
        """The stream's remaining pieces (None for a series of one chunk, which comes whole) and its first piece,
        computed before the response starts so that an error is still a status code."""
        if plan.run.chunks == 1:
            return None, await self.sample(plan)
        work = Work()
        rest = Stream(
            work,
            self.generator.run_pieces(plan.run, step_callback=self.batcher.checkpoint(work)),
            self.generator.sample_times(plan.length, plan.start, plan.prefix),
        )
        return rest, rest.frame(self.generator, await self.batcher.compute(work, next, rest.pieces))

    async def stream(self, head: bytes, rest: Stream | None, format: str) -> AsyncIterator[bytes]:
        """The encoded pieces; on exit (done, or a disconnect) the stream's work is marked gone, which stops its
        sampling at the next network evaluation."""
        self.streams_open += 1
        try:
            self.pieces_streamed += 1
            yield head
            while rest is not None and (piece := await self.batcher.compute(rest.work, next, rest.pieces, None)):
                self.pieces_streamed += 1
                try:
                    yield encode_piece(rest.frame(self.generator, piece), format, first=False)
                except NonFiniteOutput:
                    logger.exception("a stream was cut short: its sampling gave values that are not finite")
                    raise
        finally:
            self.streams_open -= 1
            if rest is not None:
                rest.work.left = True

    # -- descriptions ---------------------------------------------------------------------------------
    # one service object per worker process, alive as long as the process: caching on it holds nothing longer
    @functools.cache  # noqa: B019
    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of this service and model (serving.openapi), served at /docs.json."""
        return openapi.document(StageDiffService.openapi_spec.asdict(), self.generator, self.limits)

    def provenance(self, plan: Plan, frame: pd.DataFrame) -> dict[str, Any]:
        first_time = frame.iloc[0, 1]
        return {
            "model": str(self.model.tag),
            "model_version": str(self.metadata.get("model_version") or self.model.tag.version),
            "registered_model": self.metadata.get("registered_model"),
            "mlflow_run_id": self.metadata.get("mlflow_run_id"),
            "seed": plan.seed,
            "seed_chosen": plan.seed_chosen,
            "steps": plan.steps,
            "sampler": plan.sampler,
            "n_samples": plan.n_samples,
            "length": plan.length,
            "start": first_time.isoformat()
            if isinstance(first_time, pd.Timestamp)
            else getattr(first_time, "item", lambda: first_time)(),
            "prefix_rows": 0 if plan.prefix is None else len(plan.prefix),
        }

    def describe(self) -> dict[str, Any]:
        config, metadata = self.generator.config, self.generator.metadata
        frequency = metadata.get("frequency")
        return {
            "model": {
                "name": self.model.tag.name,
                "tag": str(self.model.tag),
                "version": str(self.metadata.get("model_version") or self.model.tag.version),
                "registered_model": self.metadata.get("registered_model"),
                "mlflow_run_id": self.metadata.get("mlflow_run_id"),
                "created": self.model.info.creation_time.isoformat(),
                "parameters": metadata.get("training", {}).get("parameters"),
            },
            "data": {
                "dataset": self.metadata.get("dataset") or metadata.get("source"),
                "hash": self.metadata.get("data_hash") or metadata.get("content_hash"),
                "channels": list(metadata["channels"]),
                "time_column": metadata.get("time_column"),
                "frequency": None if frequency is None else frequency["value"],
                "first_time": metadata.get("first_time"),
                "last_time": metadata.get("last_time"),
                "timezone": metadata.get("timezone"),
            },
            "calendar": list(config.calendar or ()),
            "conditioning": config.conditioning,
            "continues_data": metadata.get("tail") is not None,
            "window": config.window,
            "stage_length": config.effective_stage_length,
            "diffusion_steps": config.diffusion_steps,
            # what a request without sampler and steps gets; ddim_eta: the noise of DDIM (1: ancestral, 0: none)
            "sampling": {**dict(zip(("sampler", "steps"), sampling_choice(config))), "ddim_eta": config.ddim_eta},
            "metrics_sampling": self.metadata.get("metrics_sampling"),
            "metrics": self.metadata.get("metrics", {}),
            "limits": {**self.limits.to_dict(), "max_body_bytes": max_body_bytes()},
            "serving": {
                "torch_threads": self.threads,
                "malloc_arenas": self.malloc_arenas,
                "batching": self.batcher.max_jobs > 1,
                "max_batch_rows": self.batcher.max_rows,
                "batches": self.batcher.batches,
                "batched_requests": self.batcher.jobs,
                "queued_requests": len(self.batcher.pending),
                "running_batches": len(self.batcher.running),
                "streams_open": self.streams_open,
                "pieces_streamed": self.pieces_streamed,
                "cancelled": self.batcher.turns.cancelled,
            },
        }


def bad_request(error: Exception) -> Response:
    return JSONResponse({"error": str(error)}, status_code=400)


def model_fault(error: NonFiniteOutput) -> Response:
    """500: the served model gave NaN or infinite values, which are never sent (a prefix that could cause them is
    refused with 400 before any work, see StageDiff.scale_values)."""
    logger.error("refused to send non-finite values: %s", error)
    return JSONResponse({"error": str(error)}, status_code=500)


def max_body_bytes() -> int:
    return int(os.environ.get("STAGEDIFF_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


StageDiffService.add_asgi_middleware(
    ClientGuard,
    max_bytes=max_body_bytes(),
    schemas={api.route: api.input_spec for api in StageDiffService.apis.values()},
)
timeouts.install()  # before BentoML builds the app: its own timeout middleware keeps every request for 600 s
