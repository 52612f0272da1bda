"""What a client may ask for, and the checks that run before any work.

:class:`GenerateRequest` is the request body of ``/generate`` and ``/generate_stream``: pydantic checks
field names (unknown ones are errors) and JSON types. :func:`plan_request` then checks everything that
depends on the served model (stage length, channels, frequency, diffusion steps) and on the request
limits (:class:`RequestLimits`, which the pipeline's package stage sets), and returns a :class:`Plan` with
every default filled in. Each failure raises :class:`RequestError` with a message that names the problem and
the allowed range; the service turns it into HTTP 400. Nothing here imports bentoml, so the checks are plain
functions to test.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from stagediff import DataError, StageDiff
from stagediff.data.rules import check_finite, check_times, iso_timestamp
from stagediff.diffusion import SAMPLERS, sampling_choice
from stagediff.generator import SampleRequest, SamplingRun, decode_frequency
from stagediff.settings import check_types, known_keywords, reject_unknown, require

FORMATS = ("json", "csv", "parquet")
STREAM_FORMATS = ("json", "csv")
MAX_SEED = 2**63 - 1
RANDOM_SEEDS = 2**31
"""Seeds chosen for the client are below 2**31, so they survive JSON readers that hold numbers as doubles."""
MAX_STEP = 2**62
"""Largest step number a start may name (step numbers are int64)."""
MAX_FLOAT = float(np.finfo(np.float64).max)


JSON = "application/json"
EXAMPLE_BODY = '{"n_samples": 2, "length": 256}'
IMPUTE_EXAMPLE_BODY = '{"records": [{"date": "2020-12-31T00:00:00", "load": 80.2, "price": null}, ...], "n_samples": 2}'


@known_keywords
@dataclass(frozen=True)
class RequestLimits:
    """How much one request to the service may ask for: the one place for these limits. The package stage stores
    them in the model's metadata under ``limits`` (from params.yaml's ``package`` section, flows.params.PackageParams);
    absent keys take these defaults.

    max_length: steps per series; max_samples: series per request (one network evaluation works on at most
    max_samples series of 4 training windows, which bounds how long a request keeps the CPU before another gets
    its turn, and how late a cancellation takes effect); max_values: n_samples * length * channels, the memory
    bound (1,000,000 values are 8 MB as float64 and about 40 MB as JSON); max_cost: the budget of work,
    n_samples * length * channels * steps (10,000,000 is one series of 100,000 steps of 5 channels at 20 steps)."""

    max_length: int = 100_000
    max_samples: int = 16
    max_values: int = 1_000_000
    max_cost: int = 10_000_000

    def __post_init__(self) -> None:
        check_types(self, "request limit")
        for f in dataclasses.fields(RequestLimits):
            value = getattr(self, f.name)
            require(value >= 1, f"request limit {f.name} must be at least 1, got {value}")

    @classmethod
    def from_dict(cls, limits: dict[str, Any] | None) -> RequestLimits:
        """The limits a model's metadata names; absent keys take the defaults."""
        limits = dict(limits or {})
        reject_unknown(cls, limits, "request limit")
        return cls(**limits)

    def limits(self) -> RequestLimits:
        """Only the request limits (of a PackageParams, without its name)."""
        return RequestLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RequestLimits)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def longest(self, n_samples: int, channels: int, steps: int, stage: int) -> int:
        """The longest length (a multiple of ``stage``) within every limit for this many series and steps; 0 if
        not even one stage fits."""
        longest = min(
            self.max_length, self.max_values // (n_samples * channels), self.max_cost // (n_samples * channels * steps)
        )
        return longest - longest % stage


class RequestError(ValueError):
    """A request the service refuses before any work; the message names the problem and the fix."""


class BodyError(RequestError):
    """A request body that is not one JSON object of the endpoint's schema; ``status`` is the HTTP status (400, or
    415 for another content type), ``detail`` pydantic's list of problems (loc, msg, type) where there are any."""

    def __init__(self, message: str, status: int = 400, detail: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.detail = status, detail


def check_body(content_type: str | None, body: bytes, schema: type[BaseModel]) -> None:
    """The rule for the body of a POST to an endpoint: one JSON object (``{}`` for every default, where every field
    has one) that fits the endpoint's ``schema``, sent as application/json (or with no content type). Anything else
    raises :class:`BodyError` naming the problem: another content type (a form, plain text), an empty body, invalid
    JSON, JSON that is not an object, or fields that do not fit (unknown, missing, of the wrong type, out of
    range)."""
    example = getattr(schema, "example_body", EXAMPLE_BODY)
    defaults = not any(field.is_required() for field in schema.model_fields.values())
    media_type = (content_type if content_type is not None else JSON).split(";")[0].strip().lower()
    if media_type != JSON:
        raise BodyError(
            f"the request body must be a JSON object sent with content-type {JSON}, got content-type "
            f"{content_type!r}; e.g. curl -H 'content-type: {JSON}' -d '{example}'",
            415,
        )
    if not body.strip():
        raise BodyError(
            f"the request body is empty; send a JSON object: {{}} for every default, or e.g. {example}"
            if defaults
            else f"the request body is empty; send a JSON object such as {example}"
        )
    try:
        schema.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        first = problems[0]
        if first["type"] == "json_invalid":
            raise BodyError(
                f"the request body is not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')}); "
                f"send a JSON object such as {example}"
            ) from None
        if first["loc"] == ():
            raise BodyError(
                f"the request body must be a JSON object such as {example}"
                f"{' ({} for every default)' if defaults else ''}, got {json_kind(first['input'])}"
            ) from None
        raise BodyError(
            "the request body does not fit the schema (see /docs.json): "
            + "; ".join(
                f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}, got {short(problem['input'])}"
                for problem in problems
            ),
            detail=[{key: problem[key] for key in ("loc", "msg", "type")} for problem in problems],
        ) from None


def json_kind(value: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def integral(value: Any) -> Any:
    """8.0 as 8: JSON Schema counts a number without a fraction as an integer (strings and booleans stay refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(integral)]


class GenerateRequest(BaseModel):
    """Synthetic series to generate. Every field is optional; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)

    n_samples: Integer = Field(1, ge=1, description="How many series (at most the limit max_samples, see /info).")
    length: Integer | None = Field(
        None,
        ge=1,
        description="Steps per series: a multiple of the model's stage length, at most max_length; "
        "may be far longer than the training window. Default: the training window.",
    )
    seed: Integer | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Random seed; the same seed and fields give the same series. "
        "Default: a random seed, returned in the response.",
    )
    sampler: Literal[SAMPLERS] | None = Field(
        None,
        description="Reverse-diffusion sampler. Default: the model's own, the one its scores in /info were "
        "measured with.",
    )
    steps: Integer | None = Field(
        None,
        ge=1,
        description="Network evaluations per chunk, at most the model's diffusion steps. Default: "
        "every diffusion step for ddpm, else the model's sampling steps.",
    )
    start: str | int | float | None = Field(
        None,
        description="Timestamp of the first step (ISO 8601 for a model with dates, a number otherwise); a model "
        "with calendar features follows the calendar from there. Default: right after the training data, where the "
        "series continue the data's last window (unless the model keeps none), or after the prefix.",
    )
    prefix: list[dict[str, Any]] | None = Field(
        None,
        description="A real history to continue, as records with the time column and every channel, "
        "oldest first, at the model's frequency. The series start right after it.",
    )
    known: list[dict[str, Any]] | None = Field(
        None,
        description="Values known in advance (e.g. a scenario of a covariate): one record per step of the series "
        "(length records; they set the length if it is omitted), each with the same channels, some of the model's "
        "but not all, and optionally the time column (then the series start at its first timestamp). The other "
        "channels are generated to fit them; the known ones come back exactly as sent, in every sample.",
    )
    format: Literal["json", "csv", "parquet"] = Field(
        "json",
        description="json: records with provenance; csv; parquet (Arrow, provenance in the schema "
        "metadata). Streams: json (one record per line) or csv.",
    )


class ImputeRequest(BaseModel):
    """Series with gaps to fill: ``records`` is required; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)
    example_body: ClassVar[str] = IMPUTE_EXAMPLE_BODY

    records: list[dict[str, Any]] = Field(
        description="The series to fill, oldest first: one record per step (at most max_length), each with every "
        "channel, null where a value is missing, and optionally the time column (the model's frequency apart; "
        "without it the series start right after the training data). The first record must be complete."
    )
    n_samples: Integer = Field(
        1, ge=1, description="How many draws of the filled series (at most the limit max_samples, see /info)."
    )
    seed: Integer | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Random seed; the same seed and fields give the same draws. Default: a random seed, returned in "
        "the response.",
    )
    sampler: Literal[SAMPLERS] | None = Field(None, description="Reverse-diffusion sampler. Default: the model's own.")
    steps: Integer | None = Field(
        None,
        ge=1,
        description="Network evaluations per chunk, at most the model's diffusion steps. Default: every diffusion "
        "step for ddpm, else the model's sampling steps.",
    )
    format: Literal["json", "csv", "parquet"] = Field(
        "json", description="json: records with provenance; csv; parquet (Arrow, provenance in the schema metadata)."
    )


@dataclass(frozen=True)
class Plan:
    """A checked request with its defaults filled in.

    prefix: the history as a DataFrame with the time column (if the model has one) and the channels."""

    run: SamplingRun
    """What the library samples for this plan (:meth:`StageDiff.plan_sampling`), planned once: n, length, seed,
    sampler and steps."""
    seed_chosen: bool
    start: Any
    prefix: pd.DataFrame | None
    format: str

    n_samples = property(lambda self: self.run.n)
    length = property(lambda self: self.run.length)
    seed = property(lambda self: self.run.seed)
    steps = property(lambda self: self.run.steps)
    sampler = property(lambda self: self.run.sampler)

    @property
    def values(self) -> int:
        return self.n_samples * self.length


def plan_request(request: GenerateRequest, model: StageDiff, limits: RequestLimits, *, stream: bool = False) -> Plan:
    """Check ``request`` against the model and ``limits``; raise :class:`RequestError` naming the first problem (or
    the library's :class:`DataError` for a rule of its own, e.g. a value far outside the training range)."""
    config = model.config
    stage = config.effective_stage_length
    channels = list(model.metadata["channels"])
    if request.known is not None:
        check_record_count("known", request.known, limits)
    length = request.length
    if length is None:
        length = config.window if request.known is None else len(request.known)
    check_range("n_samples", request.n_samples, 1, limits.max_samples)
    largest = limits.max_length - limits.max_length % stage
    if length % stage or not stage <= length <= largest:
        raise RequestError(
            f"length must be a multiple of the stage length {stage} between {stage} and {largest}, got {length}"
            + (
                " (the number of known records: without length the series have one step per known record)"
                if request.length is None and request.known is not None
                else ""
            )
        )
    if request.known is not None and len(request.known) != length:
        raise RequestError(
            f"known has {len(request.known)} records; it needs one per step of the samples, {length} (length)"
        )
    sampler, steps = sampling_choice(config, request.sampler, request.steps)
    check_range("steps", steps, 1, config.diffusion_steps)
    check_budget(request.n_samples, length, len(channels), steps, stage, limits)
    if request.format not in (STREAM_FORMATS if stream else FORMATS):
        raise RequestError(f"format {request.format!r} cannot be streamed; a stream is one of {list(STREAM_FORMATS)}")
    if request.start is not None and request.prefix is not None:
        raise RequestError("give either start or prefix, not both: a continuation starts right after its prefix")
    seed_chosen = request.seed is None
    start = None if request.start is None else check_start(request.start, model)
    prefix = None if request.prefix is None else check_prefix(request.prefix, model, limits)
    known = None if request.known is None else check_known(request.known, model)
    seed = secrets.randbelow(RANDOM_SEEDS) if seed_chosen else request.seed
    run = model.plan_sampling(
        SampleRequest(request.n_samples, length, seed, steps, prefix, sampler, start=start, known=known)
    )  # the known values' timestamps, where they have them, set run.start
    check_time_axis(model, length, run.start, prefix)
    return Plan(run=run, seed_chosen=seed_chosen, start=run.start, prefix=prefix, format=request.format)


def plan_impute(request: ImputeRequest, model: StageDiff, limits: RequestLimits) -> Plan:
    """Check an ``/impute`` request against the model and ``limits`` as :func:`plan_request` does; the library
    (:meth:`StageDiff.known_values`) checks the rest of the records: not every value missing, the first record
    complete, values within 10 training ranges."""
    config = model.config
    channels = list(model.metadata["channels"])
    check_range("n_samples", request.n_samples, 1, limits.max_samples)
    check_record_count("records", request.records, limits)
    length = len(request.records)
    sampler, steps = sampling_choice(config, request.sampler, request.steps)
    check_range("steps", steps, 1, config.diffusion_steps)
    check_budget(request.n_samples, length, len(channels), steps, 1, limits, unit="records")
    seed_chosen = request.seed is None
    frame = read_records(request.records, model, "records", every_channel=True)
    seed = secrets.randbelow(RANDOM_SEEDS) if seed_chosen else request.seed
    run = model.plan_sampling(
        SampleRequest(request.n_samples, length, seed, steps, None, sampler, known=frame, fill=True)
    )  # the records' timestamps, where they have them, set run.start
    check_time_axis(model, length, run.start, None)
    return Plan(run=run, seed_chosen=seed_chosen, start=run.start, prefix=None, format=request.format)


def check_budget(
    n_samples: int, length: int, channels: int, steps: int, stage: int, limits: RequestLimits, unit: str = "length"
) -> None:
    """The cost model: a request holds n_samples * length * channels values (at most max_values) and costs that many
    times its steps, the network evaluations per chunk (at most max_cost). Past either, the message names the
    longest length that fits with the same n_samples and steps (``unit`` "records": the most records of /impute)."""
    values, cost = n_samples * length * channels, n_samples * length * channels * steps
    if values <= limits.max_values and cost <= limits.max_cost:
        return
    longest = limits.longest(n_samples, channels, steps, stage)
    fits = f"the length may be at most {longest}" if unit == "length" else f"at most {longest} {unit} fit"
    fix = (
        f"with n_samples={n_samples} and steps={steps} {fits}"
        if longest
        else f"with n_samples={n_samples} and steps={steps} not even one "
        + (f"stage of {stage} steps fits" if unit == "length" else f"of the {unit} fits")
    )
    if cost > limits.max_cost:
        raise RequestError(
            f"n_samples * {unit} * channels * steps = {n_samples} * {length} * {channels} * {steps} = {cost:,} exceeds "
            f"the budget of {limits.max_cost:,} per request (max_cost); {fix} (or ask for fewer samples or steps)"
        )
    raise RequestError(
        f"n_samples * {unit} * channels = {n_samples} * {length} * {channels} = {values:,} exceeds the limit of "
        f"{limits.max_values:,} values per request (max_values); {fix} (or ask for fewer samples)"
    )


def check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise RequestError(f"{name} must be an integer between {low} and {high}, got {value}")


def check_start(start: str | int | float, model: StageDiff) -> Any:
    """The first timestamp as the model's time axis needs it: a Timestamp for dates, a number otherwise."""
    time_column, frequency = model.metadata.get("time_column"), frequency_of(model)
    if time_column is None or frequency is None:
        if isinstance(start, str) or isinstance(start, float) and not start.is_integer() or abs(start) > MAX_STEP:
            raise RequestError(
                f"start must be an integer step number between {-MAX_STEP} and {MAX_STEP} (this "
                f"model has no time column), got {start!r}"
            )
        return int(start)
    if isinstance(frequency, pd.Timedelta):
        if not isinstance(start, str):
            raise RequestError(
                f"start must be an ISO 8601 timestamp such as {model.metadata['last_time']!r}, got {start!r}"
            )
        try:  # strictly ISO 8601, the one rule of stagediff.data.rules.read_times(iso=True)
            return iso_timestamp(start)
        except (ValueError, TypeError, OverflowError) as error:
            raise RequestError(
                f"start {start!r} is not an ISO 8601 timestamp (e.g. {model.metadata['last_time']!r}): {error}"
            ) from None
    if isinstance(start, str) or not math.isfinite(start):
        raise RequestError(f"start must be a finite number on the model's time axis {time_column!r}, got {start!r}")
    return start


def check_time_axis(model: StageDiff, length: int, start: Any, prefix: pd.DataFrame | None) -> None:
    """The series' timestamps must exist: e.g. 100,000 hours after a start in the year 2250 do not."""
    try:
        times = model.sample_times(length, start, prefix)[1]  # names the year-9999 limit (a DataError)
    except DataError as error:
        raise RequestError(str(error)) from None
    except (ValueError, OverflowError, ArithmeticError) as error:
        raise RequestError(
            f"the {length} timestamps from start {start} cannot be represented ({error}); "
            "choose an earlier start or a shorter length"
        ) from None
    if len(times) != length or pd.isna(times[-1]):
        raise RequestError(
            f"the {length} timestamps from start {start} cannot be represented; choose an earlier "
            "start or a shorter length"
        )


def prefix_columns(model: StageDiff) -> list[str]:
    """The columns of every prefix record: the time column (if the model has one), then the channels."""
    time_column = model.metadata.get("time_column")
    return ([time_column] if time_column else []) + list(model.metadata["channels"])


def most_prefix_records(model: StageDiff, limits: RequestLimits) -> int:
    return min(limits.max_length, limits.max_values // len(prefix_columns(model)))


def check_prefix(records: list[dict[str, Any]], model: StageDiff, limits: RequestLimits) -> pd.DataFrame:
    """The prefix records as a DataFrame (time column, channels). What is the request's own is checked here: records
    there are, at most so many, each with exactly the model's columns, numbers where numbers belong. The rest are
    the library's rules (stagediff.data.rules): finite values, and times that are ISO 8601 (for a model with dates),
    strictly increasing and exactly the model's frequency apart."""
    channels = list(model.metadata["channels"])
    time_column, frequency = model.metadata.get("time_column"), frequency_of(model)
    dated = isinstance(frequency, pd.Timedelta)
    columns = prefix_columns(model)
    if not records:
        raise RequestError("prefix is empty; send at least one record, or leave prefix out")
    most = most_prefix_records(model, limits)
    if len(records) > most:
        raise RequestError(
            f"prefix has {len(records)} records; at most {most} are accepted (the model "
            f"conditions on the last {4 * model.config.window - model.config.effective_stage_length} "
            "at most)"
        )
    for row, record in enumerate(records):
        missing = [c for c in columns if c not in record]
        extra = [c for c in record if c not in columns]
        if missing or extra:
            problem = "; ".join(
                part for part in (missing and f"lacks {missing}", extra and f"has unknown {extra}") if part
            )
            raise RequestError(f"prefix record {row} {problem}: every record needs exactly the columns {columns}")
    numbers = [f"channel {c!r}" for c in channels] + ([f"{time_column!r}"] if time_column and not dated else [])
    for column, label in zip(channels + [time_column], numbers):
        for row, record in enumerate(records):
            check_number(record[column], f"prefix record {row}: {label}")
    frame = pd.DataFrame({c: np.array([r[c] for r in records], dtype=np.float64) for c in channels})
    try:
        check_finite(frame.to_numpy(), tuple(channels), "prefix", "fill them before sending")
        if time_column:
            times = pd.Series([r[time_column] for r in records], name=time_column, dtype=object if dated else None)
            frame.insert(0, time_column, check_times(times, time_column, "prefix", iso=dated, step=frequency))
    except DataError as error:
        raise RequestError(str(error)) from None
    return frame


def check_number(value: Any, label: str, null: bool = False) -> None:
    """A JSON number that float64 holds (or null where ``null``); else a :class:`RequestError` naming ``label``."""
    if value is None and null:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{label} must be a number{' or null' if null else ''}, got {short(value)}")
    if isinstance(value, int) and not -MAX_FLOAT <= value <= MAX_FLOAT:
        raise RequestError(f"{label} is {short(value)}, beyond the range of a float64 number")


def check_record_count(source: str, records: list[dict[str, Any]], limits: RequestLimits) -> None:
    """Records of known values (``source`` "known") or to impute ("records"): one per step, so at most max_length."""
    if not records:
        raise RequestError(
            f"{source} is empty; send one record per step"
            + (" of the samples, or leave known out" if source == "known" else " of the series to fill")
        )
    if len(records) > limits.max_length:
        raise RequestError(
            f"{source} has {len(records)} records; at most {limits.max_length} are accepted (max_length: one record "
            "per step)"
        )


def check_known(records: list[dict[str, Any]], model: StageDiff) -> pd.DataFrame:
    """The known records as a DataFrame (the time column if they have it, their channels): each with the same columns,
    a finite number for each of its channels. Which channels (some, not all) and how far out the values may lie are
    the library's rules (:meth:`StageDiff.known_values`)."""
    frame = read_records(records, model, "known", every_channel=False)
    channels = [c for c in frame.columns if c != model.metadata.get("time_column")]
    try:
        check_finite(
            frame[channels].to_numpy(),
            tuple(channels),
            "known",
            "a known channel needs a finite value at every step (to fill gaps, use /impute)",
        )
    except DataError as error:
        raise RequestError(str(error)) from None
    return frame


def read_records(records: list[dict[str, Any]], model: StageDiff, source: str, *, every_channel: bool) -> pd.DataFrame:
    """Records that each have the same columns: optionally the model's time column (ISO 8601 for a model with dates,
    else a number; strictly increasing, the model's frequency apart), and some channels (``every_channel``: all of
    them, null where a value is missing; else a number each) as a DataFrame in the model's column order, NaN for
    null."""
    channels = list(model.metadata["channels"])
    time_column, frequency = model.metadata.get("time_column"), frequency_of(model)
    dated = isinstance(frequency, pd.Timedelta)
    allowed = prefix_columns(model)
    record_of = "record" if every_channel else f"{source} record"
    optional_time = f" and, optionally, the time column {time_column!r}" if time_column else ""
    rule = (
        f"every record needs every channel {channels} (null where a value is missing){optional_time}"
        if every_channel
        else f"a known record has some of the channels {channels}{optional_time}"
    )
    first = [c for c in allowed if c in records[0]]
    for row, record in enumerate(records):
        extra = [c for c in record if c not in allowed]
        missing = [c for c in channels if c not in record] if every_channel else []
        if missing or extra:
            problem = "; ".join(
                part for part in (missing and f"lacks {missing}", extra and f"has unknown {extra}") if part
            )
            raise RequestError(f"{record_of} {row} {problem}: {rule}")
        if len(record) != len(first) or any(c not in record for c in first):
            raise RequestError(
                f"{record_of} {row} has the columns {[c for c in allowed if c in record]}, record 0 has {first}: "
                "every record needs the same columns"
            )
    present = [c for c in channels if c in first]
    for column in present:
        for row, record in enumerate(records):
            value = record[column]
            if value is None and not every_channel:
                raise RequestError(
                    f"known record {row}: channel {column!r} is null; a known channel needs a value at every step "
                    "(leave the channel out of known to generate it; to fill gaps, use /impute)"
                )
            check_number(value, f"{record_of} {row}: channel {column!r}", null=every_channel)
    frame = pd.DataFrame(
        {c: np.array([np.nan if r[c] is None else r[c] for r in records], dtype=np.float64) for c in present}
    )
    if time_column in first:
        if not dated:
            for row, record in enumerate(records):
                check_number(record[time_column], f"{record_of} {row}: {time_column!r}")
        times = pd.Series([r[time_column] for r in records], name=time_column, dtype=object if dated else None)
        try:
            frame.insert(0, time_column, check_times(times, time_column, source, iso=dated, step=frequency))
        except DataError as error:
            raise RequestError(str(error)) from None
    return frame


def frequency_of(model: StageDiff) -> pd.Timedelta | float | int | None:
    """The training data's step as a Timedelta or a number (None without a time column)."""
    return decode_frequency(model.metadata.get("frequency"))
