"""The Stage-Diff denoiser and its building blocks."""

from stagediff.model.denoiser import StageDiffDenoiser, add_context
from stagediff.model.layers import DecompositionLayer, PatchEmbedding, StepEmbedding, moving_average

__all__ = [
    "DecompositionLayer",
    "PatchEmbedding",
    "StageDiffDenoiser",
    "StepEmbedding",
    "add_context",
    "moving_average",
]
