"""Tests of stagediff.diffusion: noise schedules, the forward process, the samplers and the sampling rule."""

from __future__ import annotations

import math

import pytest
import torch

from stagediff.config import StageDiffConfig
from stagediff.diffusion import DDIMSampler, DDPMSampler, Noise, NoiseSchedule, make_sampler, sampling_choice


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_abar_decreases_strictly_inside_zero_one(kind):
    schedule = NoiseSchedule.create(200, kind)
    abar = schedule.alphas_cumprod
    assert schedule.steps == 200 and abar.shape == (200,)
    assert ((abar > 0) & (abar < 1)).all()
    assert (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.99 and abar[-1] < 0.05  # from almost clean to almost pure noise
    assert torch.allclose(abar, torch.cumprod(1 - schedule.betas, 0))  # a product, not a sum


def test_cosine_schedule_follows_nichol_dhariwal():
    steps, s = 100, 0.008
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    abar = NoiseSchedule.create(steps, "cosine").alphas_cumprod
    for k in (0, 10, 50, 90):
        assert abar[k].item() == pytest.approx(f(k + 1) / f(0), rel=1e-6)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule"):
        NoiseSchedule.create(10, "sqrt")


def test_add_noise_interpolates_from_data_to_noise():
    schedule = NoiseSchedule.create(1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 32, 3, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    clean = schedule.add_noise(x0, noise, torch.zeros(4, dtype=torch.long))
    assert clean.shape == x0.shape
    assert torch.allclose(clean, x0, atol=0.05)
    noisy = schedule.add_noise(x0, noise, torch.full((4,), 999))
    assert torch.allclose(noisy, noise, atol=0.05)
    # per-sample steps broadcast over (length, channels)
    mixed = schedule.add_noise(x0, noise, torch.tensor([0, 999, 0, 999]))
    assert torch.equal(mixed[0], clean[0]) and torch.equal(mixed[1], noisy[1])
    k = torch.full((4,), 500)
    abar = schedule.alphas_cumprod[500].float()
    assert torch.allclose(schedule.add_noise(x0, noise, k), abar.sqrt() * x0 + (1 - abar).sqrt() * noise, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 7, 50, 200])
def test_ddim_has_as_many_descending_timesteps_as_asked(steps):
    sampler = DDIMSampler(NoiseSchedule.create(200))
    sampler.set_timesteps(steps)
    timesteps = sampler.timesteps
    assert len(timesteps) == steps
    assert all(a > b for a, b in zip(timesteps, timesteps[1:]))
    assert timesteps[0] == 199  # always starts from the noisiest step
    if steps > 1:
        assert timesteps[-1] == 0
    assert sampler.previous(steps - 1) == -1


@pytest.mark.parametrize("steps", [0, 201])
def test_ddim_rejects_impossible_step_counts(steps):
    with pytest.raises(ValueError, match="between 1 and 200"):
        DDIMSampler(NoiseSchedule.create(200)).set_timesteps(steps)


def test_ddim_last_step_with_perfect_prediction_returns_x0():
    schedule = NoiseSchedule.create(50)
    sampler = DDIMSampler(schedule, eta=0.5)
    sampler.set_timesteps(7)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 16, 3, generator=generator)
    last = len(sampler.timesteps) - 1
    t = torch.full((2,), sampler.timesteps[last])
    x_t = schedule.add_noise(x0, torch.randn(x0.shape, generator=generator), t)
    assert torch.allclose(sampler.step(x0, last, x_t, Noise.seeded(0, 2)), x0, atol=1e-5)


def test_deterministic_ddim_step_with_perfect_prediction_stays_on_the_noise_path():
    # eta = 0: x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t') eps, with the same eps as x_t (Song et al. eq. 12)
    schedule = NoiseSchedule.create(50)
    sampler = DDIMSampler(schedule, eta=0.0)
    sampler.set_timesteps(7)
    x0, eps = torch.randn(2, 16, 3), torch.randn(2, 16, 3)
    for index in range(len(sampler.timesteps) - 1):
        x_t = schedule.add_noise(x0, eps, torch.full((2,), sampler.timesteps[index]))
        expected = schedule.add_noise(x0, eps, torch.full((2,), sampler.previous(index)))
        assert torch.allclose(sampler.step(x0, index, x_t, None), expected, atol=1e-5)


def test_ddpm_final_step_returns_the_posterior_mean_without_noise():
    schedule = NoiseSchedule.create(20)
    sampler = DDPMSampler(schedule)
    sampler.set_timesteps()
    assert sampler.timesteps == list(range(19, -1, -1))
    last = len(sampler.timesteps) - 1
    x0, x_t = torch.randn(2, 8, 2), torch.randn(2, 8, 2)
    first = sampler.step(x0, last, x_t, Noise.seeded(0, 2))
    second = sampler.step(x0, last, x_t, Noise.seeded(1, 2))
    assert torch.equal(first, second)  # no noise is added at the last step
    # posterior mean at t = 0 (abar_prev = 1, beta = 1 - abar_0): the coefficient of x_t vanishes, leaving x0
    assert torch.allclose(first, x0, atol=1e-5)


def test_ddpm_intermediate_step_is_noisy_around_the_posterior_mean():
    schedule = NoiseSchedule.create(20)
    sampler = DDPMSampler(schedule)
    sampler.set_timesteps()
    index, t = 5, sampler.timesteps[5]
    abar_t, abar_prev = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t - 1].item()
    beta_t = 1 - abar_t / abar_prev
    x0, x_t = torch.full((4000, 1, 1), 0.5), torch.full((4000, 1, 1), -0.2)
    mean = (
        math.sqrt(abar_prev) * beta_t / (1 - abar_t) * 0.5
        + math.sqrt(1 - beta_t) * (1 - abar_prev) / (1 - abar_t) * -0.2
    )
    variance = beta_t * (1 - abar_prev) / (1 - abar_t)
    draws = sampler.step(x0, index, x_t, Noise.seeded(0, 4000))
    assert draws.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(variance / 4000))
    assert draws.var().item() == pytest.approx(variance, rel=0.1)
    again = sampler.step(x0, index, x_t, Noise.seeded(0, 4000))
    assert torch.equal(draws, again)  # randomness only from the seeded noise


def test_ancestral_ddim_is_the_ddpm_posterior_on_its_steps():
    schedule = NoiseSchedule.create(200)
    ddim, ddpm = DDIMSampler(schedule, eta=1.0), DDPMSampler(schedule)
    ddim.set_timesteps(20)
    ddpm.set_timesteps(20)
    x0, x_t = torch.randn(3, 8, 2), torch.randn(3, 8, 2)
    for index in range(20):
        assert torch.allclose(
            ddim.step(x0, index, x_t, Noise.seeded(index, 3)),
            ddpm.step(x0, index, x_t, Noise.seeded(index, 3)),
            atol=1e-5,
        )


def test_noise_draws_each_requests_rows_from_its_own_seed():
    joint = Noise([torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)], [2, 5])
    assert torch.equal(
        joint.draw((6, 2)), torch.cat([Noise.seeded(3, 2).draw((6, 2)), Noise.seeded(4, 5).draw((6, 2))])
    )


def test_sampling_choice_is_the_one_rule(tiny_config):
    ddpm_model = tiny_config.replace(sampler="ddpm", sampling_steps=7)
    assert sampling_choice(ddpm_model) == ("ddpm", 20)  # a DDPM model samples every diffusion step
    assert sampling_choice(ddpm_model, steps=5) == ("ddpm", 5)  # unless asked for fewer
    assert sampling_choice(ddpm_model, "ddim") == ("ddim", 7)
    assert sampling_choice(tiny_config.replace(sampler="ddim", sampling_steps=9)) == ("ddim", 9)
    assert sampling_choice(tiny_config.replace(sampler="ddim"), "ddpm") == ("ddpm", 20)
    with pytest.raises(ValueError, match="unknown sampler"):
        sampling_choice(tiny_config, "euler")


def test_make_sampler_swaps_by_config(tiny_config):
    ddim = make_sampler(tiny_config)
    assert isinstance(ddim, DDIMSampler) and len(ddim.timesteps) == tiny_config.sampling_steps
    ddpm = make_sampler(tiny_config.replace(sampler="ddpm"))
    assert isinstance(ddpm, DDPMSampler) and len(ddpm.timesteps) == tiny_config.diffusion_steps
    assert isinstance(make_sampler(tiny_config, "ddpm"), DDPMSampler)  # argument beats config
    assert len(make_sampler(tiny_config, "ddpm", 4).timesteps) == 4  # ancestral on a subset
    assert len(make_sampler(tiny_config, steps=3).timesteps) == 3
    assert ddim.schedule.steps == tiny_config.diffusion_steps
    linear = make_sampler(tiny_config.replace(schedule="linear"))
    assert torch.allclose(linear.schedule.alphas_cumprod, NoiseSchedule.create(20, "linear").alphas_cumprod)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler(tiny_config, "euler")


def test_ddim_eta_comes_from_config(tiny_config):
    assert make_sampler(tiny_config.replace(ddim_eta=0.3)).eta == 0.3
    assert StageDiffConfig().ddim_eta == 1.0  # the default: ancestral on sampling_steps
