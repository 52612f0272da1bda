"""Noise schedule and samplers. The model predicts x_0; samplers hold no weights and only step.

Forward process (DDPM, Ho et al. 2020, eq. 4): x_k = sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps, with
abar_k the *product* of (1 - beta_i) (Stage-Diff's text writes a sum). The cosine schedule is Nichol &
Dhariwal 2021, eq. 17. Samplers follow the diffusers split: ``set_timesteps`` then ``step`` per timestep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stagediff.config import SAMPLERS, StageDiffConfig


@dataclass(frozen=True)
class NoiseSchedule:
    """betas, alphas_cumprod (abar) over ``steps`` diffusion steps, indexed 0 .. steps-1."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @classmethod
    def create(cls, steps: int, kind: str = "cosine") -> NoiseSchedule:
        if kind == "cosine":
            s = 0.008
            t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
            f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        elif kind == "linear":
            scale = 1000 / steps
            betas = torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
        else:
            raise ValueError(f"unknown schedule {kind!r}")
        return cls(betas=betas, alphas_cumprod=torch.cumprod(1 - betas, dim=0))

    @property
    def steps(self) -> int:
        return self.betas.numel()

    def abar(self, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_k broadcast to ``like``'s shape (k: (batch,))."""
        values = self.alphas_cumprod.to(like.device)[k].to(like.dtype)
        return values.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q(x_k | x_0) for a batch (x0, noise: (batch, ...), k: (batch,))."""
        abar = self.abar(k, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


class Noise:
    """Standard normal noise for a batch whose rows belong to several requests, each with its own CPU generator:
    rows of request i come from generator i, in the order that request sampled alone would draw them, so a seed
    gives the same samples on every device and in any batch."""

    def __init__(self, generators: list[torch.Generator], rows: list[int]):
        self.generators, self.rows = generators, rows

    @classmethod
    def seeded(cls, seed: int, rows: int) -> Noise:
        return cls([torch.Generator().manual_seed(int(seed))], [rows])

    def draw(self, shape: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
        """(sum of rows, *shape) noise on ``device``."""
        parts = [torch.randn((rows, *shape), generator=g) for g, rows in zip(self.generators, self.rows)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).to(device)

    def like(self, x: torch.Tensor) -> torch.Tensor:
        return self.draw(tuple(x.shape[1:]), x.device).to(x.dtype)


class Sampler:
    """Reverse-process stepping from an x_0 prediction over ``timesteps``, which run from noisy to clean: an
    evenly spaced subset of the diffusion steps, one network evaluation each."""

    def __init__(self, schedule: NoiseSchedule, range_margin: float = 0.0):
        self.schedule = schedule
        self.timesteps: list[int] = list(range(schedule.steps - 1, -1, -1))
        self.low: float | torch.Tensor = -1.0 - 2.0 * range_margin  # the scaled training range is [-1, 1], width 2
        self.high: float | torch.Tensor = 1.0 + 2.0 * range_margin

    def hold(self, held: dict[str, list[bool]]) -> Sampler:
        """Keep the channels marked in ``held`` ({"low": [...], "high": [...]}, one flag per channel) at their
        training minimum or maximum instead of the widened range (stagediff.recipe.held_bounds)."""
        self.low = torch.where(torch.tensor(held["low"]), -1.0, torch.tensor(float(self.low)))
        self.high = torch.where(torch.tensor(held["high"]), 1.0, torch.tensor(float(self.high)))
        return self

    def clip(self, x0_pred: torch.Tensor) -> torch.Tensor:
        """The x_0 estimate (..., channels) held within the training range widened by the model's range margin on
        either side (and at the bounds the data holds, see :meth:`hold`)."""
        if isinstance(self.low, torch.Tensor):
            low, high = self.low.to(x0_pred), self.high.to(x0_pred)
            return torch.maximum(torch.minimum(x0_pred, high), low)
        return x0_pred.clamp(self.low, self.high)

    def set_timesteps(self, steps: int | None = None) -> None:
        """``steps`` evenly spaced timesteps from the noisiest to 0 (None: every diffusion step)."""
        total = self.schedule.steps
        steps = total if steps is None else steps
        if not 1 <= steps <= total:
            raise ValueError(f"steps must be between 1 and {total}, got {steps}")
        grid = torch.linspace(total - 1, 0, steps).round().long().tolist()
        self.timesteps = sorted(set(grid), reverse=True)

    def previous(self, index: int) -> int:
        """The timestep after ``timesteps[index]`` in the reverse chain (-1 means x_0)."""
        return self.timesteps[index + 1] if index + 1 < len(self.timesteps) else -1

    def step(self, x0_pred: torch.Tensor, index: int, x_t: torch.Tensor, noise: Noise | None) -> torch.Tensor:
        """x_{t'} from x_t and the model's x_0 prediction at ``timesteps[index]``; a stochastic sampler draws its
        noise from ``noise``."""
        raise NotImplementedError

    def _abar(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.schedule.alphas_cumprod[t])


class DDPMSampler(Sampler):
    """Ancestral sampling with the posterior q(x_{t'} | x_t, x_0) (Ho et al. 2020, eqs. 6-7), between
    consecutive timesteps of the chain (every diffusion step by default)."""

    def step(self, x0_pred, index, x_t, noise=None):
        t = self.timesteps[index]
        prev = self.previous(index)
        abar_t, abar_prev = self._abar(t), self._abar(prev)
        beta_t = 1 - abar_t / abar_prev
        mean = (math.sqrt(abar_prev) * beta_t / (1 - abar_t)) * x0_pred + (
            math.sqrt(1 - beta_t) * (1 - abar_prev) / (1 - abar_t)
        ) * x_t
        if prev < 0:
            return mean
        variance = beta_t * (1 - abar_prev) / (1 - abar_t)
        return mean + math.sqrt(variance) * noise.like(x_t)


class DDIMSampler(Sampler):
    """DDIM (Song et al. 2021, eq. 12); eta=0 is deterministic, eta=1 is ancestral sampling on the subset."""

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, range_margin: float = 0.0):
        super().__init__(schedule, range_margin)
        self.eta = eta

    def step(self, x0_pred, index, x_t, noise=None):
        t = self.timesteps[index]
        prev = self.previous(index)
        abar_t, abar_prev = self._abar(t), self._abar(prev)
        eps = (x_t - math.sqrt(abar_t) * x0_pred) / math.sqrt(1 - abar_t)
        sigma = self.eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
        direction = math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
        x_prev = math.sqrt(abar_prev) * x0_pred + direction
        if sigma > 0 and prev >= 0:
            x_prev = x_prev + sigma * noise.like(x_t)
        return x_prev


def make_sampler(config: StageDiffConfig, sampler: str | None = None, steps: int | None = None) -> Sampler:
    """The sampler named by ``sampler`` (default: the config's), ready with its timesteps
    (:func:`sampling_choice`)."""
    kind, steps = sampling_choice(config, sampler, steps)
    schedule = NoiseSchedule.create(config.diffusion_steps, config.schedule)
    margin = config.range_margin or 0.0  # None: a model saved before the margin existed samples as it did
    if kind == "ddpm":
        chosen: Sampler = DDPMSampler(schedule, margin)
    else:
        chosen = DDIMSampler(schedule, eta=config.ddim_eta, range_margin=margin)
    chosen.set_timesteps(steps)
    return chosen


def sampling_choice(config: StageDiffConfig, sampler: str | None = None, steps: int | None = None) -> tuple[str, int]:
    """(sampler, network evaluations per chunk) for a request of ``sampler`` and ``steps`` (either None: the
    model's own) on a model of ``config``: the one rule the library, the CLI, the pipeline and the service share.

    "ddpm" takes every diffusion step unless asked for fewer, the others ``config.sampling_steps``. A saved model
    keeps its configured sampler, so it samples as it did when it was saved."""
    kind = config.sampler if sampler is None else sampler
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; choose one of {SAMPLERS}")
    if steps is None:
        steps = config.diffusion_steps if kind == "ddpm" else config.sampling_steps
    return kind, steps
