"""Context-FID (Jeha et al., ICLR 2022 "PSA-GAN"; the protocol of Diffusion-TS): Fréchet distance between
Gaussian fits of TS2Vec embeddings of real and synthetic windows."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from stagediff.errors import DataError
from stagediff.metrics.inputs import check_pair, check_split_size
from stagediff.metrics.ts2vec import EncoderSettings, embed_windows, train_encoder


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """FID between embeddings (n, d) and (m, d): ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))`` with sample
    means and covariances (Heusel et al. 2017); the matrix square root is scipy.linalg.sqrtm, real part."""
    mean1, mean2 = first.mean(axis=0), second.mean(axis=0)
    cov1, cov2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    root = scipy.linalg.sqrtm(cov1 @ cov2)
    root = root.real if np.iscomplexobj(root) else root
    return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2.0 * root))


def context_fid(
    real: np.ndarray,
    synthetic: np.ndarray,
    seed: int = 0,
    iterations: int | None = None,
    settings: EncoderSettings = EncoderSettings(),
) -> float:
    """Context-FID of ``synthetic`` against ``real``; 0 is best.

    A TS2Vec-style encoder (:mod:`stagediff.metrics.ts2vec`, hyperparameters :class:`EncoderSettings`) is
    trained on the real windows with ``seed``; both sets are embedded by max-pooling its per-step
    representations over time, and the score is :func:`frechet_distance` of the embeddings.

    Args:
        real, synthetic: (n, length, channels), (m, length, channels), n, m >= 10, length >= 2; already scaled.
        iterations: encoder training iterations (default ``settings.iterations``, 300).
    """
    check_pair(real, synthetic)
    check_split_size(real, "real", "context_fid")
    check_split_size(synthetic, "synthetic", "context_fid")
    if real.shape[1] < 2:
        raise DataError("context_fid needs windows of at least 2 steps (the encoder contrasts time steps)")
    if iterations is not None:
        settings = EncoderSettings(**{**settings.__dict__, "iterations": iterations})
    encoder = train_encoder(real, seed, settings)
    return frechet_distance(embed_windows(encoder, real), embed_windows(encoder, synthetic))
