"""A TS2Vec-style contrastive encoder (Yue et al., AAAI 2022, "TS2Vec: Towards Universal Representation of
Time Series"), written here after the published code (no pretrained weights), for Context-FID.

Encoder: linear input projection, a random timestamp mask (Bernoulli 0.5, training only), a stack of dilated
Conv1d residual blocks (dilation 2**i, kernel 3, GELU before each conv), dropout 0.1 on the output.
Training: two overlapping random crops of each window, encoded separately; the hierarchical contrastive loss
(instance + temporal contrast, alpha 0.5, at every scale of repeated max-pooling by 2 over time) on their
overlap; AdamW lr 1e-3; the encoder used afterwards is the running average of all training iterates (SWA),
as in TS2Vec. A window's embedding is the max over time of its per-step representations ("full_series").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from stagediff.metrics.inputs import as_tensor
from stagediff.metrics.judges import predict_in_batches


@dataclass(frozen=True)
class EncoderSettings:
    """Pinned TS2Vec hyperparameters for Context-FID. TS2Vec / Diffusion-TS use output 320, hidden 64, depth 10,
    batch 8 and 200 or 600 iterations by data size; output 64, depth 4 and 300 iterations here keep one
    Context-FID on 1,000 windows of 256 x 7 under about a minute on one CPU thread (docs: evaluation)."""

    output_dims: int = 64
    hidden_dims: int = 64
    depth: int = 4
    """Hidden residual blocks (dilations 1, 2, 4, 8), plus one output block (dilation 16)."""
    iterations: int = 300
    batch: int = 8
    learning_rate: float = 1e-3
    mask_probability: float = 0.5
    dropout: float = 0.1
    alpha: float = 0.5


class SamePadConv(nn.Module):
    """Dilated Conv1d whose output has the input's length (TS2Vec's ``SamePadConv``)."""

    def __init__(self, inputs: int, outputs: int, kernel_size: int, dilation: int):
        super().__init__()
        receptive_field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(inputs, outputs, kernel_size, padding=receptive_field // 2, dilation=dilation)
        self.trim = 1 if receptive_field % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out[:, :, : out.shape[2] - self.trim]


class ConvBlock(nn.Module):
    """GELU, conv, GELU, conv, plus the (projected) input: TS2Vec's residual block."""

    def __init__(self, inputs: int, outputs: int, kernel_size: int, dilation: int, final: bool = False):
        super().__init__()
        self.conv1 = SamePadConv(inputs, outputs, kernel_size, dilation)
        self.conv2 = SamePadConv(outputs, outputs, kernel_size, dilation)
        self.projector = nn.Conv1d(inputs, outputs, 1) if inputs != outputs or final else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.projector is None else self.projector(x)
        return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + residual


class TimeSeriesEncoder(nn.Module):
    """(batch, length, channels) -> per-step representations (batch, length, output_dims)."""

    def __init__(self, channels: int, settings: EncoderSettings):
        super().__init__()
        self.mask_probability = settings.mask_probability
        self.input_projection = nn.Linear(channels, settings.hidden_dims)
        widths = [settings.hidden_dims] * settings.depth + [settings.output_dims]
        self.blocks = nn.Sequential(
            *[
                ConvBlock(
                    widths[i - 1] if i > 0 else settings.hidden_dims,
                    width,
                    3,
                    dilation=2**i,
                    final=i == len(widths) - 1,
                )
                for i, width in enumerate(widths)
            ]
        )
        self.dropout = nn.Dropout(settings.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.input_projection(x)
        if self.training:  # timestamp masking: the augmentation TS2Vec contrasts against
            keep = torch.rand(hidden.shape[:2]) >= self.mask_probability
            hidden = hidden * keep.unsqueeze(-1)
        return self.dropout(self.blocks(hidden.transpose(1, 2))).transpose(1, 2)


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Each step's two views attract, the other windows' same-step representations repel (TS2Vec eq. 3)."""
    size = z1.shape[0]
    if size == 1:
        return z1.new_tensor(0.0)
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # (length, 2B, C)
    return _paired_loss(z, size)


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Each step's two views attract, the window's other steps repel (TS2Vec eq. 2)."""
    length = z1.shape[1]
    if length == 1:
        return z1.new_tensor(0.0)
    return _paired_loss(torch.cat([z1, z2], dim=1), length)  # (B, 2T, C)


def _paired_loss(z: torch.Tensor, half: int) -> torch.Tensor:
    """Cross-entropy of picking item ``i``'s partner ``half + i`` among all other items (self excluded)."""
    similarity = torch.matmul(z, z.transpose(1, 2))
    logits = torch.tril(similarity, diagonal=-1)[:, :, :-1] + torch.triu(similarity, diagonal=1)[:, :, 1:]
    logits = -F.log_softmax(logits, dim=-1)
    index = torch.arange(half)
    return (logits[:, index, half + index - 1].mean() + logits[:, half + index, index].mean()) / 2


def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """TS2Vec's loss: alpha * instance + (1 - alpha) * temporal contrast, averaged over the scales obtained by
    max-pooling both views by 2 over time until one step is left (the last scale adds instance contrast only)."""
    loss, scales = z1.new_tensor(0.0), 0
    while z1.shape[1] > 1:
        loss = loss + alpha * instance_contrastive_loss(z1, z2) + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        scales += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if z1.shape[1] == 1:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
        scales += 1
    return loss / scales


def take_per_row(x: torch.Tensor, starts: np.ndarray, length: int) -> torch.Tensor:
    """``x[i, starts[i]:starts[i] + length]`` for every row i."""
    index = torch.as_tensor(starts[:, None] + np.arange(length))
    return x[torch.arange(len(x))[:, None], index]


def overlapping_crops(rng: np.random.Generator, length: int, rows: int) -> tuple[np.ndarray, int, np.ndarray, int, int]:
    """TS2Vec's random cropping: a common segment of ``overlap`` steps and two views around it; returns
    (starts of view 1, length of view 1, starts of view 2, length of view 2, overlap); view 1 ends with the
    overlap and view 2 starts with it."""
    overlap = int(rng.integers(2, length + 1))
    left = int(rng.integers(length - overlap + 1))
    right = left + overlap
    outer_left = int(rng.integers(left + 1))
    outer_right = int(rng.integers(right, length + 1))
    offset = rng.integers(-outer_left, length - outer_right + 1, size=rows)
    return offset + outer_left, right - outer_left, offset + left, outer_right - left, overlap


def train_encoder(windows: np.ndarray, seed: int, settings: EncoderSettings = EncoderSettings()) -> nn.Module:
    """A TS2Vec encoder trained on ``windows`` (n, length, channels), length >= 2, for ``settings.iterations``
    steps of ``settings.batch`` windows (epochs of a seeded shuffle, last partial batch dropped).

    Returns the SWA-averaged encoder in eval mode. Weights, masks, dropout and crops all follow ``seed``."""
    rng = np.random.default_rng(seed)
    data = as_tensor(windows)
    batch = min(settings.batch, len(data))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TimeSeriesEncoder(windows.shape[2], settings)
        averaged = AveragedModel(encoder)
        optimizer = torch.optim.AdamW(encoder.parameters(), lr=settings.learning_rate)
        order, position = rng.permutation(len(data)), 0
        for _ in range(settings.iterations):
            if position + batch > len(data):
                order, position = rng.permutation(len(data)), 0
            x = data[order[position : position + batch]]
            position += batch
            start1, length1, start2, length2, overlap = overlapping_crops(rng, x.shape[1], len(x))
            view1 = encoder(take_per_row(x, start1, length1))[:, -overlap:]
            view2 = encoder(take_per_row(x, start2, length2))[:, :overlap]
            loss = hierarchical_contrastive_loss(view1, view2, settings.alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            averaged.update_parameters(encoder)
    return averaged.module.eval()


def embed_windows(encoder: nn.Module, windows: np.ndarray) -> np.ndarray:
    """Window embeddings (n, output_dims): per-step representations max-pooled over time."""
    return predict_in_batches(lambda x: encoder(x).amax(dim=1), as_tensor(windows), batch=256).double().numpy()
