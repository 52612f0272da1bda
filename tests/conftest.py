"""Shared fixtures: one tiny configuration, a smooth data frame in data units (about 100..200) and one
tiny model trained on it once per session, shared by the sampling and persistence tests."""

from __future__ import annotations

from stagediff import runtime

runtime.configure_environment()  # the test process's own entry point: before torch is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from stagediff import StageDiff, StageDiffConfig  # noqa: E402
from stagediff.train import build_denoiser  # noqa: E402

# The tests use models of a few thousand parameters, whose many tiny ops run several times faster on one
# thread than on two busy-waiting ones on a small shared CPU.
torch.set_num_threads(1)

TINY = dict(
    window=32,
    stage_length=8,
    context=2,
    patch_length=4,
    patch_stride=2,
    pool_kernels=(5, 1),
    d_model=16,
    heads=2,
    feedforward=32,
    diffusion_steps=20,
    sampling_steps=5,
    batch_size=16,
    warmup_steps=10,
    channel_independent=True,
    skip_parametrization=False,
    sampler="ddim",
    range_margin=0.0,
)
"""The tests' tiny model keeps the library's earlier recipe (channels apart, no skip, DDIM, no margin) that their
expectations were written for; tests of the default recipe set their own (tests/test_recipe.py)."""
TRAINED_STEPS = 150


@pytest.fixture
def tiny_config() -> StageDiffConfig:
    """A valid tiny configuration: 4 stages of 8 steps per 32-step window, 2 channels."""
    return StageDiffConfig(**TINY, channels=2, max_steps=6, checkpoint_every=2)


@pytest.fixture
def make_denoiser():
    """Build a tiny denoiser for (config, channels), in eval mode."""

    def build(config: StageDiffConfig, channels: int = 2):
        return build_denoiser(config, channels).eval()

    return build


def smooth_frame(length: int = 480, seed: int = 0) -> pd.DataFrame:
    """Hourly two-channel series with slow waves between about 100 and 200 and a little noise.

    Its level changes slowly relative to a 32-step window, so even a briefly trained model learns that
    a continuation starts near where its history ends."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return pd.DataFrame(
        {
            "date": pd.date_range("2022-01-01", periods=length, freq="h"),
            "a": 150 + 45 * np.sin(2 * np.pi * t / 160) + rng.normal(0, 1, length),
            "b": 150 - 45 * np.cos(2 * np.pi * t / 120) + rng.normal(0, 1, length),
        }
    )


@pytest.fixture
def tiny_settings() -> dict:
    """The tiny model, diffusion and batch settings as keyword arguments of StageDiffConfig."""
    return dict(TINY)


@pytest.fixture
def frame_factory():
    """:func:`smooth_frame`, for tests that need a fresh frame of their own length."""
    return smooth_frame


@pytest.fixture(scope="session")
def training_frame() -> pd.DataFrame:
    return smooth_frame()


@pytest.fixture(scope="session")
def trained_model(training_frame) -> StageDiff:
    """A tiny StageDiff fitted on ``training_frame`` for a few seconds (shared; do not mutate). It keeps no data
    values (continuation=False), so its samples never continue the data: the sampling tests count the chunks of
    samples without history; samples that continue the data are tested in test_conditioning.py."""
    config = StageDiffConfig(
        **TINY,
        max_steps=TRAINED_STEPS,
        checkpoint_every=50,
        validation_fraction=0.2,
        learning_rate=3e-3,
        continuation=False,
    )
    return StageDiff(config).fit(training_frame, "date", progress=False, device="cpu")
