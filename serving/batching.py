"""Sampling for the service: turns between requests, batching that changes no request's values, and an end to the
work of clients that have gone.

Turns. Sampling runs on worker threads, one computing at a time (so requests never compete for the cores), and the
turn can pass between two network evaluations (the library's step callback): once the work holding it has computed
for SLICE seconds and others wait, the turn goes to the waiting work that has computed least so far per request in
it (a batch of 30 requests has computed 30 times less per request than one request in the same time), so a small
request overtakes a large one at the large one's next evaluation and runs to its end. Work that has waited PATIENCE
seconds goes first, so a large request still gets a share under a flood of small ones. No request waits longer for
the CPU than one network evaluation of the largest batch (at most ``max_samples`` series of 4 training windows,
serving.requests.RequestLimits) before its turn, unless others are served first by these rules.

Batching. On a small CPU one sample of 256 steps costs nearly as much as several: each reverse step is many small
sequential calls (results/decisions.md, "Speed of the library; threads"), so requests that wait together are
sampled together, by the library's :meth:`StageDiff.sample_many`: each request draws its noise from its own seed,
in the order it would alone, and the denoiser's rows do not depend on the batch
(:meth:`StageDiffDenoiser.batch_invariant`). So a request gets the same bytes as ``StageDiff.sample_array`` with
the same arguments, batched or not. :func:`rows_independent` checks that on the machine the service runs on; where
it fails, requests are sampled one at a time. A new batch starts at once when nothing runs, and beside the running
batches while each of them is expected to run for more than LONG seconds per request in it (from its evaluations so
far): a large request does not make others wait, while a batch of many small ones that ends soon for each of them
does, so that new requests are batched together.

Clients that leave. Work whose requests have all gone (the service cancels a request whose client disconnected)
stops at its next network evaluation: the step callback raises :class:`Cancelled`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np
import torch

from stagediff import StageDiff
from stagediff.generator import SAMPLING_BATCH, SampleRequest, SamplingRun
from stagediff.model import STABLE_ROWS

PROBE_SEED = 0
SLICE = 0.5
"""Seconds of computing after which a turn passes to waiting work (at the end of a network evaluation)."""
PATIENCE = 4 * SLICE
"""Seconds after which waiting work goes next, whatever it has computed."""
LONG = 4 * SLICE
"""Seconds of work left per request in it from which a running batch no longer makes new requests wait for its end."""
T = TypeVar("T")


@torch.inference_mode()
def rows_independent(model: StageDiff, max_rows: int) -> bool:
    """Whether the denoiser's rows are the same bytes in batches of any size up to ``max_rows``, probed on this
    machine and at torch's thread count: batches of 1 .. STABLE_ROWS rows (where CPU kernels were seen to change with
    the row count; :meth:`StageDiffDenoiser.batch_invariant`) and of more, below ``max_rows``, must equal the same
    rows of a batch of ``max_rows``, at one stage and at one training window."""
    denoiser = model.require_trained()
    device = next(denoiser.parameters()).device
    config = model.config
    generator = torch.Generator().manual_seed(PROBE_SEED)
    sizes = sorted((set(range(1, STABLE_ROWS + 1)) | {max_rows // 2 + 1, max_rows - 1}) & set(range(1, max_rows)))
    for length in sorted({config.effective_stage_length, config.window}):
        x = torch.randn((max_rows, length, denoiser.channels), generator=generator).to(device)
        t = torch.full((max_rows,), config.diffusion_steps // 2, dtype=torch.long, device=device)
        c = (
            torch.rand((max_rows, length, denoiser.calendar_inputs), generator=generator).to(device) * 2 - 1
            if denoiser.calendar_inputs
            else None
        )
        reference = denoiser(x, t, c)
        if not all(torch.equal(denoiser(x[:s], t[:s], None if c is None else c[:s]), reference[:s]) for s in sizes):
            return False
    return True


class Cancelled(Exception):
    """Raised on a sampling thread, between two network evaluations, when every request of the work has gone."""


class Work:
    """Something that takes turns: a batch of requests, or one stream (over all its pieces)."""

    def __init__(self) -> None:
        self.left = False
        """Set (on the event loop) when the work's client has gone."""
        self.computed = 0.0
        """Seconds it held the turn so far (brought up to date whenever the turn may pass)."""
        self.waiting_since = 0.0
        self.evaluations = 0
        """Network evaluations so far."""
        self.weight = 1
        """Requests it serves."""

    def gone(self) -> bool:
        return self.left


class Turns:
    """One computing at a time among the threads that sample; see the module's description for who goes next."""

    def __init__(self, slice_seconds: float = SLICE, patience: float = PATIENCE):
        self.slice, self.patience = slice_seconds, patience
        self.condition = threading.Condition()
        self.waiting: list[Work] = []
        self.holder: Work | None = None
        self.since = 0.0
        self.cancelled = 0
        """Works stopped (or never started) because their clients had gone."""

    def run(self, work: Work, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on this thread in ``work``'s turns; it must call :meth:`checkpoint` between network
        evaluations. Raises :class:`Cancelled` without running it if the work has gone."""
        with self.condition:
            self.wait_for_turn(work)
        try:
            if work.gone():
                raise Cancelled
            return function(*args)
        except Cancelled:
            with self.condition:
                self.cancelled += 1
            raise
        finally:
            with self.condition:
                work.computed += time.monotonic() - self.since
                self.holder = None
                self.pass_turn()

    def checkpoint(self, work: Work) -> None:
        """Between two network evaluations of ``work``, which holds the turn: raise :class:`Cancelled` if it has
        gone, else pass the turn on if it was held for a slice and others wait (and wait for it to come back)."""
        if work.gone():
            raise Cancelled
        with self.condition:
            work.evaluations += 1
            now = time.monotonic()
            if not self.waiting or now - self.since < self.slice:
                return
            work.computed += now - self.since
            self.holder = None
            self.wait_for_turn(work)
        if work.gone():
            raise Cancelled

    def computed(self, work: Work) -> float:
        """Seconds ``work`` has held the turn so far, the turn it may hold now included."""
        with self.condition:
            return work.computed + (time.monotonic() - self.since if self.holder is work else 0.0)

    def wait_for_turn(self, work: Work) -> None:
        """(Lock held.) Queue ``work`` and wait until the turn is its own."""
        work.waiting_since = time.monotonic()
        self.waiting.append(work)
        if self.holder is None:
            self.pass_turn()
        while self.holder is not work:
            self.condition.wait()

    def pass_turn(self) -> None:
        """(Lock held, no holder.) Give the turn to work that has gone (it stops at once), else to work that has
        waited PATIENCE seconds (the longest waiting first), else to the work that has computed least per request."""
        if not self.waiting:
            return
        now = time.monotonic()
        gone = [work for work in self.waiting if work.gone()]
        overdue = [work for work in self.waiting if now - work.waiting_since >= self.patience]
        if gone:
            chosen = gone[0]
        elif overdue:
            chosen = min(overdue, key=lambda work: work.waiting_since)
        else:
            chosen = min(self.waiting, key=lambda work: work.computed / work.weight)
        self.waiting.remove(chosen)
        self.holder, self.since = chosen, now
        self.condition.notify_all()


@dataclass(eq=False)
class Job:
    run: SamplingRun
    key: Any
    """The library's batch key (:attr:`SamplingRun.batch_key`): jobs batch only when it agrees."""
    future: asyncio.Future = field(repr=False)


class Batch(Work):
    """Jobs sampled together; gone when every one of them has been cancelled."""

    def __init__(self, jobs: list[Job]):
        super().__init__()
        self.jobs = jobs
        self.weight = len(jobs)
        self.total = max(job.run.evaluations * -(-job.run.n // SAMPLING_BATCH) for job in jobs)
        """Network evaluations of the whole batch."""

    def gone(self) -> bool:
        return all(job.future.cancelled() for job in self.jobs)


class Batcher:
    """Runs sampling jobs in batches on worker threads of ``executor``, in :class:`Turns`.

    A batch takes the oldest waiting job and every other waiting job with the same batch key, up to ``max_rows``
    rows (``max_jobs`` jobs). A lone request starts at once: there is no waiting window. A job whose client went
    away before its batch started is dropped; a batch whose every client went away stops at its next network
    evaluation."""

    def __init__(self, model: StageDiff, executor: Executor, *, max_rows: int, max_jobs: int, long: float = LONG):
        self.model, self.executor = model, executor
        self.max_rows, self.max_jobs, self.long = max_rows, max_jobs, long
        self.turns = Turns()
        self.pending: deque[Job] = deque()
        self.running: set[Batch] = set()
        self.tasks: set[asyncio.Task] = set()
        self.recheck: asyncio.Handle | None = None
        self.batches = 0
        self.jobs = 0

    async def sample(self, request: SampleRequest | SamplingRun) -> np.ndarray:
        """(n, length, channels) in data units, the same bytes as the library samples this request alone."""
        run = request if isinstance(request, SamplingRun) else self.model.plan_sampling(request)
        loop = asyncio.get_running_loop()
        job = Job(run, run.batch_key if run.n <= SAMPLING_BATCH else object(), loop.create_future())
        self.pending.append(job)
        loop.call_soon(self.dispatch)  # after the jobs that arrive in the same turn of the loop
        return await job.future

    async def compute(self, work: Work, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on a worker thread in ``work``'s turns (it calls ``checkpoint(work)`` between network
        evaluations); a cancellation here marks the work as gone, which stops it at its next evaluation."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self.turns.run, work, function, *args)
        except asyncio.CancelledError:
            work.left = True
            raise

    def checkpoint(self, work: Work) -> Callable[[], None]:
        """The step callback for the library's sampling of ``work``."""
        return partial(self.turns.checkpoint, work)

    def dispatch(self) -> None:
        """Start batches from the waiting jobs: at once when no batch runs, beside the running ones while each is
        expected to run for more than ``long`` seconds per request in it (checked again a tenth of a slice later
        until then)."""
        if self.recheck is not None:
            self.recheck.cancel()
            self.recheck = None
        loop = asyncio.get_running_loop()
        while self.pending:
            if any(self.seconds_left(batch) < self.long * batch.weight for batch in self.running):
                self.recheck = loop.call_later(self.turns.slice / 10, self.dispatch)
                return
            jobs = self.take()
            if not jobs:
                return
            batch = Batch(jobs)
            self.running.add(batch)
            task = loop.create_task(self.run_batch(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def seconds_left(self, batch: Batch) -> float:
        """The batch's remaining evaluations at its average time per evaluation so far (0 before its first)."""
        done = batch.evaluations
        return 0.0 if done == 0 else (batch.total - done) * self.turns.computed(batch) / done

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

    async def run_batch(self, batch: Batch) -> None:
        try:
            results = await self.compute(
                batch, self.model.sample_many, [job.run for job in batch.jobs], self.checkpoint(batch)
            )
        except Cancelled:
            pass
        except Exception as error:  # handed to every waiting request; the service maps it to a status
            for job in batch.jobs:
                if not job.future.done():
                    job.future.set_exception(error)
        else:
            self.batches += 1
            self.jobs += len(batch.jobs)
            for job, values in zip(batch.jobs, results):
                if not job.future.done():
                    job.future.set_result(values)
        finally:
            self.running.discard(batch)
            self.dispatch()
