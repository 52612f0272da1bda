"""Batching concurrent requests changes no request's values: the service hands waiting requests to the library's
``sample_many``, which gives each the bytes it gets alone."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.batching import Batcher, Turns, Work, rows_independent
from stagediff import SampleRequest, StageDiff
from stagediff.model import StageDiffDenoiser


def test_the_denoisers_rows_do_not_depend_on_the_batch_on_this_machine(served_model):
    assert rows_independent(served_model, 16)


def test_a_denoiser_without_the_padding_of_few_rows_fails_the_probe(model_dir):
    # the probe can fail: without batch_invariant, a call of 1-3 rows takes other CPU kernels (measured here)
    model = StageDiff.load(model_dir)
    plain = StageDiffDenoiser(model.config, model.denoiser.channels)
    plain.load_state_dict(model.denoiser.state_dict())
    model.denoiser = plain.eval()
    assert not rows_independent(model, 16)


def run_concurrently(batcher: Batcher, requests: list[SampleRequest]) -> list[np.ndarray]:
    async def main():
        return await asyncio.gather(*(batcher.sample(request) for request in requests))

    return asyncio.run(main())


def test_requests_that_wait_together_share_batches_and_get_what_they_get_alone(served_model):
    requests = [SampleRequest(1, 64, seed, 5) for seed in range(10)]
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=8, max_jobs=8)
        results = run_concurrently(batcher, requests)
        alone = Batcher(served_model, executor, max_rows=8, max_jobs=1)
        expected = run_concurrently(alone, requests)
    # All ten queue before the sampling thread is free: batches of at most 8 rows, 8 then 2.
    assert batcher.jobs == 10 and batcher.batches == 2
    assert alone.batches == 10
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))
    assert np.array_equal(results[3], served_model.sample_array(1, 64, seed=3, steps=5, progress=False))


def test_only_requests_with_one_batch_key_are_batched_and_order_is_kept(served_model, training_frame):
    prefix = training_frame[["a", "b"]].to_numpy()[-16:]
    requests = [
        SampleRequest(1, 64, 0, 5),
        SampleRequest(1, 32, 1, 5),
        SampleRequest(1, 64, 2, 5),
        SampleRequest(1, 64, 3, 3),
        SampleRequest(2, 256, 4, 5, prefix),
        SampleRequest(1, 256, 5, 5, prefix * 2),
    ]
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16)
        results = run_concurrently(batcher, requests)
    assert [values.shape for values in results] == [
        (1, 64, 2),
        (1, 32, 2),
        (1, 64, 2),
        (1, 64, 2),
        (2, 256, 2),
        (1, 256, 2),
    ]
    # (64, 5 steps) twice together, the long continuations together, 32 and the 3-step request alone
    assert batcher.batches == 4
    alone = served_model.sample_array(1, 256, seed=5, steps=5, prefix=prefix * 2, progress=False)
    assert np.array_equal(results[-1], alone)


def test_a_request_cancelled_while_waiting_is_never_sampled(served_model):
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16)

        async def main():
            first = asyncio.ensure_future(batcher.sample(SampleRequest(1, 64, 0, 5)))
            gone = asyncio.ensure_future(batcher.sample(SampleRequest(1, 64, 1, 5)))
            await asyncio.sleep(0)  # both queued; the first one's batch is running
            gone.cancel()
            await first
            await asyncio.sleep(0.05)

        asyncio.run(main())
    assert batcher.jobs == 1


def test_the_turn_goes_to_work_that_has_gone_then_overdue_work_then_the_least_computed_per_request():
    turns = Turns(slice_seconds=0.5, patience=2.0)
    now = time.monotonic()
    small, large, batch, old, gone = Work(), Work(), Work(), Work(), Work()
    small.computed, large.computed, batch.computed, old.computed, gone.computed = 0.5, 30.0, 6.0, 50.0, 9.0
    batch.weight = 20  # 0.3 s per request
    small.waiting_since = large.waiting_since = batch.waiting_since = gone.waiting_since = now
    old.waiting_since = now - 2.5  # waited more than the patience
    gone.left = True
    with turns.condition:
        turns.waiting = [small, large, batch, old, gone]
        order = []
        for _ in range(5):
            turns.pass_turn()
            order.append(turns.holder)
            turns.holder = None
    assert order == [gone, old, batch, small, large]


def test_a_small_request_overtakes_a_large_one_and_both_get_their_bytes(served_model):
    """The large request (4 x 720 steps: 6 chunks of 20 network evaluations) holds the turn; the small one arrives
    once the large one is known to need more than ``long`` seconds more, starts beside it and finishes first: it
    waits for one network evaluation, not for the large one's end."""
    large, small = SampleRequest(4, 720, 1, 20), SampleRequest(1, 32, 2, 5)
    with ThreadPoolExecutor(4) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, long=0.2)

        async def main():
            finished = {}

            async def timed(name, request):
                values = await batcher.sample(request)
                finished[name] = time.monotonic()
                return values

            big = asyncio.ensure_future(timed("large", large))
            while not big.done() and (not batcher.running or batcher.seconds_left(next(iter(batcher.running))) < 0.5):
                await asyncio.sleep(0.01)
            asked = time.monotonic()
            little = await timed("small", small)
            return await big, little, asked, finished

        big, little, asked, finished = asyncio.run(main())
    assert finished["small"] < finished["large"]
    assert finished["large"] - finished["small"] > finished["small"] - asked
    assert batcher.batches == 2 and batcher.jobs == 2
    assert np.array_equal(big, served_model.sample_array(4, 720, seed=1, steps=20, progress=False))
    assert np.array_equal(little, served_model.sample_array(1, 32, seed=2, steps=5, progress=False))


def test_requests_wait_for_a_batch_that_ends_soon_to_be_batched_together(served_model):
    """Beside a batch expected to end within ``long`` seconds nothing starts: the requests that arrive meanwhile
    are batched together when it ends."""
    with ThreadPoolExecutor(4) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, long=60.0)

        async def main():
            first = asyncio.ensure_future(batcher.sample(SampleRequest(1, 64, 0, 5)))
            while not batcher.running or not next(iter(batcher.running)).evaluations:
                await asyncio.sleep(0.005)
            later = [asyncio.ensure_future(batcher.sample(SampleRequest(1, 64, seed, 5))) for seed in (1, 2, 3)]
            await asyncio.sleep(0.05)
            return await first, await asyncio.gather(*later)

        asyncio.run(main())
    assert batcher.batches == 2 and batcher.jobs == 4


def test_a_batch_whose_requests_have_all_gone_stops_at_its_next_evaluation(served_model):
    with ThreadPoolExecutor(2) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16)

        async def main():
            request = asyncio.ensure_future(batcher.sample(SampleRequest(8, 3000, 1, 20)))  # about 10 s alone
            while not batcher.running:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)
            request.cancel()
            left = time.monotonic()
            while batcher.running:
                await asyncio.sleep(0.005)
            return time.monotonic() - left

        assert asyncio.run(main()) < 0.5  # an evaluation of 8 x 128 steps takes milliseconds
    assert batcher.turns.cancelled == 1 and batcher.batches == 0
