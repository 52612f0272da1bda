"""The post-hoc GRU judges of TimeGAN (Yoon et al., NeurIPS 2019) shared by the discriminative and predictive
scores: a 1-layer GRU whose hidden size is max(D // 2, 4) (TimeGAN's code: int(D / 2)), then a linear layer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def judge_hidden_size(channels: int) -> int:
    """max(D // 2, 4): TimeGAN's int(D / 2), floored at 4 so that 1- to 7-channel data get a usable GRU."""
    return max(channels // 2, 4)


class GRUJudge(nn.Module):
    """1-layer GRU (batch first) + linear head.

    ``forward(x)`` with x (batch, length, inputs) returns the head applied to every step's hidden state,
    (batch, length, outputs); ``last(x)`` applies it to the last step's hidden state only, (batch, outputs).
    """

    def __init__(self, inputs: int, hidden: int, outputs: int = 1):
        super().__init__()
        self.gru = nn.GRU(inputs, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x)
        return self.head(states)

    def last(self, x: torch.Tensor) -> torch.Tensor:
        _, final = self.gru(x)
        return self.head(final[-1])


def batch_indices(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
    """``batch`` distinct random indices below ``n`` (all of them when n <= batch), as TimeGAN's
    ``batch_generator``: a fresh random permutation cut to the batch size."""
    return rng.permutation(n)[:batch]


def predict_in_batches(function, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """``function`` applied to ``x`` in slices along the first axis, without gradients."""
    with torch.no_grad():
        return torch.cat([function(x[i : i + batch]) for i in range(0, len(x), batch)])
