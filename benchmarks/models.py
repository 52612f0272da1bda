"""The studies' models: one trained once and kept for the next run, and a kept model sampling with other settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from stagediff import StageDiff, StageDiffConfig


def load_or_train(folder: Path, config: StageDiffConfig, frame: pd.DataFrame, time_column) -> StageDiff:
    """The model kept in ``folder``, else one trained on ``frame`` with ``config`` and kept there."""
    if (folder / "config.json").exists():
        return StageDiff.load(folder)
    model = StageDiff(config).fit(frame, time_column, progress=False)
    model.save(folder)
    return model


def with_config(model: StageDiff, **changes) -> StageDiff:
    """``model`` with some configuration fields changed (sampling settings: the sampler, DDIM's eta, the guidance),
    sharing its weights, scaler and metadata; every other field stays as the weights were built with it."""
    copy = StageDiff(dataclasses.replace(model.config, **changes))
    copy.denoiser, copy.scaler, copy.metadata = model.denoiser, model.scaler, model.metadata
    return copy
