"""Batching concurrent requests without changing what any of them gets back.

On a small CPU one sample of 256 steps costs nearly as much as several: each reverse step is many small
sequential calls (docs/benchmarks.md), so requests that wait together are sampled together, by the library's
:meth:`StageDiff.sample_many`: each request draws its noise from its own seed, in the order it would alone, and
the denoiser's rows do not depend on the batch (:meth:`StageDiffDenoiser.batch_invariant`). So a request gets the
same bytes as ``StageDiff.sample_array`` with the same arguments, batched or not. :func:`rows_independent`
checks that on the machine the service runs on; where it fails, requests are sampled one at a time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stagediff import StageDiff
from stagediff.generator import SAMPLING_BATCH, SampleRequest, SamplingRun

PROBE_SEED = 0


@torch.inference_mode()
def rows_independent(model: StageDiff, max_rows: int) -> bool:
    """Whether the denoiser's rows are the same bytes in batches of any size up to ``max_rows``, probed on this
    machine: batches of 1 .. max_rows - 1 rows must equal the same rows of a batch of ``max_rows``, at one stage
    and at one training window."""
    denoiser = model.require_trained()
    device = next(denoiser.parameters()).device
    config = model.config
    generator = torch.Generator().manual_seed(PROBE_SEED)
    sizes = sorted({1, 2, 3, 4, 5, max_rows // 2 + 1, max_rows - 1} & set(range(1, max_rows)))
    for length in sorted({config.effective_stage_length, config.window}):
        x = torch.randn((max_rows, length, denoiser.channels), generator=generator).to(device)
        t = torch.full((max_rows,), config.diffusion_steps // 2, dtype=torch.long, device=device)
        reference = denoiser(x, t)
        if not all(torch.equal(denoiser(x[:s], t[:s]), reference[:s]) for s in sizes):
            return False
    return True


@dataclass(eq=False)
class Job:
    run: SamplingRun
    key: Any
    """The library's batch key (:attr:`SamplingRun.batch_key`): jobs batch only when it agrees."""
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Runs sampling jobs on one worker thread, a batch at a time.

    While a batch runs, new jobs queue; the next batch takes the oldest waiting job and every other
    waiting job with the same batch key, up to ``max_rows`` rows (``max_jobs`` jobs). A lone request
    starts at once: there is no waiting window. A job whose client went away before its batch started is
    dropped."""

    def __init__(self, model: StageDiff, executor: Executor, *, max_rows: int, max_jobs: int):
        self.model, self.executor = model, executor
        self.max_rows, self.max_jobs = max_rows, max_jobs
        self.pending: deque[Job] = deque()
        self.draining: asyncio.Task | None = None
        self.batches = 0
        self.jobs = 0

    async def sample(self, request: SampleRequest | SamplingRun) -> np.ndarray:
        """(n, length, channels) in data units, the same bytes as the library samples this request alone."""
        run = request if isinstance(request, SamplingRun) else self.model.plan_sampling(request)
        loop = asyncio.get_running_loop()
        job = Job(run, run.batch_key if run.n <= SAMPLING_BATCH else object(), loop.create_future())
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
        batch, rows, keep = [first], first.run.n, deque()
        while self.pending:
            job = self.pending.popleft()
            if job.future.done():
                continue
            if job.key == first.key and rows + job.run.n <= self.max_rows and len(batch) < self.max_jobs:
                batch.append(job)
                rows += job.run.n
            else:
                keep.append(job)
        self.pending = keep
        return batch

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := self.take():
            try:
                results = await loop.run_in_executor(self.executor, self.model.sample_many,
                                                     [job.run for job in batch])
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
