"""Batching concurrent requests changes no request's values: each keeps its own noise stream, and the
denoiser's rows do not depend on the batch size."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import Batcher, MinimumRows, make_batch_invariant, sample_batch
from stagediff import StageDiff


@pytest.fixture(scope="module")
def invariant(model_dir) -> tuple[StageDiff, int]:
    """The tiny model with the service's batch-invariant layers, and the batch it needs no padding from."""
    model = StageDiff.load(model_dir)
    rows = make_batch_invariant(model, 16)
    assert rows is not None and rows < 16
    return model, rows


def test_only_layers_that_see_few_rows_are_wrapped_once_and_padding_is_unnecessary(invariant):
    model, rows = invariant
    assert rows == 1  # measured on this machine; elsewhere the probe may ask for padding instead
    wrapped = {name for name, module in model.denoiser.named_modules() if isinstance(module, MinimumRows)}
    # the step embedding (one row per sample), the channel fusion (one sequence per sample) and, with two
    # channels, the output heads (two rows per sample)
    assert {"step_embedding.mlp.0", "step_embedding.mlp.2", "fusion.0"} <= wrapped
    assert all(name.startswith(("step_embedding", "fusion", "layers.")) for name in wrapped)
    assert not any("attention" in name or "feedforward" in name for name in wrapped)
    assert make_batch_invariant(model, 16) == 1
    assert {name for name, module in model.denoiser.named_modules() if isinstance(module, MinimumRows)} == wrapped


def test_batched_requests_equal_the_library_sample(invariant, served_model):
    model, rows = invariant
    together = sample_batch(model, [(1, 5), (4, 3), (2, 9)], 64, 5, "ddim", rows)
    library = served_model.sample_array(4, 64, seed=3, steps=5, progress=False)
    assert np.array_equal(together[1], library)  # bit for bit from 4 samples on
    assert [values.shape for values in together] == [(1, 64, 2), (4, 64, 2), (2, 64, 2)]


def test_a_request_gets_the_same_values_alone_or_in_any_batch(invariant, served_model):
    model, rows = invariant
    alone = sample_batch(model, [(1, 5)], 96, 5, "ddim", rows)[0]
    for company in ([(3, 1)], [(2, 8), (4, 2)], [(1, 1)] * 7):
        together = sample_batch(model, [*company, (1, 5)], 96, 5, "ddim", rows)[-1]
        assert np.array_equal(alone, together)
    # Below 4 samples the library's own layers take other kernels: equal to float32 rounding only.
    library = served_model.sample_array(1, 96, seed=5, steps=5, progress=False)
    np.testing.assert_allclose(alone, library, rtol=1e-5)


def test_ancestral_sampling_draws_each_request_noise_from_its_own_seed(invariant, served_model):
    model, rows = invariant
    together = sample_batch(model, [(2, 1), (4, 4)], 32, 20, "ddpm", rows)
    library = served_model.sample_array(4, 32, seed=4, sampler="ddpm", progress=False)
    assert np.array_equal(together[1], library)


def run_concurrently(batcher: Batcher, requests: list[tuple[int, int]], length: int = 64) -> list[np.ndarray]:
    async def main():
        return await asyncio.gather(*(batcher.sample(n, length, seed, 5, "ddim") for n, seed in requests))

    return asyncio.run(main())


def test_requests_that_wait_together_share_batches(invariant):
    served_model, min_rows = invariant
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=8, max_jobs=8, min_rows=min_rows)
        results = run_concurrently(batcher, [(1, seed) for seed in range(10)])
        alone = Batcher(served_model, executor, max_rows=8, max_jobs=1, min_rows=min_rows)
        expected = run_concurrently(alone, [(1, seed) for seed in range(10)])
    # All ten queue before the sampling thread is free: batches of at most 8 rows, 8 then 2.
    assert batcher.jobs == 10 and batcher.batches == 2
    assert alone.batches == 10
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))


def test_only_requests_of_one_shape_are_batched_and_order_is_kept(invariant):
    served_model, min_rows = invariant
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, min_rows=min_rows)

        async def main():
            return await asyncio.gather(batcher.sample(1, 64, 0, 5, "ddim"), batcher.sample(1, 32, 1, 5, "ddim"),
                                        batcher.sample(1, 64, 2, 5, "ddim"), batcher.sample(1, 64, 3, 3, "ddim"))

        shapes = [values.shape for values in asyncio.run(main())]
    assert shapes == [(1, 64, 2), (1, 32, 2), (1, 64, 2), (1, 64, 2)]
    assert batcher.batches == 3  # (64, 5 steps) twice together, then 32 and the 3-step request alone


def test_a_request_cancelled_while_waiting_is_never_sampled(invariant):
    served_model, min_rows = invariant
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


def test_long_or_continued_requests_are_not_batched(invariant):
    served_model, min_rows = invariant
    with ThreadPoolExecutor(1) as executor:
        batcher = Batcher(served_model, executor, max_rows=16, max_jobs=16, min_rows=min_rows)
        assert batcher.accepts(16, 4 * 32)
        assert not batcher.accepts(1, 4 * 32 + 8)  # more than one chunk: the library carries the seams
