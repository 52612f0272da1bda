"""Batching concurrent requests without changing what any of them gets back.

On a small CPU one sample of 256 steps costs nearly as much as several: each reverse step is many small
sequential calls (docs/benchmarks.md), so requests that wait together are sampled together. Three things
keep every request's series independent of the others in its batch:

- each request draws its noise from its own ``torch.Generator(seed)``, in exactly the order
  ``StageDiff.sample`` draws it (initial noise, then any sampler noise per step);
- every linear layer and convolution runs on at least 4 rows (:class:`MinimumRows`). On a CPU, a matrix
  product of 1-3 rows (a matrix-vector kernel) or a convolution of one sequence takes another kernel than
  a larger one, and its rounding differs in the 7th digit. Found with forward hooks: the step embedding's
  MLP (batch-many rows), the channel-fusion convolution (batch-many sequences) and, with 2 channels, the
  output head (batch x channels rows); every other layer sees batch x channels x stages rows or more;
- :func:`make_batch_invariant` then probes the whole denoiser on this machine; should rows still depend on
  the batch size below some size, smaller batches are padded up to it.

So a request's values depend only on its own fields, with batching on or off. They equal
``StageDiff.sample`` with the same arguments bit for bit when ``n_samples`` is at least 4 (the wrappers are
idle there, so the library's layers run exactly as in the library) and to float32 rounding (about 1e-7
relative) below that. Only single-chunk requests without a prefix are batched (length up to
``CHUNK_WINDOWS`` training windows); the rest run alone through the library's sampling loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from stagediff import StageDiff
from stagediff.generator import CHUNK_WINDOWS, SAMPLING_BATCH

PROBE_SEED = 0
MINIMUM_ROWS = 4
"""A CPU matrix product or convolution of 1-3 rows took other kernels than one of 4 or more (measured)."""


def single_chunk(model: StageDiff, length: int) -> bool:
    """True when the library samples ``length`` steps as one chunk (no seams to carry between calls)."""
    return length <= CHUNK_WINDOWS * model.config.window


class MinimumRows(nn.Module):
    """A linear layer run on at least ``rows`` rows (its input's leading dimensions flattened), or a
    convolution on at least ``rows`` sequences: short inputs are padded with copies of their first row,
    dropped again after, so that the layer takes the same CPU kernel whatever the batch size."""

    def __init__(self, inner: nn.Linear | nn.Conv1d, rows: int = MINIMUM_ROWS):
        super().__init__()
        self.inner, self.rows = inner, rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]) if isinstance(self.inner, nn.Linear) else x
        count = rows.shape[0]
        if count >= self.rows or count == 0:
            return self.inner(x)
        padded = self.inner(torch.cat([rows, rows[:1].expand(self.rows - count, *rows.shape[1:])]))[:count]
        return padded.reshape(*x.shape[:-1], padded.shape[-1]) if isinstance(self.inner, nn.Linear) else padded


@torch.inference_mode()
def make_batch_invariant(model: StageDiff, max_rows: int) -> int | None:
    """Wrap (once) in :class:`MinimumRows` each linear layer and convolution of ``model``'s denoiser that
    sees fewer than MINIMUM_ROWS rows for one sample of one stage (rows grow with samples and stages, so
    those are all that can), then return the smallest batch from which the whole denoiser's rows do not
    depend on the batch size (:func:`invariant_batch`; 1 where the wrappers suffice, None where none does)."""
    denoiser = model.require_trained()
    fewest: dict[nn.Module, int] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        rows = x.numel() // x.shape[-1] if isinstance(module, nn.Linear) else x.shape[0]
        fewest[module] = min(rows, fewest.get(module, rows))

    layers = [m for m in denoiser.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    hooks = [layer.register_forward_pre_hook(record) for layer in layers]
    try:
        device = next(denoiser.parameters()).device
        x = torch.zeros((1, model.config.effective_stage_length, denoiser.channels), device=device)
        denoiser(x, torch.zeros(1, dtype=torch.long, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    for parent in list(denoiser.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(parent, MinimumRows) and fewest.get(child, MINIMUM_ROWS) < MINIMUM_ROWS:
                setattr(parent, name, MinimumRows(child))
    return invariant_batch(model, max_rows)


@torch.inference_mode()
def sample_batch(model: StageDiff, requests: list[tuple[int, int]], length: int, steps: int, sampler: str,
                 min_rows: int = 1) -> list[np.ndarray]:
    """Sample several requests ``(n, seed)`` of one chunk of ``length`` steps together.

    Returns one array (n, length, channels) in data units per request, each equal to what
    ``model.sample_array(n, length, seed, steps, sampler=sampler)`` computes (see the module docstring for
    the precision). Rows are padded with zeros up to ``min_rows``; padding rows are discarded."""
    denoiser = model.require_trained()
    chosen = model.make_sampler(sampler, steps)
    device = next(denoiser.parameters()).device
    generators = [torch.Generator().manual_seed(int(seed)) for _, seed in requests]
    shape = (length, denoiser.channels)
    rows = [n for n, _ in requests]
    parts = [torch.randn((n, *shape), generator=generator) for n, generator in zip(rows, generators)]
    padding = max(0, min_rows - sum(rows))
    x = torch.cat(parts + [torch.zeros((padding, *shape))]).to(device)
    bounds = np.cumsum([0, *rows])
    for index, t in enumerate(chosen.timesteps):
        x0 = chosen.clip(denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=device)).float())
        stepped = [chosen.step(x0[a:b], index, x[a:b], generator)
                   for a, b, generator in zip(bounds[:-1], bounds[1:], generators)]
        x = torch.cat(stepped + [x[bounds[-1]:]])
    x = x.cpu()
    return [model.scaler.inverse_transform(x[a:b].double().numpy()) for a, b in zip(bounds[:-1], bounds[1:])]


@torch.inference_mode()
def invariant_batch(model: StageDiff, max_rows: int, candidates: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> int | None:
    """The smallest batch from which the denoiser's rows do not depend on the batch size, probed on this
    machine: for batches of several sizes from the candidate up to ``max_rows``, the outputs must equal,
    bit for bit, the same rows of a batch of ``max_rows``, at one stage and at one training window.
    None when no candidate below ``max_rows`` passes (then requests cannot share a batch exactly)."""
    denoiser = model.require_trained()
    device = next(denoiser.parameters()).device
    config = model.config
    generator = torch.Generator().manual_seed(PROBE_SEED)
    probes = []
    for length in sorted({config.effective_stage_length, config.window}):
        x = torch.randn((max_rows, length, denoiser.channels), generator=generator).to(device)
        t = torch.full((max_rows,), config.diffusion_steps // 2, dtype=torch.long, device=device)
        probes.append((x, t, denoiser(x, t)))
    for size in (c for c in candidates if c < max_rows):
        sizes = sorted({size, size + 1, size + 2, 2 * size + 1, max_rows // 2 + 1, max_rows - 1} & set(range(size, max_rows)))
        if all(torch.equal(denoiser(x[:s], t[:s]), reference[:s]) for x, t, reference in probes for s in sizes):
            return size
    return None


@dataclass(eq=False)
class Job:
    key: tuple[int, int, str]
    """(length, steps, sampler): jobs batch together only when these agree."""
    n: int
    seed: int
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Runs sampling jobs on one worker thread, a batch at a time.

    While a batch runs, new jobs queue; the next batch takes the oldest waiting job and every other
    waiting job with the same (length, steps, sampler), up to ``max_rows`` rows (``max_jobs`` jobs).
    A lone request starts at once: there is no waiting window. A job whose client went away before its
    batch started is dropped."""

    def __init__(self, model: StageDiff, executor: Executor, *, max_rows: int, max_jobs: int, min_rows: int):
        self.model, self.executor = model, executor
        self.max_rows, self.max_jobs, self.min_rows = max_rows, max_jobs, min_rows
        self.pending: deque[Job] = deque()
        self.draining: asyncio.Task | None = None
        self.batches = 0
        self.jobs = 0

    def accepts(self, n: int, length: int) -> bool:
        return n <= SAMPLING_BATCH and single_chunk(self.model, length)

    async def sample(self, n: int, length: int, seed: int, steps: int, sampler: str) -> np.ndarray:
        """(n, length, channels) in data units, as :func:`sample_batch` computes it for this request alone."""
        loop = asyncio.get_running_loop()
        job = Job((length, steps, sampler), n, seed, loop.create_future())
        self.pending.append(job)
        if self.draining is None or self.draining.done():
            self.draining = loop.create_task(self.drain())
        return await job.future

    def take(self) -> list[Job]:
        """The next batch, oldest job first; cancelled jobs are dropped."""
        while self.pending and self.pending[0].future.done():
            self.pending.popleft()
        if not self.pending:
            return []
        first = self.pending.popleft()
        batch, rows, keep = [first], first.n, deque()
        while self.pending:
            job = self.pending.popleft()
            if job.future.done():
                continue
            if job.key == first.key and rows + job.n <= self.max_rows and len(batch) < self.max_jobs:
                batch.append(job)
                rows += job.n
            else:
                keep.append(job)
        self.pending = keep
        return batch

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := self.take():
            length, steps, sampler = batch[0].key
            requests = [(job.n, job.seed) for job in batch]
            try:
                results = await loop.run_in_executor(self.executor, sample_batch, self.model, requests, length,
                                                     steps, sampler, self.min_rows)
            except Exception as error:  # handed to every waiting request; the service maps it to a status
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            self.batches += 1
            self.jobs += len(batch)
            for job, values in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(values)
