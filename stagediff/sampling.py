"""Reverse diffusion in scaled units: whole windows, long horizons chunk by chunk, and known values (a prefix to
continue, known channels, the values around gaps) kept as given (stage-diff.md section 3; stagediff.conditioning).

Long samples: a chunk of ``chunk_length`` steps is denoised jointly (all its stages at one diffusion
step); each next chunk starts with the last ``overlap`` steps of the previous one as known values,
which at every reverse step are replaced by their forward-noised version (the "replacement" method of
Song et al. 2021, section 5; RePaint without resampling). Memory is bounded by the chunk, not by the
total length. A chunk as long as the whole sample unrolls all stages in one pass instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from stagediff.diffusion import Noise, Sampler
from stagediff.model import StageDiffDenoiser


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def denoise_chunk(
    denoiser: StageDiffDenoiser,
    sampler: Sampler,
    noise: Noise,
    length: int,
    known: torch.Tensor | None = None,
    device: torch.device | None = None,
    step_callback: Callable[[], None] | None = None,
    calendar: torch.Tensor | None = None,
    history: int = 0,
    guidance: float = 0.0,
) -> torch.Tensor:
    """Sample as many series as ``noise`` has rows, of ``length`` (a multiple of the stage length), in [-1, 1].

    known: (rows, p <= length, channels) the known values of the first p steps, NaN where unknown (the steps after p
    are unknown), or None. A model with conditioning sees them (stagediff.conditioning); for every model they replace
    their noisy counterparts at each step and are returned as given.
    calendar: (rows, length, features) the calendar features of the steps, for a model with calendar.
    history, guidance: the first ``history`` steps of ``known`` are a history that the sample continues; with
    ``guidance`` > 0 each step also moves the noisy series against the gradient of the distance between the
    denoiser's estimate of that history and the history itself (:func:`pull_toward`), so that the new steps start
    where the history ends. One backward pass per step: 2-3x the time.
    Returns (rows, length, channels) on the CPU. Noise is drawn on the CPU (:class:`Noise`) so that a seed gives
    the same samples on every device and in any batch."""
    guided = guidance > 0 and history > 0 and known is not None
    with torch.no_grad() if guided else torch.inference_mode():
        return _denoise_chunk(
            denoiser,
            sampler,
            noise,
            length,
            known,
            device,
            step_callback,
            calendar,
            history if guided else 0,
            guidance,
        )


def _denoise_chunk(denoiser, sampler, noise, length, known, device, step_callback, calendar, history, guidance):
    device = device or next(denoiser.parameters()).device
    schedule = sampler.schedule
    x = noise.draw((length, denoiser.channels), device)
    n = x.shape[0]
    observed = given = mask = None
    if known is not None:
        known = known.to(device=device, dtype=x.dtype)
        observed = torch.cat([known, known.new_full((n, length - known.shape[1], x.shape[2]), float("nan"))], dim=1)
        # the replaced values: up to the last step with a known value (a prefix's noise is drawn as it always was)
        steps_known = torch.nonzero(observed.isfinite().any(dim=2).any(dim=0))
        if len(steps_known):
            reach = int(steps_known.max()) + 1
            mask = observed[:, :reach].isfinite()
            given = observed[:, :reach].nan_to_num()
    if calendar is not None:
        calendar = calendar.to(device=device, dtype=x.dtype)
    conditioned = observed if denoiser.conditioned else None
    for index, t in enumerate(sampler.timesteps):
        steps = torch.full((n,), t, dtype=torch.long, device=device)
        if given is not None:
            x[:, : given.shape[1]] = torch.where(
                mask, schedule.add_noise(given, noise.like(given), steps), x[:, : given.shape[1]]
            )
        if history:
            x0, pull = pull_toward(denoiser, x, steps, calendar, conditioned, given[:, :history])
            x = sampler.step(sampler.clip(x0), index, x, noise) - guidance * pull
        else:
            x0 = sampler.clip(denoiser(x, steps, calendar, conditioned).float())
            x = sampler.step(x0, index, x, noise)
        if step_callback is not None:
            step_callback()
    if history:
        x = sampler.clip(x)  # the last pull may leave the range that the x_0 estimates, and so the samples, keep to
    if given is not None:
        x[:, : given.shape[1]] = torch.where(mask, given, x[:, : given.shape[1]])
    return x.cpu()


def pull_toward(denoiser, x, steps, calendar, conditioned, history) -> tuple[torch.Tensor, torch.Tensor]:
    """(the denoiser's x_0 estimate, the gradient with respect to ``x`` of each row's Euclidean distance between
    that estimate's first steps and ``history`` (rows, h, channels)): the observation guidance of diffusion
    posterior sampling (Chung et al. 2023, algorithm 1), with the history as the observation."""
    with torch.enable_grad():
        noisy = x.detach().requires_grad_(True)
        x0 = denoiser(noisy, steps, calendar, conditioned).float()
        distance = (x0[:, : history.shape[1]] - history).pow(2).sum(dim=(1, 2)).sqrt()
        (gradient,) = torch.autograd.grad(distance.sum(), noisy)
    return x0.detach(), gradient


def generate(
    denoiser: StageDiffDenoiser,
    sampler: Sampler,
    noise: Noise,
    length: int,
    chunk_length: int,
    overlap: int,
    prefix: torch.Tensor | None = None,
    device: torch.device | None = None,
    step_callback: Callable[[], None] | None = None,
    observed: torch.Tensor | None = None,
    guidance: float = 0.0,
) -> torch.Tensor:
    """(rows, length, channels) scaled samples: :func:`generate_chunks` joined."""
    return torch.cat(
        list(
            generate_chunks(
                denoiser,
                sampler,
                noise,
                length,
                chunk_length,
                overlap,
                prefix,
                device,
                step_callback,
                observed=observed,
                guidance=guidance,
            )
        ),
        dim=1,
    )


def generate_chunks(
    denoiser: StageDiffDenoiser,
    sampler: Sampler,
    noise: Noise,
    length: int,
    chunk_length: int,
    overlap: int,
    prefix: torch.Tensor | None = None,
    device: torch.device | None = None,
    step_callback: Callable[[], None] | None = None,
    calendar: torch.Tensor | None = None,
    observed: torch.Tensor | None = None,
    guidance: float = 0.0,
) -> Iterator[torch.Tensor]:
    """Scaled samples chunk by chunk, each piece (rows, new steps, channels) as soon as it is denoised; the pieces
    joined along time are the ``length`` steps.

    prefix: (rows, p, channels) scaled history to continue from (its last ``chunk_length - stage_length``
    steps at most are used); the output starts right after it.
    calendar: (rows, steps, features) the calendar features from the first step of the history used on, at least
    that history plus ``length + chunk_length`` steps, for a model with calendar.
    observed: (rows, length, channels) the known values of the output's steps, NaN where unknown (known channels, or
    the values around gaps to fill); they come back as given.
    guidance: how strongly the chunk that holds ``prefix`` is pulled toward it (:func:`denoise_chunk`); the later
    chunks, which continue the sample's own steps, are not guided."""
    stage = denoiser.stage_length
    produced = 0
    tail = None if prefix is None else prefix[:, -(chunk_length - stage) :]
    begin = 0  # where the chunk starts in ``calendar``
    while produced < length:
        history = 0 if tail is None else tail.shape[1]
        size = chunk_length if tail is not None else min(chunk_length, round_up(length, stage))
        known = tail
        if observed is not None:
            ahead = observed[:, produced : produced + size - history]
            known = ahead if tail is None else torch.cat([tail, ahead], dim=1)
        chunk = denoise_chunk(
            denoiser,
            sampler,
            noise,
            size,
            known=known,
            device=device,
            step_callback=step_callback,
            calendar=None if calendar is None else calendar[:, begin : begin + size],
            history=history if produced == 0 else 0,
            guidance=guidance,
        )
        new = chunk[:, history:]
        yield new[:, : length - produced]
        produced += new.shape[1]
        tail = chunk[:, size - overlap :]
        begin += size - overlap


def chunk_plan(length: int, chunk_length: int, overlap: int, stage: int, prefix: int = 0) -> int:
    """How many chunks ``generate`` will denoise (for progress bars)."""
    if prefix:
        first = chunk_length - min(prefix, chunk_length - stage)
    else:
        first = min(chunk_length, round_up(length, stage))
    remaining = max(0, length - first)
    return 1 if remaining == 0 else 1 + -(-remaining // (chunk_length - overlap))
