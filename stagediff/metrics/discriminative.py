"""Discriminative score (TimeGAN, Yoon et al. 2019; the protocol of Diffusion-TS and Stage-Diff)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stagediff.metrics.inputs import as_tensor, check_pair, check_split_size, seeded_module, split_train_test
from stagediff.metrics.judges import GRUJudge, batch_indices, judge_hidden_size, predict_in_batches

DISCRIMINATIVE_ITERATIONS = 2000
DISCRIMINATIVE_BATCH = 128


def discriminative_score(
    real: np.ndarray,
    synthetic: np.ndarray,
    seed: int = 0,
    iterations: int = DISCRIMINATIVE_ITERATIONS,
    batch: int = DISCRIMINATIVE_BATCH,
) -> float:
    """|0.5 - accuracy| of a post-hoc classifier telling real from synthetic windows; 0 is best, 0.5 worst.

    Protocol (TimeGAN's ``discriminative_score_metrics``): real and synthetic windows are each split 80/20 at
    random (seeded); a 1-layer GRU, hidden size max(D // 2, 4), reads a window and a linear layer maps its
    last hidden state to a logit; it is trained for ``iterations`` Adam steps (lr 1e-3, PyTorch defaults) on
    the summed binary cross-entropy of ``batch`` real (label 1) and ``batch`` synthetic (label 0) training
    windows drawn afresh each step; accuracy is measured on the union of both test parts with threshold 0.5
    on the sigmoid.

    Args:
        real, synthetic: (n, length, channels) and (m, length, channels), already scaled (evaluate uses [0, 1]
            on the real range); at least 10 windows each.
        seed: seeds the split, the batches and the initial weights; the same seed gives the same score on CPU.

    Returns:
        The score in [0, 0.5].
    """
    check_pair(real, synthetic)
    check_split_size(real, "real", "discriminative_score")
    check_split_size(synthetic, "synthetic", "discriminative_score")
    rng = np.random.default_rng(seed)
    real_train, real_test = (as_tensor(part) for part in split_train_test(real, rng))
    fake_train, fake_test = (as_tensor(part) for part in split_train_test(synthetic, rng))
    channels = real.shape[2]
    judge = seeded_module(lambda: GRUJudge(channels, judge_hidden_size(channels), 1), seed)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    loss_function = nn.BCEWithLogitsLoss()
    for _ in range(iterations):
        real_batch = real_train[batch_indices(rng, len(real_train), batch)]
        fake_batch = fake_train[batch_indices(rng, len(fake_train), batch)]
        # one GRU call on both halves (half the per-step overhead); the loss is still the sum of two means
        logits = judge.last(torch.cat([real_batch, fake_batch]))
        real_logits, fake_logits = logits[: len(real_batch)], logits[len(real_batch) :]
        loss = loss_function(real_logits, torch.ones_like(real_logits)) + loss_function(
            fake_logits, torch.zeros_like(fake_logits)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    judge.eval()
    real_says = predict_in_batches(judge.last, real_test).squeeze(-1) > 0  # sigmoid(logit) > 0.5
    fake_says = predict_in_batches(judge.last, fake_test).squeeze(-1) > 0
    correct = int(real_says.sum()) + int((~fake_says).sum())
    accuracy = correct / (len(real_test) + len(fake_test))
    return float(abs(0.5 - accuracy))
