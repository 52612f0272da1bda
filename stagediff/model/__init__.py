"""The Stage-Diff denoiser and its building blocks."""

from stagediff.model.denoiser import STABLE_ROWS, StageDiffDenoiser, add_context
from stagediff.model.layers import DecompositionLayer, PatchEmbedding, StepEmbedding, moving_average

__all__ = [
    "STABLE_ROWS",
    "DecompositionLayer",
    "PatchEmbedding",
    "StageDiffDenoiser",
    "StepEmbedding",
    "add_context",
    "moving_average",
]
