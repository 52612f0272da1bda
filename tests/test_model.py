"""Tests of stagediff.model: shapes through every module, the ablation variants, channel fusion and a
loss that falls when overfitting one batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stagediff.config import StageDiffConfig
from stagediff.diffusion import NoiseSchedule
from stagediff.model import (
    DecompositionLayer,
    PatchEmbedding,
    StageDiffDenoiser,
    StepEmbedding,
    add_context,
    moving_average,
)
from stagediff.train import Trainer, build_denoiser

ABLATIONS = {
    "full": {},
    "w/o CI": {"channel_independent": False},
    "w/o CD": {"channel_fusion": False},
    "w/o Stage": {"staged": False},
}


def smooth_batch(batch: int = 8, length: int = 32, channels: int = 2, seed: int = 0) -> torch.Tensor:
    """Sine waves in [-0.8, 0.8] with random phases: (batch, length, channels)."""
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, 1, channels, generator=generator) * 2 * math.pi
    t = torch.arange(length, dtype=torch.float32)[None, :, None]
    return 0.8 * torch.sin(2 * math.pi * t / 16 + phase)


# ------------------------------------------------------------------------------------------ building blocks


@pytest.mark.parametrize("dim", [16, 7])
def test_step_embedding_shape_and_distinct_steps(dim):
    torch.manual_seed(0)
    embedding = StepEmbedding(dim)
    out = embedding(torch.tensor([0, 1, 19, 19]))
    assert out.shape == (4, dim)
    assert torch.allclose(out[2], out[3], atol=1e-6)
    assert not torch.allclose(out[0], out[1], atol=1e-3)


@pytest.mark.parametrize("length, patch, stride", [(8, 4, 2), (12, 4, 2), (32, 8, 4), (8, 8, 1)])
def test_patch_embedding_count_follows_the_paper(length, patch, stride):
    embedding = PatchEmbedding(3, length, patch, stride, d_model=16)
    expected = (length - patch) // stride + 1
    assert embedding.count == expected
    assert embedding(torch.randn(5, 3, length)).shape == (5, expected, 16)
    assert embedding.projection.in_features == 3 * patch


def test_moving_average_kernel_one_is_identity():
    x = torch.randn(3, 2, 10)
    assert moving_average(x, 1) is x


@pytest.mark.parametrize("kernel", [3, 5, 25])
def test_moving_average_preserves_length_and_constants(kernel):
    x = torch.randn(2, 3, 8)
    out = moving_average(x, kernel)  # kernel 25 is longer than the series
    assert out.shape == x.shape
    constant = torch.full((2, 3, 8), 4.5)
    assert torch.allclose(moving_average(constant, kernel), constant)


def test_moving_average_values_and_edge_replication():
    x = torch.tensor([[0.0, 3.0, 6.0, 9.0, 12.0]])
    out = moving_average(x, 3)
    assert torch.allclose(out, torch.tensor([[1.0, 3.0, 6.0, 9.0, 11.0]]))  # (0+0+3)/3 at the replicated edge
    wide = moving_average(torch.tensor([[0.0, 6.0]]), 7)  # pad 3 > length 2: edges repeated by hand
    assert torch.allclose(wide, torch.tensor([[18.0 / 7, 24.0 / 7]]))


def test_add_context_takes_values_from_neighbours_and_zeros_at_the_ends():
    batch, stages, channels, length, context = 2, 3, 2, 4, 2
    stages_tensor = (
        torch.arange(batch * stages * channels * length, dtype=torch.float32).view(batch, stages, channels, length) + 1
    )
    out = add_context(stages_tensor, context)
    assert out.shape == (batch, stages, channels, length + 2 * context)
    assert torch.equal(out[..., context:-context], stages_tensor)
    assert torch.equal(out[:, 1:, :, :context], stages_tensor[:, :-1, :, -context:])  # end of the previous stage
    assert torch.equal(out[:, :-1, :, -context:], stages_tensor[:, 1:, :, :context])  # start of the next stage
    assert (out[:, 0, :, :context] == 0).all() and (out[:, -1, :, -context:] == 0).all()
    assert add_context(stages_tensor, 0) is stages_tensor


def test_decomposition_layer_shapes():
    span, stage, patch, stride, d_model = 12, 8, 4, 2, 16
    layer = DecompositionLayer(
        3, span, stage, patch, stride, d_model, heads=2, feedforward=32, encoder_layers=1, decoder_layers=2, dropout=0.0
    )
    tokens = layer.encode(torch.randn(5, 3, span), torch.randn(5, d_model))
    assert tokens.shape == (5, (span - patch) // stride + 1, d_model)
    assert layer.decode(tokens, torch.randn(5, 3, stage)).shape == (5, 3, stage)
    assert len(layer.decoder.blocks) == 2


# ----------------------------------------------------------------------------------------------- denoiser


@pytest.mark.parametrize("stages", [1, 4, 12])  # 12 = three training windows: weights shared across stages
def test_denoiser_output_shape_for_any_number_of_stages(tiny_config, make_denoiser, stages):
    denoiser = make_denoiser(tiny_config)
    x = torch.randn(3, stages * tiny_config.stage_length, 2)
    with torch.no_grad():
        out = denoiser(x, torch.tensor([0, 5, 19]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(2, 30, 2), (2, 32, 3), (2, 32, 1)])
def test_denoiser_rejects_wrong_shapes(tiny_config, make_denoiser, shape):
    with pytest.raises(ValueError, match=r"expected \(batch, a multiple of 8, 2\)"):
        make_denoiser(tiny_config)(torch.randn(*shape), torch.zeros(2, dtype=torch.long))


def test_denoiser_depends_on_the_step(tiny_config, make_denoiser):
    denoiser = make_denoiser(tiny_config)
    x = torch.randn(1, 32, 2)
    with torch.no_grad():
        assert not torch.allclose(denoiser(x, torch.tensor([1])), denoiser(x, torch.tensor([15])))


def test_build_denoiser_is_deterministic_in_the_seed_and_leaves_global_rng_alone(tiny_config):
    state = torch.get_rng_state()
    first, second = build_denoiser(tiny_config, 2), build_denoiser(tiny_config, 2)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    other = build_denoiser(tiny_config.replace(seed=1), 2)
    assert not torch.equal(
        other.layers[0].stage_patches.projection.weight, first.layers[0].stage_patches.projection.weight
    )


# ---------------------------------------------------------------------------------------------- ablations


def test_ablation_structures_differ(tiny_config, make_denoiser):
    models = {name: make_denoiser(tiny_config.replace(**changes)) for name, changes in ABLATIONS.items()}
    patch, stage, channels = tiny_config.patch_length, tiny_config.stage_length, 2

    full = models["full"]
    assert full.fusion is not None and len(full.fusion) == len(tiny_config.pool_kernels)
    assert full.mixing is None
    # the layer's input, with input_skip the noisy stage, with conditioning the known values and where they are
    inputs = (2 if tiny_config.input_skip else 1) + (2 if tiny_config.conditioning else 0)
    shared = 2 * channels if tiny_config.conditioning else 0  # every channel's known values, beside a lone channel
    assert full.layers[0].stage_patches.projection.in_features == (inputs + shared) * patch
    assert full.fusion[0].in_channels == full.fusion[0].out_channels == channels

    joint = models["w/o CI"]
    assert joint.layers[0].stage_patches.projection.in_features == inputs * channels * patch
    assert joint.layers[0].history_patches.projection.in_features == channels * patch
    span = stage + 2 * tiny_config.context if tiny_config.seam_blend else stage  # seam_blend predicts the context too
    assert joint.layers[0].head.out_features == channels * span

    assert models["w/o CD"].fusion is None

    global_stage = models["w/o Stage"]
    assert global_stage.mixing is not None and len(global_stage.mixing) == len(tiny_config.pool_kernels)
    assert global_stage.stage_length == tiny_config.window and global_stage.context == 0
    assert global_stage.layers[0].stage_patches.count == (tiny_config.window - patch) // tiny_config.patch_stride + 1

    counts = {name: model.parameter_count() for name, model in models.items()}
    assert len(set(counts.values())) == len(counts), counts
    fusion_parameters = sum(p.numel() for p in full.fusion.parameters())
    assert counts["full"] - counts["w/o CD"] == fusion_parameters


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_variant_trains_with_the_trainer(tiny_config, name):
    config = tiny_config.replace(**ABLATIONS[name], max_steps=3, checkpoint_every=3)
    denoiser = build_denoiser(config, 2)
    before = [p.detach().clone() for p in denoiser.parameters()]
    series = smooth_batch(1, 96, 2)[0].numpy()
    result = Trainer(config, denoiser, series, series[-40:], device="cpu").run(progress=False)
    assert result.steps == 3 and len(result.losses) == 3
    assert all(math.isfinite(loss) for loss in result.losses)
    assert math.isfinite(result.validation_losses[3])
    assert any(not torch.equal(a, b) for a, b in zip(before, denoiser.parameters()))


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_loss_falls_when_overfitting_one_batch(tiny_config, name):
    config = tiny_config.replace(**ABLATIONS[name])
    denoiser = build_denoiser(config, 2).train()
    generator = torch.Generator().manual_seed(0)
    x0 = smooth_batch(4)
    k = torch.randint(config.diffusion_steps, (4,), generator=generator)
    x_k = NoiseSchedule.create(config.diffusion_steps).add_noise(x0, torch.randn(x0.shape, generator=generator), k)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=3e-3)
    losses = []
    for _ in range(60 if name == "full" else 30):
        loss = F.mse_loss(denoiser(x_k, k), x0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# ------------------------------------------------------------------------------------------ channel fusion


def stage_two_response(denoiser: StageDiffDenoiser, stage_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs for a series and for the same series with channel 0 of stage 1 perturbed."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4 * stage_length, 2, generator=generator)
    perturbed = x.clone()
    perturbed[:, :stage_length, 0] += 3.0
    k = torch.tensor([3, 3])
    with torch.no_grad():
        return denoiser(x, k), denoiser(perturbed, k)


def test_channel_fusion_carries_information_across_channels_to_the_next_stage(tiny_config, make_denoiser):
    stage = tiny_config.stage_length
    base, changed = stage_two_response(make_denoiser(tiny_config), stage)
    # stage 2 of channel 1 sees the fused history of stage 1, which includes channel 0
    assert (base[:, stage : 2 * stage, 1] - changed[:, stage : 2 * stage, 1]).abs().max() > 1e-4


def test_without_context_fusion_only_reaches_later_stages(tiny_config, make_denoiser):
    # (with context, the finer scale also lets stage 1 see the start of stage 2, so the check needs context 0)
    stage = tiny_config.stage_length
    base, changed = stage_two_response(make_denoiser(tiny_config.replace(context=0)), stage)
    assert torch.allclose(base[:, :stage, 1], changed[:, :stage, 1], atol=1e-6)  # no path within a stage
    assert (base[:, stage:, 1] - changed[:, stage:, 1]).abs().max() > 1e-4


def test_without_fusion_channels_stay_independent(tiny_config, make_denoiser):
    stage = tiny_config.stage_length
    base, changed = stage_two_response(make_denoiser(tiny_config.replace(channel_fusion=False)), stage)
    assert torch.allclose(base[..., 1], changed[..., 1], atol=1e-6)
    assert (base[..., 0] - changed[..., 0]).abs().max() > 1e-4  # the perturbed channel itself does respond


def test_without_channel_independence_channels_mix_within_a_stage(tiny_config, make_denoiser):
    stage = tiny_config.stage_length
    config = tiny_config.replace(channel_independent=False, channel_fusion=False)
    base, changed = stage_two_response(make_denoiser(config), stage)
    assert (base[:, :stage, 1] - changed[:, :stage, 1]).abs().max() > 1e-4


@pytest.mark.parametrize("independent", [True, False])
def test_stage_attention_lets_a_stage_see_later_stages_within_reach_only(tiny_config, make_denoiser, independent):
    # context 0 and no fusion: without stage attention a stage sees no later stage at all. One scale, since each
    # scale's block reaches window / stage_length - 1 stages further.
    stage, stages = tiny_config.stage_length, tiny_config.window // tiny_config.stage_length
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2 * stages * stage, 2, generator=generator)  # twice the training window's stages
    k = torch.tensor([3, 3])

    def first_stage_change(denoiser: StageDiffDenoiser, perturbed_stage: int) -> float:
        perturbed = x.clone()
        perturbed[:, perturbed_stage * stage : (perturbed_stage + 1) * stage] += 3.0
        with torch.no_grad():
            return (denoiser(x, k) - denoiser(perturbed, k))[:, :stage].abs().max().item()

    config = tiny_config.replace(context=0, channel_fusion=False, channel_independent=independent, pool_kernels=(5,))
    assert first_stage_change(make_denoiser(config), stages - 1) < 1e-6
    attending = make_denoiser(config.replace(stage_attention=True))
    assert first_stage_change(attending, stages - 1) > 1e-4  # the farthest stage of a training window
    assert first_stage_change(attending, stages) < 1e-6  # one stage beyond the training window's reach


def test_seam_blend_weights_sum_to_one_and_blending_is_exact_for_agreeing_stages():
    from stagediff.model.denoiser import blend_stages, seam_weights

    weights = seam_weights(8, 2)
    assert weights.shape == (12,) and torch.allclose(weights[:4] + weights[-4:], torch.ones(4))
    series = torch.randn(2, 4 * 8 + 4, 3)  # a series padded by the context on both sides
    spans = torch.stack([series[:, m * 8 : m * 8 + 12] for m in range(4)], dim=1).transpose(2, 3)  # (b, M, d, span)
    blended = blend_stages(spans, weights, 2)  # stages that agree on their overlaps give the series back
    assert torch.allclose(blended, spans[..., 2:10], atol=1e-6)
    disagreeing = spans.clone()
    disagreeing[:, 1] += 1.0  # stage 1 predicts 1 higher everywhere: the seams ramp instead of jumping
    out = blend_stages(disagreeing, weights, 2) - blended
    seam = out[0, :, 0].reshape(-1)
    assert seam.diff().abs().max() <= 0.25 + 1e-6  # a 1.0 offset spread over a 4-step ramp


def test_seam_blend_off_is_the_stage_grid():
    config = StageDiffConfig(
        window=32,
        stage_length=8,
        context=2,
        patch_length=4,
        patch_stride=2,
        pool_kernels=(5, 1),
        d_model=16,
        heads=2,
        feedforward=32,
        seam_blend=False,
        channel_independent=True,
    )
    denoiser = StageDiffDenoiser(config, 2)
    assert denoiser.layers[0].head.out_features == 8
    assert denoiser(torch.randn(1, 32, 2), torch.tensor([3])).shape == (1, 32, 2)


def test_skip_parametrization_passes_the_input_through_at_low_noise():
    from stagediff.model.denoiser import output_coefficients

    config = StageDiffConfig(
        window=32,
        stage_length=8,
        context=2,
        patch_length=4,
        patch_stride=2,
        pool_kernels=(5, 1),
        d_model=16,
        heads=2,
        feedforward=32,
        diffusion_steps=50,
        skip_parametrization=True,
        channel_independent=True,
    )
    skip, output = output_coefficients(NoiseSchedule.create(50).alphas_cumprod.float(), config.sigma_data)
    assert skip[0] > 0.99 and skip[-1] < 1e-3 and bool((skip[1:] < skip[:-1]).all())
    assert output[0] < 0.05 and abs(float(output[-1]) - config.sigma_data) < 1e-3
    x = torch.rand(2, 32, 3) * 2 - 1
    with torch.no_grad():
        with_skip = StageDiffDenoiser(config, 3)(x, torch.tensor([0, 0]))
        without = StageDiffDenoiser(config.replace(skip_parametrization=False), 3)(x, torch.tensor([0, 0]))
    assert (with_skip - x).abs().max() < 0.05  # an untrained network already reconstructs a clean input
    assert (without - x).abs().max() > 0.3


def test_skip_parametrization_weights_the_loss_by_the_inverse_output_coefficient(tiny_config):
    config = tiny_config.replace(skip_parametrization=True)
    trainer = Trainer(config, build_denoiser(config, 2), torch.rand(100, 2).numpy() * 2 - 1, device="cpu")
    k = torch.tensor([0, config.diffusion_steps - 1])
    weights = trainer.loss_weights(k).flatten()
    assert weights[0] > 10 * weights[1] and abs(float(weights[1]) - 1.0) < 1e-2  # 1 at high noise, large at low
    assert (
        Trainer(tiny_config, build_denoiser(tiny_config, 2), torch.rand(100, 2).numpy(), device="cpu").loss_weights(k)
        is None
    )
    smaller = tiny_config.replace(skip_parametrization=True, sigma_data=0.1)
    small_trainer = Trainer(smaller, build_denoiser(smaller, 2), torch.rand(100, 2).numpy() * 2 - 1, device="cpu")
    assert abs(float(small_trainer.loss_weights(k).flatten()[1]) - 1.0) < 1e-2


def test_a_smaller_sigma_data_passes_the_input_through_only_at_lower_noise():
    from stagediff.model.denoiser import output_coefficients

    abar = NoiseSchedule.create(StageDiffConfig().diffusion_steps).alphas_cumprod.float()
    wide, _ = output_coefficients(abar, 0.5)
    narrow, narrow_output = output_coefficients(abar, 0.1)
    assert narrow[0] > 0.9 and bool((narrow[1:] <= wide[1:]).all()) and float(narrow[40]) < 0.5 * float(wide[40])
    assert abs(float(narrow_output[-1]) - 0.1) < 1e-3
    # EDM's closed form
    assert torch.allclose(narrow_output, 0.1 * (1 - abar).sqrt() / (1 - abar + 0.01 * abar).sqrt(), atol=1e-6)
