"""Predictive score, train on synthetic and test on real (TimeGAN, Yoon et al. 2019)."""

from __future__ import annotations

import numpy as np
import torch

from stagediff.errors import DataError
from stagediff.metrics.inputs import as_tensor, check_pair, check_split_size, seeded_module
from stagediff.metrics.judges import GRUJudge, batch_indices, judge_hidden_size, predict_in_batches

PREDICTIVE_ITERATIONS = 5000
PREDICTIVE_BATCH = 128


def next_step_task(windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of TimeGAN's predictive task: ``X = w[:, :-1, :D-1]``, ``Y = w[:, 1:, D-1:]``, i.e. the
    last channel one step ahead from the other channels up to now. With one channel (D == 1) there are no
    other channels, so the channel predicts itself one step ahead: ``X = w[:, :-1]``, ``Y = w[:, 1:]``."""
    channels = windows.shape[2]
    inputs = windows[:, :-1, : channels - 1] if channels > 1 else windows[:, :-1]
    return as_tensor(inputs), as_tensor(windows[:, 1:, channels - 1 :])


def predictive_score(
    train_on: np.ndarray,
    test_on: np.ndarray,
    seed: int = 0,
    iterations: int = PREDICTIVE_ITERATIONS,
    batch: int = PREDICTIVE_BATCH,
) -> float:
    """Mean absolute error on ``test_on`` of a next-step predictor trained on ``train_on``; lower is better.

    Protocol (TimeGAN's ``predictive_score_metrics``): a 1-layer GRU, hidden size max(D // 2, 4), reads the
    first D - 1 channels up to step t and a linear layer + sigmoid predicts the last channel at t + 1 at every
    step (:func:`next_step_task`); trained for ``iterations`` Adam steps (lr 1e-3) on the L1 loss of ``batch``
    windows of ``train_on`` drawn afresh each step; the score is the MAE over all steps of all ``test_on``
    windows. Train on synthetic and test on real for the score; train and test on real for the floor.
    The sigmoid assumes targets in [0, 1] (evaluate scales to [0, 1] on the real range).

    Args:
        train_on, test_on: (n, length, channels) and (m, length, channels), length >= 2, n >= 10.
        seed: seeds the batches and the initial weights.
    """
    check_pair(test_on, train_on, names=("test_on", "train_on"))
    check_split_size(train_on, "training", "predictive_score")
    if train_on.shape[1] < 2:
        raise DataError("predictive_score needs windows of at least 2 steps (it predicts one step ahead)")
    rng = np.random.default_rng(seed)
    inputs, targets = next_step_task(train_on)
    predictor = seeded_module(lambda: GRUJudge(inputs.shape[2], judge_hidden_size(train_on.shape[2]), 1), seed)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=1e-3)
    for _ in range(iterations):
        chosen = batch_indices(rng, len(inputs), batch)
        loss = (torch.sigmoid(predictor(inputs[chosen])) - targets[chosen]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predictor.eval()
    test_inputs, test_targets = next_step_task(test_on)
    predictions = torch.sigmoid(predict_in_batches(predictor, test_inputs))
    return float((predictions - test_targets).abs().mean())
