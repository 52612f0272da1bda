"""The one typed, validated configuration of a Stage-Diff generator.

Every hyperparameter (model, diffusion, training) lives in :class:`StageDiffConfig`. It is frozen,
validated once on construction, round-trips through JSON/YAML and is saved beside the weights.
Unknown keys and wrong types are errors (:class:`stagediff.errors.ConfigError`), never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stagediff.errors import ConfigError
from stagediff.recipe import WINDOW_FIELDS, preset, stage_length_for, window_settings

SAMPLERS = ("ddpm", "ddim")
SCHEDULES = ("cosine", "linear")
MISSING_POLICIES = ("error", "interpolate")

RETIRED: dict[str, Any] = {"channel_embedding": False, "channel_attention": False, "detail_basis": False,
                           "loss": "mse", "loss_weighting": "uniform", "fourier_loss_weight": 0.0}
"""Switches of StageDiffConfig that lost their experiments and were removed, with the value that is what stagediff
does now (their old default). A configuration that holds one at that value (every model saved before) loads without
it; any other value is a ConfigError (results/decisions.md, "Retired switches")."""
RETIRED_AFTER = "732c4aa"
"""The last commit that has the retired switches, to reproduce their results."""


def _known_keywords(kind: type) -> type:
    """Make a configuration dataclass refuse unknown keyword arguments with a :class:`ConfigError` (instead of
    Python's TypeError), and drop the retired switches of StageDiffConfig at their old values (RETIRED): every way
    of building a configuration goes through here."""
    generated = kind.__init__

    @functools.wraps(generated)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kind is StageDiffConfig:
            kwargs = _without_retired(kwargs)
        _reject_unknown(kind, kwargs)
        generated(self, *args, **kwargs)

    kind.__init__ = __init__
    return kind


@_known_keywords
@dataclass(frozen=True)
class StageDiffConfig:
    """All hyperparameters of Stage-Diff (arXiv 2508.21330) and of its training and sampling.

    Symbols of the paper: L = ``window``, L_sta = ``stage_length`` (M = L / L_sta stages),
    L_patch = ``patch_length``, L_win = ``patch_stride``, S = ``len(pool_kernels)`` scales,
    L_conv = ``fusion_kernel``. Choices beyond the paper are documented in docs/design.md.
    """

    # --- data -------------------------------------------------------------------------------
    window: int = 256
    """Training window length L (time steps)."""
    channels: int | None = None
    """Number of channels D; None means "take it from the data at fit time"."""
    validation_fraction: float = 0.1
    """Chronological share of the series held out for the validation loss."""
    missing: str = "error"
    """What to do with NaN/inf in the data: "error" or "interpolate" (linear in time)."""

    # --- model (paper section 3) ------------------------------------------------------------
    stage_length: int | None = None
    """L_sta; the window must be a multiple of it. None: follows the window (stagediff.recipe)."""
    context: int | None = None
    """Steps of each neighbouring stage's input a stage also sees (0 = the paper's literal reading).
    Fixes the seam jumps of the literal reading (docs/design.md). None: follows the stage length."""
    skip_parametrization: bool = True
    """x_0 = c_skip(k) x_k + c_out(k) F(x_k, k) (Karras et al. 2022) instead of x_0 = F(x_k, k), with the x_0
    MSE weighted by 1 / c_out(k)^2: the input passes through where noise is low, so the network need not
    reproduce fine detail and samples keep the data's texture (beyond the paper)."""
    sigma_data: float = 0.5
    """s of the skip parametrization: the assumed standard deviation of the part of the data the input may carry
    through (Karras et al. use the data's; a smaller s passes the input through only once the noise is below s)."""
    seam_blend: bool = True
    """Each stage also predicts its 2 x context neighbouring steps, and overlapping predictions are
    overlap-added with linear ramps (beyond the paper; needs 2 * context <= stage_length)."""
    input_skip: bool = True
    """Every decomposition layer also sees the noisy stage itself, not only the previous layer's residual
    (beyond the paper; keeps fine detail that an early layer's smooth output would drop, docs/design.md)."""
    patch_length: int | None = None
    """L_patch; None: follows the stage length."""
    patch_stride: int | None = None
    """L_win; None: follows the stage length."""
    pool_kernels: tuple[int, ...] | None = None
    """AvgPool kernel per decomposition scale, coarse to fine; a final 1 keeps the finest detail
    (fixes the over-smoothing of the literal reading). None: follows the stage length."""
    d_model: int | None = None
    """Width of the stage transformers; None: 64 from window 128 on, else 32."""
    heads: int = 1
    encoder_layers: int = 1
    decoder_layers: int = 1
    feedforward: int | None = None
    """Hidden size of the feed-forward blocks; None: twice d_model."""
    dropout: float = 0.0
    fusion_kernel: int = 5
    """L_conv of the D x L_conv channel-fusion convolution."""
    channel_independent: bool | None = None
    """True: each channel is one sequence of the shared network, channels meet in the fusion between stages (the
    paper); False: channels modelled jointly inside a stage (the paper's "w/o CI"), which keeps the relations of
    channels that move together. None: chosen from the training split at fit time (stagediff.recipe)."""
    stage_attention: bool = False
    """One attention block after each scale's stage encoder in which every stage's patch tokens attend to those of
    the stages fewer than window / stage_length away (a learned bias per stage offset, so longer chunks see the same
    offsets), so a stage knows more of the window than its neighbour's trend and context (beyond the paper, whose
    stages pass on only the previous stage's fused trend). Off by default; the presets etth1-256 and stock-256 set
    it (why: results/decisions.md, "The default recipe")."""
    channel_fusion: bool = True
    """False is the "w/o CD" ablation: no fusion convolution, history stays per channel."""
    staged: bool = True
    """False is the "w/o Stage" ablation: one global stage (stage_length = window) with a
    multi-channel convolution inside each decomposition layer."""

    # --- diffusion --------------------------------------------------------------------------
    diffusion_steps: int = 200
    schedule: str = "cosine"
    sampler: str = "ddim"
    """The reverse-diffusion sampler: "ddpm" (ancestral, every diffusion step unless asked for fewer) or "ddim"
    (with ddim_eta). The default, DDIM with eta 1 at 20 steps, is ancestral sampling on 20 evenly spaced steps
    (why: results/decisions.md, "The default sampler")."""
    sampling_steps: int = 20
    """Network evaluations per chunk of every sampler but "ddpm"."""
    ddim_eta: float = 1.0
    """DDIM's noise: 0 deterministic, 1 ancestral (the DDPM posterior on the sampler's steps)."""
    range_margin: float | None = None
    """How far samples may leave the training split's range, as a share of each channel's range on either side
    (0: never beyond it). None: chosen from the training split at fit time (how far the series went beyond its own
    earlier range, between 5 % and 50 %; stagediff.recipe)."""

    # --- training ---------------------------------------------------------------------------
    batch_size: int = 64
    max_steps: int = 2000
    max_minutes: float | None = None
    """A wall-clock training budget in minutes: training first times a few steps, then plans max_steps (and fits
    warmup_steps) to the budget. The saved configuration holds the planned max_steps and max_minutes None, so
    training again with it reaches the same weights. None: train exactly max_steps."""
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    checkpoint_every: int = 250
    seed: int = 0

    # ----------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        _check_types(self)
        given = {name: getattr(self, name) for name in WINDOW_FIELDS}
        _require(isinstance(self.window, int) and self.window >= 1, f"window must be at least 1, got {self.window}")
        chosen = window_settings(self.window, given) if self.staged or given["stage_length"] is not None else \
            _unstaged_settings(self.window, given)
        for name, value in chosen.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_automatic", frozenset(chosen))
        _check_values(self)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> StageDiffConfig:
        """A named preset (``stagediff.recipe.PRESETS``: the benchmark cells that differ from the default recipe),
        with ``changes`` on top."""
        return cls(**{**preset(name), **changes})

    @property
    def automatic(self) -> frozenset[str]:
        """The fields this configuration chose from its window (left None by whoever made it)."""
        return self._automatic  # type: ignore[attr-defined]

    @property
    def effective_stage_length(self) -> int:
        """L_sta actually used: the whole window when ``staged`` is False."""
        return self.stage_length if self.staged else self.window

    @property
    def stages(self) -> int:
        """M, the number of stages per training window."""
        return self.window // self.effective_stage_length

    @property
    def effective_context(self) -> int:
        return self.context if self.staged else 0

    def replace(self, **changes: Any) -> StageDiffConfig:
        """A copy with some fields changed (validated like a new config)."""
        reset = {name: None for name in self.automatic if name not in changes}  # they follow the new window again
        return dataclasses.replace(self, **reset, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["pool_kernels"] = list(self.pool_kernels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageDiffConfig:
        """Fields by name; a ``preset`` key starts from that preset (:meth:`preset`) instead of the defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"a configuration must be a mapping of field names to values, got {type(data).__name__}")
        values = dict(data)
        name = values.pop("preset", None)
        if isinstance(values.get("pool_kernels"), list):
            values["pool_kernels"] = tuple(values["pool_kernels"])
        if name is not None:
            if not isinstance(name, str):
                raise ConfigError(f"preset must be a preset's name, got {name!r}")
            return cls.preset(name, **values)
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> StageDiffConfig:
        """Read a YAML or JSON file whose top level is a mapping of field names."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        return cls.from_dict(read_mapping(path))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def field_names(kind: type | None = None) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind or StageDiffConfig))


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML/JSON file (empty file: {})."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {path} is not valid YAML/JSON: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def _without_retired(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the retired switches that hold their old value; one set otherwise is a ConfigError."""
    kept = {}
    for key, value in data.items():
        if key not in RETIRED:
            kept[key] = value
        elif value != RETIRED[key] or isinstance(value, bool) != isinstance(RETIRED[key], bool):
            raise ConfigError(f"{key} was retired: only {key}: {json.dumps(RETIRED[key])} (what stagediff does now) is "
                              f"accepted, got {value!r}; commit {RETIRED_AFTER} still has the switch "
                              f"(results/decisions.md, \"Retired switches\")")
    return kept


def _reject_unknown(kind: type, data: dict[str, Any], where: str = "configuration") -> None:
    names = field_names(kind)
    unknown = sorted(set(data) - set(names))
    if unknown:
        guesses = {key: difflib.get_close_matches(key, names, 1) for key in unknown}
        hint = "".join(f"; did you mean {close[0]!r} for {key!r}?" for key, close in guesses.items() if close)
        raise ConfigError(f"unknown {where} key(s) {unknown}{hint} Valid keys are: {', '.join(names)}")


def _check_types(config: Any, where: str = "configuration key") -> None:
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{where} {f.name!r} must be {_describe(hints[f.name])}, got {value!r} ({type(value).__name__})"
            )


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return "None" if hint is type(None) else f"a {hint.__name__}"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _unstaged_settings(window: int, given: dict[str, Any]) -> dict[str, Any]:
    """Window-dependent values without stages ("w/o Stage"): those of the window's stage length where it has one,
    else of one stage as long as the window."""
    try:
        stage_length_for(window)
    except ConfigError:
        return window_settings(window, {**given, "stage_length": window}) | {"stage_length": window}
    return window_settings(window, given)


def _check_values(c: StageDiffConfig) -> None:
    for name in ("window", "stage_length", "patch_length", "patch_stride", "d_model", "heads", "encoder_layers",
                 "decoder_layers", "feedforward", "fusion_kernel", "diffusion_steps", "sampling_steps",
                 "batch_size", "max_steps", "checkpoint_every"):
        _require(getattr(c, name) >= 1, f"{name} must be at least 1, got {getattr(c, name)}")
    for name in ("context", "warmup_steps"):
        _require(getattr(c, name) >= 0, f"{name} must be non-negative, got {getattr(c, name)}")
    _require(c.channels is None or c.channels >= 1, f"channels must be None or at least 1, got {c.channels}")
    _require(0.0 <= c.validation_fraction < 1.0, f"validation_fraction must be in [0, 1), got {c.validation_fraction}")
    _require(c.sigma_data > 0, f"sigma_data must be positive, got {c.sigma_data}")
    _require(c.missing in MISSING_POLICIES, f"missing must be one of {MISSING_POLICIES}, got {c.missing!r}")
    _require(c.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {c.sampler!r}")
    _require(c.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {c.schedule!r}")
    _require(c.sampling_steps <= c.diffusion_steps,
             f"sampling_steps ({c.sampling_steps}) cannot exceed diffusion_steps ({c.diffusion_steps})")
    _require(0.0 <= c.ddim_eta <= 1.0, f"ddim_eta must be in [0, 1], got {c.ddim_eta}")
    _require(0.0 <= c.dropout < 1.0, f"dropout must be in [0, 1), got {c.dropout}")
    _require(0.0 < c.ema_decay < 1.0, f"ema_decay must be in (0, 1), got {c.ema_decay}")
    _require(c.range_margin is None or 0.0 <= c.range_margin <= 10.0,
             f"range_margin must be in [0, 10] (a share of the training range) or None, got {c.range_margin}")
    _require(c.max_minutes is None or c.max_minutes > 0, f"max_minutes must be positive or None, got {c.max_minutes}")
    _require(c.learning_rate > 0, f"learning_rate must be positive, got {c.learning_rate}")
    _require(c.weight_decay >= 0, f"weight_decay must be non-negative, got {c.weight_decay}")
    _require(c.grad_clip > 0, f"grad_clip must be positive, got {c.grad_clip}")
    _require(c.d_model % c.heads == 0, f"d_model ({c.d_model}) must be divisible by heads ({c.heads})")
    _require(len(c.pool_kernels) >= 1, "pool_kernels needs at least one kernel (one per decomposition scale)")
    _require(all(k >= 1 and k % 2 == 1 for k in c.pool_kernels),
             f"pool_kernels must be odd positive integers (length-preserving AvgPool), got {list(c.pool_kernels)}")
    _require(c.fusion_kernel % 2 == 1, f"fusion_kernel must be odd (length-preserving convolution), got {c.fusion_kernel}")
    if c.staged and c.window % c.stage_length != 0:
        lower = max(c.stage_length, c.window // c.stage_length * c.stage_length)
        raise ConfigError(
            f"window {c.window} is not divisible into stages of stage_length {c.stage_length}: choose a window that is a "
            f"multiple of stage_length (e.g. {lower} or {lower + c.stage_length}) or another stage_length"
        )
    stage = c.effective_stage_length
    _require(c.effective_context <= stage, f"context ({c.context}) cannot exceed stage_length ({stage})")
    _require(not c.seam_blend or 2 * c.effective_context <= stage,
             f"seam_blend needs 2 * context ({2 * c.context}) <= stage_length ({stage}); lower context or set seam_blend false")
    span = stage + 2 * c.effective_context
    _require(c.patch_length <= stage, f"patch_length ({c.patch_length}) cannot exceed stage_length ({stage})")
    for length, what in ((span, "stage_length + 2 * context"), (stage, "stage_length")):
        _require((length - c.patch_length) % c.patch_stride == 0,
                 f"patches must tile the stage exactly: ({what} = {length}) - patch_length ({c.patch_length}) must be "
                 f"a multiple of patch_stride ({c.patch_stride})")


# ----------------------------------------------------------------------------------------------- params.yaml
# The pipeline's parameters (dvc.yaml reads them per key): one section per concern, each typed and validated
# like StageDiffConfig; ``model`` *is* a StageDiffConfig.


@_known_keywords
@dataclass(frozen=True)
class DataParams:
    """Where the data comes from and what the validate stage demands of it."""

    source: str = "synthetic"
    """A built-in name (synthetic, etth1, stock, exchange: the benchmark files are read from the data directory,
    STAGEDIFF_DATA_DIR), a path to a .csv/.parquet file, or an http(s) URL of one (downloaded at ingest)."""
    time_column: str | None = None
    """The time column; None: the built-in's own, or no time column for a file."""
    columns: tuple[str, ...] | None = None
    """The channel columns to model, in this order; None: every column but the time column."""
    frequency: str | None = None
    """The declared step between rows (a pandas offset such as "1h" or "1D"); None: the data's most common step,
    and every step must equal it."""
    max_missing_fraction: float = 0.0
    """Largest share of missing values (NaN) allowed per channel; above 0 needs model.missing: interpolate."""

    def __post_init__(self) -> None:
        _check_types(self, "data key")
        _require(bool(self.source), "data.source must name a dataset, a file or a URL")
        _require(0.0 <= self.max_missing_fraction < 1.0,
                 f"data.max_missing_fraction must be in [0, 1), got {self.max_missing_fraction}")


@_known_keywords
@dataclass(frozen=True)
class EvaluateParams:
    """The evaluate stage: held-out protocol (docs/evaluation.md)."""

    windows: int = 100
    """Real held-out windows scored (as many synthetic ones are sampled)."""
    repeats: int = 1
    fast: bool = True
    """Shorter judge training (metrics.evaluate fast mode); False for publishable numbers."""
    seed: int = 0
    steps: int | None = None
    """Sampler steps for the samples; None: the model's own (stagediff.diffusion.sampling_choice)."""

    def __post_init__(self) -> None:
        _check_types(self, "evaluate key")
        _require(self.windows >= 10, f"evaluate.windows must be at least 10, got {self.windows}")
        _require(self.repeats >= 1, f"evaluate.repeats must be at least 1, got {self.repeats}")


@_known_keywords
@dataclass(frozen=True)
class RequestLimits:
    """How much one request to the service may ask for: the one place for these limits. The package stage stores
    them in the model's metadata under ``limits`` (from params.yaml's ``package`` section); absent keys take these
    defaults.

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
        _check_types(self, "request limit")
        for f in dataclasses.fields(RequestLimits):
            _require(getattr(self, f.name) >= 1, f"request limit {f.name} must be at least 1, got {getattr(self, f.name)}")

    @classmethod
    def from_dict(cls, limits: dict[str, Any] | None) -> RequestLimits:
        """The limits a model's metadata names; absent keys take the defaults."""
        limits = dict(limits or {})
        _reject_unknown(cls, limits, "request limit")
        return cls(**limits)

    def limits(self) -> RequestLimits:
        """Only the request limits (of a PackageParams, without its name)."""
        return RequestLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RequestLimits)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def longest(self, n_samples: int, channels: int, steps: int, stage: int) -> int:
        """The longest length (a multiple of ``stage``) within every limit for this many series and steps; 0 if
        not even one stage fits."""
        longest = min(self.max_length, self.max_values // (n_samples * channels),
                      self.max_cost // (n_samples * channels * steps))
        return longest - longest % stage


@_known_keywords
@dataclass(frozen=True)
class PackageParams(RequestLimits):
    """The package stage: the model's name and the request limits the service enforces (RequestLimits)."""

    name: str = "stagediff"
    """Name of the MLflow registered model and of the BentoML model and service."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_types(self, "package key")
        _require(self.name.replace("_", "").replace("-", "").isalnum() and self.name == self.name.lower(),
                 f"package.name must be lower-case letters, digits, '-' or '_', got {self.name!r}")


@_known_keywords
@dataclass(frozen=True)
class RetrainParams:
    """Scheduled retraining (flows/retrain.py): when it runs and when a new model (challenger) replaces the
    serving one (champion)."""

    cron: str = "0 3 * * 1"
    """When the deployment runs (cron syntax, in UTC); default Mondays 03:00 UTC."""
    metrics: tuple[str, ...] = ("detection", "texture", "predictive")
    """Held-out metrics (lower is better) compared on the same data; each must pass the margin (the detection AUC
    and the texture error see what the noisy GRU discriminative score misses, docs/evaluation.md)."""
    margin: float = 0.05
    """The challenger may be worse than the champion by at most this fraction on each metric."""
    alias: str = "champion"
    """MLflow registry alias of the serving model version."""

    def __post_init__(self) -> None:
        _check_types(self, "retrain key")
        _require(len(self.cron.split()) == 5, f"retrain.cron must have 5 fields (minute hour day month weekday), "
                                              f"got {self.cron!r}")
        _require(len(self.metrics) >= 1, "retrain.metrics needs at least one metric")
        _require(0.0 <= self.margin < 1.0, f"retrain.margin must be in [0, 1), got {self.margin}")
        _require(self.alias.replace("_", "").replace("-", "").isalnum(),
                 f"retrain.alias must be letters, digits, '-' or '_', got {self.alias!r}")


@_known_keywords
@dataclass(frozen=True)
class PipelineParams:
    """params.yaml: the sections data, model (a StageDiffConfig), evaluate, package and retrain."""

    data: DataParams = dataclasses.field(default_factory=DataParams)
    model: StageDiffConfig = dataclasses.field(default_factory=StageDiffConfig)
    evaluate: EvaluateParams = dataclasses.field(default_factory=EvaluateParams)
    package: PackageParams = dataclasses.field(default_factory=PackageParams)
    retrain: RetrainParams = dataclasses.field(default_factory=RetrainParams)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineParams:
        _reject_unknown(cls, data, "params.yaml section")
        sections = {}
        for f in dataclasses.fields(cls):
            section = data.get(f.name) or {}
            if not isinstance(section, dict):
                raise ConfigError(f"params.yaml section {f.name!r} must be a mapping, got {section!r}")
            kind = typing.get_type_hints(cls)[f.name]
            if kind is StageDiffConfig:
                sections[f.name] = StageDiffConfig.from_dict(section)
            else:
                _reject_unknown(kind, section, f"{f.name}")
                sections[f.name] = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
        return cls(**sections)

    @classmethod
    def from_file(cls, path: str | Path = "params.yaml") -> PipelineParams:
        return cls.from_dict(read_mapping(path))

    def to_dict(self) -> dict[str, Any]:
        sections = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: value.to_dict() if name == "model" else
                {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(value).items()}
                for name, value in sections.items()}
