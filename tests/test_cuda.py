"""Training on CUDA with the step captured in a CUDA graph. Skipped where there is no GPU (the CI machines and the
development machines here); run on a lent GPU with ``python3 -m pytest tests/test_cuda.py`` (docs/benchmarks.md)."""

from __future__ import annotations

import pytest
import torch
from test_train import scaled_series

from stagediff import StageDiff
from stagediff.train import CHECKPOINT_NAME, GRAPH_WARMUP_STEPS, Trainer, build_denoiser

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_trainer(config, cuda_graph: bool | None) -> Trainer:
    series = scaled_series()
    return Trainer(config, build_denoiser(config, 2), series[:100], series[100:], device="cuda", cuda_graph=cuda_graph)


def test_captured_steps_train_like_eager_ones(tiny_config):
    config = tiny_config.replace(max_steps=40, checkpoint_every=20)
    eager, graphed = cuda_trainer(config, False), cuda_trainer(config, None)
    assert not eager.graphed and graphed.graphed
    eager_result, graphed_result = eager.run(progress=False), graphed.run(progress=False)
    assert graphed.graph is not None and graphed.eager_steps == GRAPH_WARMUP_STEPS
    # same batches and the same kernels: equal up to the order of floating-point sums
    torch.testing.assert_close(
        torch.tensor(graphed_result.losses), torch.tensor(eager_result.losses), rtol=2e-2, atol=1e-4
    )
    assert graphed_result.losses[-1] < graphed_result.losses[0]
    # the same function (weights with no real gradient, as a key bias under softmax, drift apart under Adam)
    x, k = torch.randn(8, config.window, 2, device="cuda"), torch.arange(8, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(graphed.ema.eval()(x, k), eager.ema.eval()(x, k), atol=2e-2, rtol=0)
    # the scheduler fills the learning-rate tensor the graph reads (with a rate baked in at capture, the losses above
    # would part during the warm-up)
    assert float(graphed.optimizer.param_groups[0]["lr"]) == pytest.approx(float(eager.optimizer.param_groups[0]["lr"]))
    assert graphed_result.validation_losses.keys() == eager_result.validation_losses.keys()


def test_captured_run_resumes_from_its_checkpoint_on_cuda_and_on_the_cpu(tiny_config, tmp_path):
    config = tiny_config.replace(max_steps=12, checkpoint_every=4)
    reference = cuda_trainer(config, None)
    reference_result = reference.run(progress=False)
    cuda_trainer(config, None).run(tmp_path / "cuda", stop_after=9, progress=False)
    resumed = cuda_trainer(config, None)
    result = resumed.run(tmp_path / "cuda", progress=False)  # from step 8: warm-up and capture again
    assert result.resumed_from == 8 and result.steps == 12
    torch.testing.assert_close(torch.tensor(result.losses), torch.tensor(reference_result.losses), rtol=2e-2, atol=1e-4)
    assert result.validation_losses == pytest.approx(reference_result.validation_losses, rel=2e-2)

    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / CHECKPOINT_NAME).write_bytes((tmp_path / "cuda" / CHECKPOINT_NAME).read_bytes())
    series = scaled_series()
    on_cpu = Trainer(config, build_denoiser(config, 2), series[:100], series[100:], device="cpu")
    assert on_cpu.run(tmp_path / "cpu", progress=False).steps == 12
    assert isinstance(on_cpu.optimizer.param_groups[0]["lr"], float)


def test_fit_and_sample_on_cuda(tiny_config, frame_factory):
    model = StageDiff(tiny_config.replace(channels=None, max_steps=30)).fit(
        frame_factory(120), "date", progress=False, device="cuda"
    )
    assert model.metadata["training"]["device"].startswith("cuda")
    for sampler in ("ddpm", "ddim"):
        frame = model.sample(2, length=40, seed=0, sampler=sampler, progress=False)
        assert frame.shape[0] == 80 and frame.notna().all().all()
