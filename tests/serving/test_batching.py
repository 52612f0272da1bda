"""Batching concurrent requests changes no request's values: each keeps its own noise stream, and the
denoiser always runs at a batch size where its rows do not depend on the batch."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import Batcher, invariant_batch, sample_batch


@pytest.fixture(scope="module")
def min_rows(served_model) -> int:
    rows = invariant_batch(served_model, 16)
    assert rows is not None and rows < 16
    return rows


def test_batched_requests_equal_the_library_sample(served_model, min_rows):
    n = max(min_rows, 2)
    together = sample_batch(served_model, [(1, 5), (n, 3), (2, 9)], 64, 5, "ddim", min_rows)
    library = served_model.sample_array(n, 64, seed=3, steps=5, progress=False)
    assert np.array_equal(together[1], library)  # bit for bit from min_rows rows on
    assert [values.shape for values in together] == [(1, 64, 2), (n, 64, 2), (2, 64, 2)]


def test_a_request_gets_the_same_values_alone_or_in_any_batch(served_model, min_rows):
    alone = sample_batch(served_model, [(1, 5)], 96, 5, "ddim", min_rows)[0]
    for company in ([(3, 1)], [(2, 8), (4, 2)], [(1, 1)] * 7):
        together = sample_batch(served_model, [*company, (1, 5)], 96, 5, "ddim", min_rows)[-1]
        assert np.array_equal(alone, together)
    # Below min_rows the library runs a smaller batch: equal to float32 rounding only.
    library = served_model.sample_array(1, 96, seed=5, steps=5, progress=False)
    np.testing.assert_allclose(alone, library, rtol=1e-5)


def test_ancestral_sampling_draws_each_request_noise_from_its_own_seed(served_model, min_rows):
    together = sample_batch(served_model, [(2, 1), (min_rows, 4)], 32, 20, "ddpm", min_rows)
    library = served_model.sample_array(min_rows, 32, seed=4, sampler="ddpm", progress=False)
    assert np.array_equal(together[1], library)


def run_concurrently(batcher: Batcher, requests: list[tuple[int, int]], length: int = 64) -> list[np.ndarray]:
    async def main():
        return await asyncio.gather(*(batcher.sample(n, length, seed, 5, "ddim") for n, seed in requests))

    return asyncio.run(main())


def test_requests_that_wait_together_share_batches(served_model, min_rows):
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=8, max_jobs=8, min_rows=min_rows)
        results = run_concurrently(batcher, [(1, seed) for seed in range(10)])
        alone = Batcher(served_model, executor, max_rows=8, max_jobs=1, min_rows=min_rows)
        expected = run_concurrently(alone, [(1, seed) for seed in range(10)])
    # All ten queue before the sampling thread is free: batches of at most 8 rows, 8 then 2.
    assert batcher.jobs == 10 and batcher.batches == 2
    assert alone.batches == 10
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))


def test_only_requests_of_one_shape_are_batched_and_order_is_kept(served_model, min_rows):
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, min_rows=min_rows)

        async def main():
            return await asyncio.gather(batcher.sample(1, 64, 0, 5, "ddim"), batcher.sample(1, 32, 1, 5, "ddim"),
                                        batcher.sample(1, 64, 2, 5, "ddim"), batcher.sample(1, 64, 3, 3, "ddim"))

        shapes = [values.shape for values in asyncio.run(main())]
    assert shapes == [(1, 64, 2), (1, 32, 2), (1, 64, 2), (1, 64, 2)]
    assert batcher.batches == 3  # (64, 5 steps) twice together, then 32 and the 3-step request alone


def test_a_request_cancelled_while_waiting_is_never_sampled(served_model, min_rows):
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, min_rows=min_rows)

        async def main():
            first = asyncio.ensure_future(batcher.sample(1, 64, 0, 5, "ddim"))
            gone = asyncio.ensure_future(batcher.sample(1, 64, 1, 5, "ddim"))
            await asyncio.sleep(0)  # both queued; the first one's batch is running
            gone.cancel()
            await first
            await asyncio.sleep(0.05)

        asyncio.run(main())
    assert batcher.jobs == 1


def test_long_or_continued_requests_are_not_batched(served_model, min_rows):
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, min_rows=min_rows)
        assert batcher.accepts(16, 4 * 32)
        assert not batcher.accepts(1, 4 * 32 + 8)  # more than one chunk: the library carries the seams
