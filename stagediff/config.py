"""The one typed, validated configuration of a Stage-Diff generator.

Every hyperparameter (model, diffusion, training) lives in :class:`StageDiffConfig`. It is frozen,
validated once on construction, round-trips through JSON/YAML and is saved beside the weights.
Unknown keys and wrong types are errors (:class:`stagediff.errors.ConfigError`), never silently ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stagediff.errors import ConfigError
from stagediff.recipe import WINDOW_FIELDS, preset, stage_length_for, window_settings
from stagediff.settings import check_types, known_keywords, read_mapping, require

SAMPLERS = ("ddpm", "ddim")
SCHEDULES = ("cosine", "linear")
MISSING_POLICIES = ("error", "interpolate", "mask")

RETIRED: dict[str, Any] = {
    "channel_embedding": False,
    "channel_attention": False,
    "detail_basis": False,
    "loss": "mse",
    "loss_weighting": "uniform",
    "fourier_loss_weight": 0.0,
}
"""Switches of StageDiffConfig that lost their experiments and were removed, with the value that is what stagediff
does now (their old default). A configuration that holds one at that value (every model saved before) loads without
it; any other value is a ConfigError (results/decisions.md, "Retired switches")."""
RETIRED_AFTER = "732c4aa"
"""The last commit that has the retired switches, to reproduce their results."""


def _dropping_retired(kind: type) -> type:
    """Make StageDiffConfig drop the retired switches that hold their old value (RETIRED), so that configurations
    saved before load; at any other value one is a ConfigError that names the commit that still has it. Every way
    of building a configuration (keywords, replace, preset, from_dict, from_file) goes through here."""
    checked = kind.__init__

    @functools.wraps(checked)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for key in sorted(set(kwargs) & set(RETIRED)):
            value, old = kwargs.pop(key), RETIRED[key]
            if value != old or isinstance(value, bool) != isinstance(old, bool):
                raise ConfigError(
                    f"{key} was retired: only {key}: {json.dumps(old)} (what stagediff does now) is "
                    f"accepted, got {value!r}; commit {RETIRED_AFTER} still has the switch "
                    f'(results/decisions.md, "Retired switches")'
                )
        checked(self, *args, **kwargs)

    kind.__init__ = __init__
    return kind


@_dropping_retired
@known_keywords
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
    calendar: tuple[str, ...] | None = None
    """The calendar cycles the model conditions on, of "day", "week" and "year": at every step the sine and cosine of
    its phase in the day, week and year of its local time (stagediff.calendar), so samples follow the calendar of
    their timestamps. None: chosen from the data at fit time (every cycle that the data's step samples at least 4
    times and that its training split covers; none without a datetime time column). [] switches the calendar off."""
    continuation: bool = True
    """Keep the data's last window (its values, in the model's metadata) so that samples whose timestamps continue
    right after the data continue it, starting where it ends (as with ``prefix=``). False keeps no data values in
    the model, and such samples start anywhere the model's distribution allows."""

    conditioning: float = 0.0
    """The share of training windows in which some values are given as known (some channels, all but a few gaps, or
    the first steps; stagediff.conditioning) and the loss counts only the others, so that the model sees known values
    as inputs when ``sample(known=...)``, ``impute`` and continuations give them. 0 (the default): a model that never
    sees them; sampling imposes them by replacement alone, which measured as well on held-out ETTh1 and synthetic and
    leaves the unconditional model unchanged (why: results/decisions.md, "Known values")."""
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
    guidance: float = 8.0
    """How strongly a sample that continues a history (``prefix=``, or the data's end) is pulled toward that history
    while sampling (observation guidance, stagediff.sampling.denoise_chunk): the new steps start where the history
    ends. It costs one backward pass per step in the chunk that holds the history (2-3x that chunk's time). 0:
    the history only replaces its noisy counterpart at each step, as models saved before this option sampled (why 8:
    results/decisions.md, "Continuations")."""
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
        if isinstance(self.calendar, list):  # as YAML, JSON and a saved configuration write it
            object.__setattr__(self, "calendar", tuple(self.calendar))
        check_types(self)
        given = {name: getattr(self, name) for name in WINDOW_FIELDS}
        require(isinstance(self.window, int) and self.window >= 1, f"window must be at least 1, got {self.window}")
        chosen = (
            window_settings(self.window, given)
            if self.staged or given["stage_length"] is not None
            else _unstaged_settings(self.window, given)
        )
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
        if self.calendar is not None:
            data["calendar"] = list(self.calendar)
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
        return cls.from_dict(read_mapping(path))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _unstaged_settings(window: int, given: dict[str, Any]) -> dict[str, Any]:
    """Window-dependent values without stages ("w/o Stage"): those of the window's stage length where it has one,
    else of one stage as long as the window."""
    try:
        stage_length_for(window)
    except ConfigError:
        return window_settings(window, {**given, "stage_length": window}) | {"stage_length": window}
    return window_settings(window, given)


def _check_values(c: StageDiffConfig) -> None:
    for name in (
        "window",
        "stage_length",
        "patch_length",
        "patch_stride",
        "d_model",
        "heads",
        "encoder_layers",
        "decoder_layers",
        "feedforward",
        "fusion_kernel",
        "diffusion_steps",
        "sampling_steps",
        "batch_size",
        "max_steps",
        "checkpoint_every",
    ):
        require(getattr(c, name) >= 1, f"{name} must be at least 1, got {getattr(c, name)}")
    for name in ("context", "warmup_steps"):
        require(getattr(c, name) >= 0, f"{name} must be non-negative, got {getattr(c, name)}")
    require(c.channels is None or c.channels >= 1, f"channels must be None or at least 1, got {c.channels}")
    require(0.0 <= c.conditioning <= 1.0, f"conditioning must be in [0, 1], got {c.conditioning}")
    require(0.0 <= c.validation_fraction < 1.0, f"validation_fraction must be in [0, 1), got {c.validation_fraction}")
    require(c.sigma_data > 0, f"sigma_data must be positive, got {c.sigma_data}")
    require(c.missing in MISSING_POLICIES, f"missing must be one of {MISSING_POLICIES}, got {c.missing!r}")
    require(c.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {c.sampler!r}")
    require(c.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {c.schedule!r}")
    require(
        c.sampling_steps <= c.diffusion_steps,
        f"sampling_steps ({c.sampling_steps}) cannot exceed diffusion_steps ({c.diffusion_steps})",
    )
    require(0.0 <= c.ddim_eta <= 1.0, f"ddim_eta must be in [0, 1], got {c.ddim_eta}")
    require(0.0 <= c.guidance <= 100.0, f"guidance must be in [0, 100], got {c.guidance}")
    require(0.0 <= c.dropout < 1.0, f"dropout must be in [0, 1), got {c.dropout}")
    require(0.0 < c.ema_decay < 1.0, f"ema_decay must be in (0, 1), got {c.ema_decay}")
    require(
        c.range_margin is None or 0.0 <= c.range_margin <= 10.0,
        f"range_margin must be in [0, 10] (a share of the training range) or None, got {c.range_margin}",
    )
    require(c.max_minutes is None or c.max_minutes > 0, f"max_minutes must be positive or None, got {c.max_minutes}")
    require(c.learning_rate > 0, f"learning_rate must be positive, got {c.learning_rate}")
    require(c.weight_decay >= 0, f"weight_decay must be non-negative, got {c.weight_decay}")
    require(c.grad_clip > 0, f"grad_clip must be positive, got {c.grad_clip}")
    require(c.d_model % c.heads == 0, f"d_model ({c.d_model}) must be divisible by heads ({c.heads})")
    from stagediff.calendar import CYCLES  # here: importing stagediff loads no pandas

    require(
        c.calendar is None or (set(c.calendar) <= set(CYCLES) and len(set(c.calendar)) == len(c.calendar)),
        f"calendar must list each of {list(CYCLES)} at most once (or be [] for none), got {c.calendar}",
    )
    require(len(c.pool_kernels) >= 1, "pool_kernels needs at least one kernel (one per decomposition scale)")
    require(
        all(k >= 1 and k % 2 == 1 for k in c.pool_kernels),
        f"pool_kernels must be odd positive integers (length-preserving AvgPool), got {list(c.pool_kernels)}",
    )
    require(
        c.fusion_kernel % 2 == 1, f"fusion_kernel must be odd (length-preserving convolution), got {c.fusion_kernel}"
    )
    if c.staged and c.window % c.stage_length != 0:
        lower = max(c.stage_length, c.window // c.stage_length * c.stage_length)
        raise ConfigError(
            f"window {c.window} is not divisible into stages of stage_length {c.stage_length}: choose a window that "
            f"is a multiple of stage_length (e.g. {lower} or {lower + c.stage_length}) or another stage_length"
        )
    stage = c.effective_stage_length
    require(c.effective_context <= stage, f"context ({c.context}) cannot exceed stage_length ({stage})")
    require(
        not c.seam_blend or 2 * c.effective_context <= stage,
        f"seam_blend needs 2 * context ({2 * c.context}) <= stage_length ({stage}); "
        "lower context or set seam_blend false",
    )
    span = stage + 2 * c.effective_context
    require(c.patch_length <= stage, f"patch_length ({c.patch_length}) cannot exceed stage_length ({stage})")
    for length, what in ((span, "stage_length + 2 * context"), (stage, "stage_length")):
        require(
            (length - c.patch_length) % c.patch_stride == 0,
            f"patches must tile the stage exactly: ({what} = {length}) - patch_length ({c.patch_length}) must be "
            f"a multiple of patch_stride ({c.patch_stride})",
        )
