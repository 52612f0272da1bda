"""Training loop: AdamW with warmup and cosine decay, gradient clipping, EMA weights, periodic
checkpoints and exact resume (same seed and data give the same weights as an uninterrupted run).

On one CUDA device the step (forward, backward, clipping, AdamW and EMA) is captured once in a CUDA graph and
replayed: the model's many small kernels are launched at once instead of one by one from Python.

Under torchrun the processes train one model with DistributedDataParallel: each draws the same global batch
and trains on its own slice of it, so the weights equal those of one process with the same batch_size
(stagediff.distributed, docs/scaling.md).

With config.max_minutes (a wall-clock budget) the run first times a few steps on a throw-away copy of the
model and optimizer, then plans max_steps (and fits warmup_steps) to the budget left; the trainer's config
becomes that planned configuration (max_minutes None), which trains to the same weights when run again
(:meth:`Trainer.plan`)."""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stagediff.conditioning import draw_known
from stagediff.config import StageDiffConfig
from stagediff.diffusion import NoiseSchedule
from stagediff.distributed import DistributedContext
from stagediff.errors import ConfigError, DataError
from stagediff.model import StageDiffDenoiser

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
VALIDATION_WINDOWS = 256
GRAPH_WARMUP_STEPS = 3  # eager steps (on a side stream) before the step is captured, as CUDA graphs require
# The wall-clock budget (config.max_minutes): see Trainer.plan.
CALIBRATION_WARMUP_STEPS = 2  # untimed steps before timing (plus the CUDA graph's warm-up and capture)
CALIBRATION_STEPS = 10  # timed steps at most ...
CALIBRATION_SECONDS = 3.0  # ... or until this long, but at most CALIBRATION_FRACTION of the budget
CALIBRATION_FRACTION = 0.05
BUDGET_RESERVE = 0.05  # of the budget, kept free for checkpoint writing and timing noise
HARD_STOP = 1.5  # a run past this multiple of its budget (the machine slowed down) stops early


@dataclass(frozen=True)
class TrainProgress:
    """What the progress callback receives after every step."""

    step: int
    max_steps: int
    loss: float
    learning_rate: float
    seconds: float
    validation_loss: float | None = None


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    validation_losses: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: int = 0
    world_size: int = 1
    budget: dict | None = None
    """With config.max_minutes: {"max_minutes", "calibration_seconds" (from the start of the run to the plan,
    timing included), "seconds_per_step" (measured), "planned_steps"}; None without a budget."""
    stopped_early: bool = False
    """True when the run passed HARD_STOP times its budget and stopped before max_steps (``steps`` says where)."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """ "auto" picks CUDA when present, else the CPU; a device this machine lacks is a :class:`ConfigError`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be auto, cpu or cuda (or cuda:N), got {device!r}") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"device {device!r} asked for, but {why} (torch {torch.__version__}); use cpu or auto")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    elif chosen.type != "cpu":
        raise ConfigError(f"device must be auto, cpu or cuda (or cuda:N), got {device!r}")
    return chosen


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    counted: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared error on x_0 (Stage-Diff eq. 7), optionally weighted (``weights`` broadcast against (batch, length,
    channels)); with ``counted`` (batch, length, channels) 1/0, the mean over the counted values only."""
    error = (prediction - target) ** 2
    if weights is not None:
        error = weights * error
    if counted is None:
        return error.mean()
    return (error * counted).sum() / counted.sum().clamp(min=1)


def learning_rate_factor(step: int, config: StageDiffConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak at max_steps.

    With a budget (config.max_minutes) pass the planned configuration (:func:`planned_config`,
    ``Trainer.config`` after the plan): the schedule follows the planned max_steps and warmup_steps."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def planned_config(config: StageDiffConfig, steps: int) -> StageDiffConfig:
    """``config`` with a budget, planned to ``steps`` steps: max_steps ``steps``, max_minutes None, warmup_steps
    min(config.warmup_steps, max(1, steps // 20)) (at most 5% of the run warms up, as 100 of the default 2000)
    and checkpoint_every at most ``steps`` (so that a checkpoint is written)."""
    return config.replace(
        max_steps=steps,
        max_minutes=None,
        warmup_steps=min(config.warmup_steps, max(1, steps // 20)),
        checkpoint_every=min(config.checkpoint_every, steps),
    )


def planned_steps(
    budget_seconds: float,
    spent_seconds: float,
    seconds_per_step: float,
    validation_seconds: float,
    checkpoint_every: int,
) -> int:
    """How many steps fit in what is left of the budget: (1 - BUDGET_RESERVE) of it less what is spent, less one
    validation loss per checkpoint_every steps and one at the end; at least 1."""
    left = (1 - BUDGET_RESERVE) * budget_seconds - spent_seconds - validation_seconds
    per_step = max(seconds_per_step, 1e-9) + validation_seconds / checkpoint_every
    return max(1, math.floor(left / per_step))


def build_denoiser(config: StageDiffConfig, channels: int) -> StageDiffDenoiser:
    """A freshly initialised denoiser, deterministic in config.seed (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return StageDiffDenoiser(config, channels)


class Trainer:
    """Owns the model, its EMA copy, the optimizer and the random state of one training run.

    ``series``: the scaled training split (length, channels) in [-1, 1]; windows are cut on the fly
    (stride 1), so memory is that of the series, not of all windows.

    Started by torchrun (WORLD_SIZE > 1), each process trains on its own rows of every global batch of
    config.batch_size, on cuda:LOCAL_RANK when the device is CUDA.

    ``cuda_graph``: capture the step in a CUDA graph when training in one process on CUDA; None (the default)
    means yes unless the environment sets STAGEDIFF_CUDA_GRAPH=0.
    """

    def __init__(
        self,
        config: StageDiffConfig,
        denoiser: StageDiffDenoiser,
        series: np.ndarray,
        validation: np.ndarray | None = None,
        device: str | torch.device | None = "auto",
        cuda_graph: bool | None = None,
        calendar: np.ndarray | None = None,
        validation_calendar: np.ndarray | None = None,
        missing: np.ndarray | None = None,
        validation_missing: np.ndarray | None = None,
    ):
        self.distributed = DistributedContext.from_environment()
        self.rows = self.distributed.shard(config.batch_size)  # checks the split before any work
        # config.max_minutes: self.config is replaced by the planned configuration at the start of run (plan)
        self.config, self.device = config, self.distributed.device(resolve_device(device))
        self.max_minutes = config.max_minutes  # the budget asked for (the planned config has None)
        self.model = denoiser.to(self.device)
        self.network: torch.nn.Module = self.model  # what train_step calls: the model, or its DDP wrapper in run
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        # The calendar features of each step (calendar (rows, features) beside series (rows, channels)) and where
        # values are missing (missing (rows, channels), missing="mask") travel as extra columns of the windows, cut
        # with them.
        self.channels = series.shape[1]
        self.calendar_columns = 0 if calendar is None else calendar.shape[1]
        self.masked = missing is not None or validation_missing is not None
        self.windows = _window_view(_beside(series, calendar, missing if self.masked else None), config.window)
        digest = hashlib.sha256(np.ascontiguousarray(series, dtype=np.float32).tobytes())
        for extra in (calendar, missing):
            if extra is not None:
                digest.update(np.ascontiguousarray(extra, dtype=np.float32).tobytes())
        self.data_fingerprint = digest.hexdigest()
        self.validation = (
            _window_view(
                _beside(validation, validation_calendar, validation_missing if self.masked else None), config.window
            )
            if validation is not None and len(validation) >= config.window
            else None
        )
        self.schedule = NoiseSchedule.create(config.diffusion_steps, config.schedule)
        if cuda_graph is None:
            cuda_graph = os.environ.get("STAGEDIFF_CUDA_GRAPH", "1") != "0"
        self.graphed = cuda_graph and self.device.type == "cuda" and self.distributed.world_size == 1
        # A captured step reads the learning rate and the EMA weight from device tensors that change between
        # replays (capturable AdamW keeps its step count on the device too).
        self.optimizer = self.make_optimizer(self.model)
        self.ema_weight = torch.zeros((), device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_inputs: tuple[torch.Tensor, ...] = ()
        self.graph_loss: torch.Tensor | None = None
        self.eager_steps = 0
        self.scheduler = self.make_scheduler(self.optimizer, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.result = TrainResult(steps=0, world_size=self.distributed.world_size)

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.AdamW:
        return torch.optim.AdamW(
            model.parameters(),
            lr=self.learning_rate_value(self.config.learning_rate),
            weight_decay=self.config.weight_decay,
            capturable=self.graphed,
        )

    @staticmethod
    def make_scheduler(
        optimizer: torch.optim.Optimizer, config: StageDiffConfig, last_epoch: int = -1
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """The learning-rate schedule of ``config``; on an optimizer that had one already, it restarts from the
        optimizer's initial_lr at step last_epoch + 1."""
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(s, config), last_epoch)

    def learning_rate_value(self, value: float | torch.Tensor) -> float | torch.Tensor:
        """The learning rate as the optimizer needs it: a device tensor for a captured step, else a float."""
        value = float(value)
        return torch.tensor(value, device=self.device) if self.graphed else value

    # -- one step ---------------------------------------------------------------------------
    def noisy_batch(
        self,
        windows: torch.Tensor,
        generator: torch.Generator,
        size: int,
        rows: slice = slice(None),
        conditioning: float | None = None,
    ) -> tuple[torch.Tensor | None, ...]:
        """``size`` random windows, noise levels and noise (all drawn, so that the generator advances alike in
        every process) -> (x_k, k, x_0, calendar features, observed values, counted) of ``rows`` on the device.

        With conditioning (default: config.conditioning) some windows have values known (observed: NaN where unknown,
        :func:`stagediff.conditioning.draw_known`); counted (1/0) marks the values the loss counts: neither known nor
        missing. Calendar features, observed and counted are None where the model or data have none."""
        conditioning = self.config.conditioning if conditioning is None else conditioning
        index = torch.randint(len(windows), (size,), generator=generator)
        columns = [self.channels, self.calendar_columns, self.channels if self.masked else 0]
        x0, calendar, missing = windows[index].split(columns, dim=-1)
        k = torch.randint(self.schedule.steps, (size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_k = self.schedule.add_noise(x0, noise, k)
        observed = counted = None
        if self.model.conditioned:
            known = draw_known(tuple(x0.shape), conditioning, generator)
            if self.masked:
                known &= missing == 0
            observed = torch.where(known, x0, float("nan"))[rows].to(self.device)
            counted = ~known
        if self.masked:
            counted = (missing == 0) if counted is None else counted & (missing == 0)
        if counted is not None:
            counted = counted[rows].to(self.device, torch.float32)
        calendar = calendar[rows].to(self.device) if calendar.shape[-1] else None
        return x_k[rows].to(self.device), k[rows].to(self.device), x0[rows].to(self.device), calendar, observed, counted

    def train_step(self) -> float:
        """One optimizer step on a global batch of config.batch_size; returns its mean loss.

        With several processes each computes the mean loss of its equal slice and DDP averages the
        gradients, which is the gradient of the global batch's mean loss; clipping, AdamW and EMA then run
        identically everywhere."""
        self.model.train()
        batch = self.noisy_batch(self.windows, self.generator, self.config.batch_size, self.rows)
        self.ema_weight.fill_(1 - min(self.config.ema_decay, (1 + self.step) / (10 + self.step)))
        loss = self.graphed_update(*batch) if self.graphed else self.update(*batch)
        self.scheduler.step()
        self.step += 1
        return self.distributed.mean(loss.detach()).item()

    def update(
        self,
        x_k: torch.Tensor,
        k: torch.Tensor,
        x0: torch.Tensor,
        calendar: torch.Tensor | None = None,
        observed: torch.Tensor | None = None,
        counted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss, backward, clipping, AdamW and EMA on one batch (only device work: it can be captured)."""
        # autocast's weight cache would keep tensors of the capture alive; the casts are cheap
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda", cache_enabled=False
        ):
            prediction = self.network(x_k, k, calendar, observed)
        loss = diffusion_loss(prediction.float(), x0, self.loss_weights(k), counted)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        with torch.no_grad():  # ema += weight * (model - ema); written out since _foreach_lerp_ takes no tensor weight
            averages = list(self.ema.parameters())
            steps = torch._foreach_sub(list(self.model.parameters()), averages)
            torch._foreach_mul_(steps, self.ema_weight)
            torch._foreach_add_(averages, steps)
        return loss

    def graphed_update(self, *batch: torch.Tensor | None) -> torch.Tensor:
        """``update`` replayed from a CUDA graph. The first GRAPH_WARMUP_STEPS steps run eagerly on a side stream
        (they create the optimizer's state and let cuBLAS and the allocator settle); the next one is captured."""
        if self.graph is None and self.eager_steps < GRAPH_WARMUP_STEPS:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                loss = self.update(*batch)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            self.eager_steps += 1
            return loss
        if self.graph is None:
            self.graph_inputs = tuple(None if value is None else value.clone() for value in batch)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.graph_loss = self.update(*self.graph_inputs)
        for static, value in zip(self.graph_inputs, batch):
            if static is not None:
                static.copy_(value)
        self.graph.replay()
        return self.graph_loss

    def loss_weights(self, k: torch.Tensor) -> torch.Tensor | None:
        """The weight of each row's error, (batch, 1, 1), or None for uniform weights.

        With the skip parametrization, sigma_data^2 / c_out(k)^2 (Karras et al. 2022, eq. 8): the network's own
        target then has unit scale at every noise level; without it, low-noise steps would barely train the network
        and their leftover noise would stay in the samples."""
        if not self.config.skip_parametrization:
            return None
        _, output = self.model.coefficients(k)
        return self.model.sigma_data**2 / output**2

    @torch.no_grad()
    def validation_loss(self) -> float | None:
        """x_0 MSE of the EMA model on a fixed, seeded set of validation windows and noise levels."""
        if self.validation is None:
            return None
        self.ema.eval()
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        # nothing known (the unconditional loss), missing values left out
        x_k, k, x0, calendar, _, counted = self.noisy_batch(
            self.validation, generator, min(VALIDATION_WINDOWS, len(self.validation)), conditioning=0.0
        )
        losses = []
        for i in range(0, len(x0), 64):
            rows = slice(i, i + 64)
            estimate = self.ema(x_k[rows], k[rows], None if calendar is None else calendar[rows]).float()
            if counted is None:
                losses.append(F.mse_loss(estimate, x0[rows], reduction="sum"))
            else:
                losses.append((((estimate - x0[rows]) ** 2) * counted[rows]).sum())
        return float(sum(losses) / (x0.numel() if counted is None else counted.sum().clamp(min=1)))

    # -- the wall-clock budget -------------------------------------------------------------------
    def agreed(self, value: float) -> float:
        """``value`` averaged over the processes (itself in one process): every rank gets the same number."""
        if not self.distributed.enabled:
            return value
        return float(self.distributed.mean(torch.tensor(value, dtype=torch.float64, device=self.device)))

    def measure_pace(self, budget_seconds: float) -> tuple[float, float]:
        """(seconds per optimizer step, seconds per validation loss), timed on a throw-away copy of the model,
        EMA and optimizer with a generator of its own and the global RNG forked: the run's weights and random
        streams are untouched.

        After CALIBRATION_WARMUP_STEPS untimed steps (and, for a CUDA graph, its eager steps and capture, so
        that replays are timed), steps are timed until CALIBRATION_STEPS or min(CALIBRATION_SECONDS,
        CALIBRATION_FRACTION of the budget) have passed, whichever comes first. Under DDP the copy is wrapped
        too (the timing includes the gradient all-reduce) and the ranks stop on their mean time."""
        probe = copy.copy(self)
        probe.model, probe.ema = copy.deepcopy((self.model, self.ema))
        probe.network = self.distributed.wrap(probe.model, self.device)
        probe.optimizer = self.make_optimizer(probe.model)
        probe.optimizer.load_state_dict(self.optimizer.state_dict())
        probe.scheduler = self.make_scheduler(probe.optimizer, self.config, self.step - 1)
        probe.generator = torch.Generator().manual_seed(self.config.seed + 2)
        probe.ema_weight = torch.zeros((), device=self.device)
        probe.graph, probe.graph_inputs, probe.graph_loss, probe.eager_steps = None, (), None, 0
        warmup = CALIBRATION_WARMUP_STEPS + (GRAPH_WARMUP_STEPS + 1 if self.graphed else 0)
        target = min(CALIBRATION_SECONDS, CALIBRATION_FRACTION * budget_seconds)
        devices = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else []
        )
        with torch.random.fork_rng(devices=devices):
            for _ in range(warmup):
                probe.train_step()  # returns a float: each step waits for the device
            steps, begin = 0, time.perf_counter()
            while True:
                probe.train_step()
                steps += 1
                elapsed = self.agreed(time.perf_counter() - begin)
                if steps >= CALIBRATION_STEPS or elapsed >= target:
                    break
            begin = time.perf_counter()
            probe.validation_loss()
            validation = self.agreed(time.perf_counter() - begin) if self.validation is not None else 0.0
        return elapsed / steps, validation

    def plan(self, started: float) -> None:
        """Plan the budget of config.max_minutes, counted from ``started`` (a time.perf_counter() reading at the
        start of the run: the timing is spent budget), and adopt the planned configuration.

        max_steps = max(1, floor(steps that fit in what is left of the budget)) (:func:`planned_steps`: the
        validation losses at the checkpoints counted, BUDGET_RESERVE of the budget kept free); warmup_steps and
        checkpoint_every fitted by :func:`planned_config`. ``self.config`` becomes the planned configuration
        and the learning-rate schedule follows it; ``self.result.budget`` records the plan. Under DDP every
        rank plans from the ranks' mean timings, so all reach the same plan (there is no broadcast)."""
        budget_seconds = 60.0 * self.config.max_minutes
        seconds_per_step, validation_seconds = self.measure_pace(budget_seconds)
        spent = self.agreed(time.perf_counter() - started)
        steps = planned_steps(budget_seconds, spent, seconds_per_step, validation_seconds, self.config.checkpoint_every)
        if not self.distributed.all_agree(steps):
            raise RuntimeError(f"the processes planned different numbers of steps for the budget (this one {steps})")
        self.config = planned_config(self.config, steps)
        self.scheduler = self.make_scheduler(self.optimizer, self.config, self.step - 1)
        self.result.budget = {
            "max_minutes": self.max_minutes,
            "calibration_seconds": spent,
            "seconds_per_step": seconds_per_step,
            "planned_steps": steps,
        }
        if self.distributed.is_main:
            logger.info(
                "training budget of %g min: %.4f s per step and %.3f s per validation loss, measured in "
                "%.1f s; planned %d steps (warmup %d, checkpoint every %d)",
                self.max_minutes,
                seconds_per_step,
                validation_seconds,
                spent,
                steps,
                self.config.warmup_steps,
                self.config.checkpoint_every,
            )

    def over_budget(self, elapsed: float) -> bool:
        """Whether a run with a budget has spent more than HARD_STOP times it (``elapsed``: the training loop's
        seconds; the planning's are added), agreed by every rank."""
        if self.max_minutes is None or self.result.budget is None:
            return False
        spent = self.agreed(self.result.budget["calibration_seconds"] + elapsed)
        return spent > HARD_STOP * 60.0 * self.result.budget["max_minutes"]

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "config": self.config.to_dict(),
            "data": self.data_fingerprint,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "losses": self.result.losses,
            "validation_losses": self.result.validation_losses,
            "seconds": self.result.seconds,
            "budget": self.result.budget,
        }

    def save_checkpoint(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CHECKPOINT_NAME
        temporary = directory / f".{CHECKPOINT_NAME}.{os.getpid()}.tmp"
        try:
            torch.save(self.state_dict(), temporary)
            os.replace(temporary, path)  # atomic: an interruption never leaves a half-written checkpoint
        finally:
            temporary.unlink(missing_ok=True)  # a failed write leaves no stray temporary file behind
        return path

    def load_checkpoint(self, path: Path) -> None:
        # On the CPU: the RNG states must stay CPU byte tensors; load_state_dict moves the rest to the device.
        state = torch.load(path, map_location="cpu", weights_only=True)
        config = self.checkpoint_config(state)
        if config is None:
            raise ConfigError(
                f"checkpoint {path} was written with a different configuration; "
                "delete it or choose another checkpoint directory to start afresh"
            )
        if state["data"] != self.data_fingerprint:
            raise DataError(
                f"checkpoint {path} was written while training on different data; "
                "delete it or choose another checkpoint directory to start afresh"
            )
        if config != self.config:  # a budget's plan, taken from the checkpoint: no second timing
            self.config = config
            self.scheduler = self.make_scheduler(self.optimizer, config)  # its state is loaded below
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for group in self.optimizer.param_groups:  # a checkpoint of a captured run resumes eagerly and vice versa
            group["lr"] = self.learning_rate_value(group["lr"])
        self.graph, self.eager_steps = None, 0  # the optimizer's state tensors are new: capture again
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step = state["step"]
        self.result = TrainResult(
            steps=self.step,
            losses=list(state["losses"]),
            validation_losses={int(k): v for k, v in state["validation_losses"].items()},
            seconds=state["seconds"],
            resumed_from=self.step,
            world_size=self.distributed.world_size,
            budget=state.get("budget"),
        )

    def checkpoint_config(self, state: dict) -> StageDiffConfig | None:
        """The configuration to resume ``state`` with, or None if it was written with another one.

        Without a budget (or once planned) the checkpoint's configuration must equal ``self.config``. With
        config.max_minutes it must be a run with the same budget, and its configuration the planned one
        (:func:`planned_config`) of ours for its max_steps: the plan is taken from it."""
        stored = state["config"]
        if self.config.max_minutes is None:
            return self.config if stored == self.config.to_dict() else None
        budget, steps = state.get("budget"), stored.get("max_steps") if isinstance(stored, dict) else None
        if (
            not isinstance(budget, dict)
            or budget.get("max_minutes") != self.config.max_minutes
            or not isinstance(steps, int)
            or steps < 1
        ):
            return None
        planned = planned_config(self.config, steps)
        return planned if stored == planned.to_dict() else None

    # -- the loop ---------------------------------------------------------------------------
    def run(
        self,
        checkpoint_dir: str | os.PathLike | None = None,
        callback: Callable[[TrainProgress], None] | None = None,
        progress: bool | None = None,
        stop_after: int | None = None,
    ) -> TrainResult:
        """Train until config.max_steps (or ``stop_after`` more steps, to simulate an interruption).

        With config.max_minutes, a run that finds no checkpoint first plans max_steps to the budget
        (:meth:`plan`, counted from the start of this call); one that resumes takes the plan from the
        checkpoint. Either way ``self.config`` is then the planned configuration and ``result.budget`` the plan.
        A run past HARD_STOP times its budget stops early (``result.stopped_early``).

        With ``checkpoint_dir``, an existing checkpoint there is resumed and a new one written every
        config.checkpoint_every steps and at the end. ``progress`` None shows a bar only on a terminal.

        Under torchrun the process group is created for the run (and destroyed after it, unless the caller
        made it); only rank 0 writes checkpoints and shows the bar, every rank resumes from the same file,
        and ``callback`` runs in every process with the same report (check
        :func:`stagediff.distributed.is_main_process` to act once)."""
        started = time.perf_counter()
        with self.distributed.process_group(self.device):
            self.network = self.distributed.wrap(self.model, self.device)
            try:
                return self.train_until(checkpoint_dir, callback, progress, stop_after, budget_started=started)
            finally:
                self.network = self.model

    def train_until(
        self,
        checkpoint_dir: str | os.PathLike | None,
        callback: Callable[[TrainProgress], None] | None,
        progress: bool | None,
        stop_after: int | None,
        budget_started: float | None = None,
    ) -> TrainResult:
        """The loop of :meth:`run` (in its process group); ``budget_started``: the time.perf_counter() reading at
        which a budget (config.max_minutes) began, default now."""
        budget_started = time.perf_counter() if budget_started is None else budget_started
        directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
        main = self.distributed.is_main
        found = directory is not None and (directory / CHECKPOINT_NAME).is_file()
        if not self.distributed.all_agree(found):
            raise ConfigError(
                f"the checkpoint {directory / CHECKPOINT_NAME} exists for some processes but not for "
                "others; put the checkpoint directory on a filesystem that every machine shares"
            )
        if found:
            self.load_checkpoint(directory / CHECKPOINT_NAME)
            if main:
                logger.info("resumed training from %s at step %d", directory / CHECKPOINT_NAME, self.step)
        elif self.config.max_minutes is not None:
            self.plan(budget_started)
        end = self.config.max_steps if stop_after is None else min(self.config.max_steps, self.step + stop_after)
        bar = tqdm(
            total=self.config.max_steps,
            initial=self.step,
            desc="training",
            unit="step",
            disable=not main or (None if progress is None else not progress),
        )
        started = time.perf_counter() - self.result.seconds
        stop = self.step < end and self.over_budget(self.result.seconds)
        while self.step < end and not stop:
            loss = self.train_step()
            self.result.losses.append(loss)
            at_checkpoint = self.step % self.config.checkpoint_every == 0 or self.step == self.config.max_steps
            validation = self.validation_loss() if at_checkpoint else None
            if validation is not None:
                self.result.validation_losses[self.step] = validation
            self.result.seconds = time.perf_counter() - started
            self.result.steps = self.step
            if at_checkpoint and directory is not None and main:
                self.save_checkpoint(directory)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if callback is not None:
                callback(
                    TrainProgress(
                        self.step,
                        self.config.max_steps,
                        loss,
                        float(self.scheduler.get_last_lr()[0]),
                        self.result.seconds,
                        validation,
                    )
                )
            # under DDP the ranks agree on it at checkpoints only, to spare a collective per step
            stop = (
                self.step < end
                and (at_checkpoint or not self.distributed.enabled)
                and self.over_budget(time.perf_counter() - started)
            )
        bar.close()
        if stop:
            self.result.stopped_early = True
            if main:
                logger.warning(
                    "training ran past %g times its budget of %g min: stopped early after %d of %d planned steps",
                    HARD_STOP,
                    self.result.budget["max_minutes"],
                    self.step,
                    self.config.max_steps,
                )
        if directory is not None:
            self.distributed.barrier()  # when run returns in any process, rank 0's last checkpoint is complete
        return self.result


def _beside(series: np.ndarray, *extras: np.ndarray | None) -> np.ndarray:
    """The series with the extras (calendar features, missing flags) as extra columns (the series alone without
    any)."""
    present = [np.asarray(extra, dtype=series.dtype) for extra in extras if extra is not None]
    for extra in present:
        if len(extra) != len(series):
            raise ValueError(f"{len(extra)} rows of extra columns for {len(series)} rows of data")
    return np.concatenate([series, *present], axis=1) if present else series


def _window_view(series: np.ndarray, window: int) -> torch.Tensor:
    """(length, channels) -> a (windows, window, channels) stride-1 view without copying the windows."""
    tensor = torch.as_tensor(np.ascontiguousarray(series), dtype=torch.float32)
    if len(tensor) < window:
        raise DataError(f"the training split has {len(tensor)} rows, shorter than one window of {window}")
    return tensor.unfold(0, window, 1).transpose(1, 2)
