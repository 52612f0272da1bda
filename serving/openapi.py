"""The OpenAPI document served at ``/docs.json``: BentoML's, with the service's own operations described as the
service answers them.

BentoML 1.4.40 documents every endpoint's 400 body with a string ``detail`` (the service sends pydantic's list of
problems, or no ``detail``), declares ``application/json`` for the stream (it sends ``application/x-ndjson`` or
CSV), leaves out ``GET /info``, and knows nothing of the served model: here ``length`` is a multiple of the stage
length up to the limit, ``n_samples`` and ``steps`` have their maxima, ``start`` has the model's type, a prefix
record has exactly the model's columns, every status the service answers with is listed, and the document is
OpenAPI 3.1 (pydantic's schemas are JSON Schema 2020-12, with ``{"type": "null"}``). What a schema cannot express
is in the descriptions: the budget (a product of fields), prefix timestamps at the model's frequency, prefix
values within 10 training ranges, timestamps that end by the year 9999, one known record per step with the same
columns in each (some channels, not all), records to impute with a complete first record.
"""

from __future__ import annotations

import copy
from typing import Any

from serving.encoding import HEADER_PREFIX, MEDIA_TYPES, STREAM_MEDIA_TYPES
from serving.requests import (
    FORMATS,
    MAX_SEED,
    MAX_STEP,
    STREAM_FORMATS,
    RequestLimits,
    frequency_of,
    most_prefix_records,
    prefix_columns,
)
from stagediff import StageDiff
from stagediff.diffusion import SAMPLERS
from stagediff.generator import PREFIX_RANGES

REF = "#/components/schemas/{}"
OWN_PATHS = ("/generate", "/generate_stream", "/impute", "/info")
ERRORS = {
    "400": "A request the service refuses before any work: the body is not a JSON object of the schema, or breaks a "
    "rule of the served model (length, budget, start, prefix, known values, records to impute); `error` names the "
    "problem and the fix, and "
    "`detail` lists the schema's problems where there are any.",
    "413": "The body is over the size limit (limits.max_body_bytes in /info).",
    "415": "The body is not sent as application/json.",
    "429": "The service holds as many requests as it takes at once; retry later.",
    "504": "The answer did not start within the service's timeout (600 s).",
}
MODEL_FAULT = {"500": "The served model produced values that are not finite; nothing of them is sent."}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def document(base: dict[str, Any], model: StageDiff, limits: RequestLimits) -> dict[str, Any]:
    """``base`` (BentoML's document, as a dict) with the service's operations and schemas for ``model``."""
    spec = copy.deepcopy(base)
    spec["openapi"] = "3.1.0"
    spec["info"] = {
        **spec.get("info", {}),
        "title": "stagediff",
        "description": (
            "Synthetic multivariate time series from a Stage-Diff model, in the data's units with timestamps, "
            "reproducible by seed. See docs/serving.md."
        ),
    }
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in list(schemas):
        if name.endswith("IODescriptor") or name in (
            "InvalidArgument",
            "NotFound",
            "InternalServerError",
            "info__Input",
            "TaskStatusResponse",
        ):
            del schemas[name]
    schemas.update(component_schemas(model, limits))
    paths = {path: item for path, item in spec.get("paths", {}).items() if path not in OWN_PATHS}
    paths.update(service_paths())
    spec["paths"] = paths
    return spec


def component_schemas(model: StageDiff, limits: RequestLimits) -> dict[str, Any]:
    config = model.config
    stage, window = config.effective_stage_length, config.window
    channels = list(model.metadata["channels"])
    time_column = model.metadata.get("time_column")
    frequency = frequency_of(model)
    time_schema = time_value_schema(model)
    largest = limits.max_length - limits.max_length % stage
    request = {
        "type": "object",
        "additionalProperties": False,
        "description": (
            "Every field is optional; `{}` asks for every default. Beyond what the schema says: n_samples * length "
            f"* {len(channels)} channels must be at most {limits.max_values:,} (max_values), and n_samples * length * "
            f"{len(channels)} * steps at most {limits.max_cost:,} (max_cost, the budget of work); give start or "
            "prefix, not both; the timestamps must end by the year 9999; known has one record per step (length "
            "records), each with the same columns."
        ),
        "properties": {
            "n_samples": {
                "type": "integer",
                "minimum": 1,
                "maximum": limits.max_samples,
                "default": 1,
                "description": "How many series.",
            },
            "length": nullable(
                {
                    "type": "integer",
                    "minimum": stage,
                    "maximum": largest,
                    "multipleOf": stage,
                    "description": f"Steps per series, a multiple of the stage length {stage}. Default: "
                    f"the training window, {window}.",
                }
            ),
            "seed": nullable(
                {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_SEED,
                    "description": "The same seed and fields give the same series. Default: a random "
                    "seed, returned in the provenance.",
                }
            ),
            "sampler": nullable(
                {
                    "type": "string",
                    "enum": list(SAMPLERS),
                    "description": "Default: the model's own (see sampling in /info).",
                }
            ),
            "steps": nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": config.diffusion_steps,
                    "description": "Network evaluations per chunk. Default: every diffusion step for ddpm, "
                    "else the model's sampling steps.",
                }
            ),
            "start": nullable(
                {
                    **time_schema,
                    "description": "Timestamp of the first step. Default: right after the "
                    "training data, or after the prefix.",
                }
            ),
            "prefix": nullable(
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": most_prefix_records(model, limits),
                    "description": (
                        "A real history to continue, oldest first"
                        + ("" if frequency is None else f", {frequency} apart (the model's frequency)")
                        + f"; each value within {PREFIX_RANGES} training ranges of its channel's training range."
                    ),
                    "items": {"$ref": REF.format("PrefixRecord")},
                }
            ),
            "known": nullable(
                {
                    "type": "array",
                    "minItems": stage,
                    "maxItems": largest,
                    "description": (
                        "Values known in advance: one record per step of the series (length records; without "
                        "length, their number is the length), each with the same columns: some of the channels "
                        f"{channels}, not all"
                        + (
                            f", and optionally the time column {time_column!r} (the series' timestamps, from start "
                            "if given, right after the prefix if there is one)"
                            if time_column
                            else ""
                        )
                        + f"; each value within {PREFIX_RANGES} training ranges of its channel's training range. The "
                        "other channels are generated to fit; the known ones come back exactly as sent."
                    ),
                    "items": {"$ref": REF.format("KnownRecord")},
                }
            ),
            "format": {"type": "string", "enum": list(FORMATS), "default": "json"},
        },
    }
    impute = {
        "type": "object",
        "additionalProperties": False,
        "required": ["records"],
        "description": (
            f"Beyond what the schema says: n_samples * records * {len(channels)} channels must be at most "
            f"{limits.max_values:,} (max_values), and n_samples * records * {len(channels)} * steps at most "
            f"{limits.max_cost:,} (max_cost); every record has the same columns, the first record is complete, not "
            "every value is missing, the timestamps end by the year 9999."
        ),
        "properties": {
            "records": {
                "type": "array",
                "minItems": 1,
                "maxItems": limits.max_length,
                "description": (
                    "The series to fill, oldest first, one record per step"
                    + ("" if frequency is None else f", {frequency} apart (the model's frequency)")
                    + ": every channel, null where a value is missing"
                    + (
                        f", and optionally the time column {time_column!r} (without it the series start right "
                        "after the training data)"
                        if time_column
                        else ""
                    )
                    + f"; the first record complete; each value within {PREFIX_RANGES} training ranges of its "
                    "channel's training range. Every value sent comes back unchanged."
                ),
                "items": {"$ref": REF.format("ImputeRecord")},
            },
            "n_samples": copy.deepcopy(request["properties"]["n_samples"])
            | {"description": "How many draws of the filled series."},
            "seed": nullable(
                request["properties"]["seed"]["anyOf"][0]
                | {
                    "description": "The same seed and fields give the same draws. Default: a random seed, returned in "
                    "the provenance."
                }
            ),
            "sampler": copy.deepcopy(request["properties"]["sampler"]),
            "steps": copy.deepcopy(request["properties"]["steps"]),
            "format": {"type": "string", "enum": list(FORMATS), "default": "json"},
        },
    }
    stream_request = copy.deepcopy(request)
    stream_request["properties"]["format"]["enum"] = list(STREAM_FORMATS)
    record_properties = {
        column: time_schema if column == time_column else {"type": "number"} for column in prefix_columns(model)
    }
    gap_properties = {
        column: time_schema if column == time_column else {"type": ["number", "null"]}
        for column in prefix_columns(model)
    }
    series_time = time_column or "step"
    record = {
        "type": "object",
        "additionalProperties": False,
        "required": ["sample", series_time, *channels],
        "properties": {
            "sample": {"type": "integer", "minimum": 0},
            series_time: time_schema if time_column else {"type": "integer"},
            **{channel: {"type": "number"} for channel in channels},
        },
        "description": "One step of one series: its sample number, timestamp and channels, in data units.",
    }
    text = {"type": "string"}
    return {
        "GenerateRequest": request,
        "StreamRequest": stream_request,
        "PrefixRecord": {
            "type": "object",
            "additionalProperties": False,
            "required": list(record_properties),
            "properties": record_properties,
        },
        "KnownRecord": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": record_properties,
            "description": "One step of known values: some channels (the same in every record), optionally the "
            "time column.",
        },
        "ImputeRequest": impute,
        "ImputeRecord": {
            "type": "object",
            "additionalProperties": False,
            "required": channels,
            "properties": gap_properties,
            "description": "One step of the series to fill: every channel, null where missing; optionally the time "
            "column.",
        },
        "Record": record,
        "Provenance": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "model",
                "model_version",
                "seed",
                "seed_chosen",
                "steps",
                "sampler",
                "n_samples",
                "length",
                "start",
                "prefix_rows",
            ],
            "properties": {
                "model": text,
                "model_version": text,
                "registered_model": nullable(text),
                "mlflow_run_id": nullable(text),
                "seed": {"type": "integer"},
                "seed_chosen": {"type": "boolean"},
                "steps": {"type": "integer"},
                "sampler": {"type": "string", "enum": list(SAMPLERS)},
                "n_samples": {"type": "integer"},
                "length": {"type": "integer"},
                "start": time_schema,
                "prefix_rows": {"type": "integer", "minimum": 0},
            },
        },
        "GenerateResponse": {
            "type": "object",
            "additionalProperties": False,
            "required": ["provenance", "columns", "records"],
            "properties": {
                "provenance": {"$ref": REF.format("Provenance")},
                "columns": {"type": "array", "items": text},
                "records": {"type": "array", "items": {"$ref": REF.format("Record")}},
            },
        },
        "Info": {
            "type": "object",
            "required": [
                "model",
                "data",
                "window",
                "stage_length",
                "diffusion_steps",
                "conditioning",
                "sampling",
                "metrics",
                "limits",
                "serving",
            ],
            "properties": {
                "window": {"type": "integer"},
                "stage_length": {"type": "integer"},
                "diffusion_steps": {"type": "integer"},
                "conditioning": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "The share of training windows that had known values: above 0 the model was "
                    "trained to fit known values and gaps (known, /impute); at 0 it still takes them, by "
                    "replacement alone.",
                },
                "limits": {
                    "type": "object",
                    "required": [*RequestLimits().to_dict(), "max_body_bytes"],
                    "additionalProperties": {"type": "integer"},
                },
            },
            "description": "The model, its data and scores, the request limits and the service's state.",
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {"type": "string", "description": "The problem and its fix."},
                "detail": {
                    "type": "array",
                    "description": "The problems the schema found (pydantic's errors).",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                            "msg": text,
                            "type": text,
                        },
                    },
                },
            },
        },
    }


def time_value_schema(model: StageDiff) -> dict[str, Any]:
    """A timestamp on the model's time axis: ISO 8601 text for dates, a number on a numeric axis, else a step."""
    if model.metadata.get("time_column") is None or frequency_of(model) is None:
        return {"type": "integer", "minimum": -MAX_STEP, "maximum": MAX_STEP}
    if isinstance(frequency_of(model), (int, float)):
        return {"type": "number"}
    return {"type": "string", "description": f"ISO 8601, e.g. {model.metadata.get('last_time')!r}"}


def errors(*statuses: str, fault: bool = False) -> dict[str, Any]:
    described = {**{status: ERRORS[status] for status in statuses}, **(MODEL_FAULT if fault else {})}
    return {
        status: {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format("Error")}}}}
        for status, description in described.items()
    }


def headers(*names: str) -> dict[str, Any]:
    return {HEADER_PREFIX + name: {"schema": {"type": "string"}, "required": True} for name in names}


def body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(schema)}}}}


def service_paths() -> dict[str, Any]:
    tags = ["Service APIs"]
    provenance = ("Model", "Seed", "Steps", "Sampler", "N-Samples", "Length", "Start", "Prefix-Rows")
    generate = {
        "post": {
            "operationId": "generate",
            "tags": tags,
            "summary": "Synthetic series: JSON records with provenance, CSV or parquet.",
            "requestBody": body("GenerateRequest"),
            "responses": {
                "200": {
                    "description": "The series; the provenance is also in the X-StageDiff-* headers.",
                    "headers": headers(*provenance),
                    "content": {
                        MEDIA_TYPES["json"]: {"schema": {"$ref": REF.format("GenerateResponse")}},
                        MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                        MEDIA_TYPES["parquet"]: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **errors("400", "413", "415", "429", "504", fault=True),
            },
        },
    }
    stream = {
        "post": {
            "operationId": "generate_stream",
            "tags": tags,
            "summary": "Like /generate, sent piece by piece as the series is denoised: one JSON record per line, or "
            "CSV. A client that disconnects stops the sampling.",
            "requestBody": body("StreamRequest"),
            "responses": {
                "200": {
                    "description": "The records, chunk by chunk; X-StageDiff-Rows says how many a complete stream has.",
                    "headers": headers(*provenance, "Rows"),
                    "content": {
                        STREAM_MEDIA_TYPES["json"]: {"schema": {"$ref": REF.format("Record")}},
                        STREAM_MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
                    },
                },
                **errors("400", "413", "415", "429", "504", fault=True),
            },
        },
    }
    info_answer = {
        "description": "The model, its data and scores, the request limits and the service's state.",
        "content": {"application/json": {"schema": {"$ref": REF.format("Info")}}},
    }
    info = {
        "get": {
            "operationId": "info",
            "tags": tags,
            "summary": "What is served, and the limits of a request.",
            "responses": {"200": info_answer, **errors("413", "429", "504")},
        },
        "post": {
            "operationId": "info_post",
            "tags": tags,
            "summary": "The same as GET /info.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": info_answer, **errors("400", "413", "415", "429", "504")},
        },
    }
    impute = {
        "post": {
            "operationId": "impute",
            "tags": tags,
            "summary": "Series with gaps (null) filled: n_samples draws, every value sent unchanged; JSON records with "
            "provenance, CSV or parquet, as /generate answers.",
            "requestBody": body("ImputeRequest"),
            "responses": {
                "200": copy.deepcopy(generate["post"]["responses"]["200"])
                | {"description": "The draws (sample 0 .. n_samples - 1); the provenance is also in the headers."},
                **errors("400", "413", "415", "429", "504", fault=True),
            },
        },
    }
    return {"/generate": generate, "/generate_stream": stream, "/impute": impute, "/info": info}
