"""Copy detector: are synthetic windows closer to the training windows than new real windows are?"""

from __future__ import annotations

import numpy as np

from stagediff.errors import DataError
from stagediff.metrics.inputs import check_pair, choose, subsample

MAX_QUERIES = 1000
MAX_REFERENCE = 10000


def nearest_distances(
    queries: np.ndarray,
    reference: np.ndarray,
    chunk: int = 256,
    query_starts: np.ndarray | None = None,
    reference_starts: np.ndarray | None = None,
    min_gap: int = 0,
) -> np.ndarray:
    """Euclidean distance from each flattened query window to its nearest reference window; (queries,).

    With ``query_starts`` and ``reference_starts`` (each window's start row in one series) a reference window
    counts only if it starts at least ``min_gap`` rows from the query's start (with the window length: only
    windows that do not overlap it)."""
    queries, reference = queries.reshape(len(queries), -1), reference.reshape(len(reference), -1)
    reference_norms = (reference**2).sum(axis=1)
    nearest = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk]
        squared = (block**2).sum(axis=1)[:, None] + reference_norms[None, :] - 2.0 * block @ reference.T
        if query_starts is not None:
            overlap = np.abs(query_starts[start : start + chunk, None] - reference_starts[None, :]) < min_gap
            squared[overlap] = np.inf
        nearest[start : start + chunk] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return nearest


def copy_detector(
    synthetic: np.ndarray,
    training: np.ndarray,
    heldout: np.ndarray,
    seed: int = 0,
    max_queries: int = MAX_QUERIES,
    max_reference: int = MAX_REFERENCE,
) -> dict[str, float]:
    """Distances to the nearest training window (flattened, Euclidean), for synthetic and for held-out windows.

    A generator that memorizes puts its windows much nearer the training windows than genuinely new real
    windows (the held-out ones) lie; one that draws fresh windows from the same process does not. Both
    query sets ask the same reference set, so its size does not bias the comparison (distance to closest
    record, as in privacy audits of synthetic data).

    Args:
        synthetic: (n, length, channels); training: (m, length, channels) windows the generator was trained on;
            heldout: (k, length, channels) real windows it never saw; all on one scale.
        seed: seeds the subsamples: at most ``max_queries`` synthetic and held-out query windows and at most
            ``max_reference`` training and held-out reference windows (bounds the cost).

    Returns:
        ``ratio``: median synthetic-to-training / median held-out-to-training distance (<< 1 means copying,
        about 1 fresh windows); ``copy_fraction``: fraction of synthetic windows nearer a training window than
        the nearest held-out window ever is (about 0 for fresh windows, 1 for copies);
        ``median_to_training``, ``median_to_heldout`` (synthetic to held-out references, a reference only: the
        held-out set is usually smaller, so these are larger), ``median_heldout_to_training``.
    """
    check_pair(training, synthetic, names=("training", "synthetic"))
    check_pair(training, heldout, names=("training", "heldout"))
    rng = np.random.default_rng(seed)
    queries, heldout_queries = subsample(synthetic, max_queries, rng), subsample(heldout, max_queries, rng)
    training_reference = subsample(training, max_reference, rng)
    heldout_reference = subsample(heldout, max_reference, rng)
    to_training = nearest_distances(queries, training_reference)
    heldout_to_training = nearest_distances(heldout_queries, training_reference)
    to_heldout = nearest_distances(queries, heldout_reference)
    baseline = float(np.median(heldout_to_training))
    return {
        "ratio": float(np.median(to_training) / baseline) if baseline > 0 else float("inf"),
        "copy_fraction": float(np.mean(to_training < heldout_to_training.min())),
        "median_to_training": float(np.median(to_training)),
        "median_to_heldout": float(np.median(to_heldout)),
        "median_heldout_to_training": baseline,
    }


def has_apart_windows(windows: np.ndarray) -> bool:
    """The stride-1 windows of one series hold two that do not overlap: the series holds at least two windows."""
    return len(windows) > windows.shape[1]


def check_series_windows(training: np.ndarray) -> None:
    """A DataError unless :func:`has_apart_windows` (else the series copy detector has no baseline)."""
    if not has_apart_windows(training):
        raise DataError(
            f"the copy detector without held-out windows needs training windows that do not overlap: "
            f"{len(training)} stride-1 windows of {training.shape[1]} steps have none"
        )


def series_copy_detector(
    synthetic: np.ndarray,
    training: np.ndarray,
    seed: int = 0,
    max_queries: int = MAX_QUERIES,
    max_reference: int = MAX_REFERENCE,
) -> dict[str, float]:
    """The copy detector when no real window was held out (the paper protocol trains on every window).

    The baseline is then real windows of the training series against the training windows that do not overlap
    them (start at least a window length apart): what a new stretch of the same process would be. A generator
    that copies puts its windows much nearer a training window than that; one that draws new windows does not.

    Args:
        synthetic: (n, length, channels); training: (m, length, channels) every stride-1 window of the training
            series, in time order (window ``i`` starts at row ``i``); one scale.
        seed: seeds the subsamples: at most ``max_queries`` synthetic windows and as many real (training)
            query windows (among those that some training window does not overlap), at most ``max_reference``
            reference (training) windows.

    Returns:
        ``ratio``: median synthetic-to-training / median real-to-other-training distance (<< 1 means copying,
        about 1 new windows); ``copy_fraction``: fraction of synthetic windows nearer a training window than any
        real query window's nearest non-overlapping one; ``median_to_training``, ``median_real_to_training``.
    """
    check_pair(training, synthetic, names=("training", "synthetic"))
    check_series_windows(training)
    count, length = training.shape[:2]
    rng = np.random.default_rng(seed)
    queries = subsample(synthetic, max_queries, rng)
    # real queries among the windows that some other window does not overlap (all of them when there are at
    # least twice as many windows as steps in one)
    starts = np.arange(count)
    apart = starts[(starts >= length) | (starts <= count - 1 - length)]
    real_starts = apart[choose(len(apart), max_queries, rng)]
    reference_starts = choose(len(training), max_reference, rng)
    reference = training[reference_starts]
    to_training = nearest_distances(queries, reference)
    real_to_training = nearest_distances(
        training[real_starts], reference, query_starts=real_starts, reference_starts=reference_starts, min_gap=length
    )
    real_to_training = real_to_training[np.isfinite(real_to_training)]  # a query whose references all overlap it
    if len(real_to_training) == 0:  # only when the references are a subsample (max_reference) of a short series
        raise DataError(
            f"no real query window has a reference window that does not overlap it among "
            f"{len(reference_starts)} of {count} training windows; raise max_reference"
        )
    baseline = float(np.median(real_to_training))
    return {
        "ratio": float(np.median(to_training) / baseline) if baseline > 0 else float("inf"),
        "copy_fraction": float(np.mean(to_training < real_to_training.min())),
        "median_to_training": float(np.median(to_training)),
        "median_real_to_training": baseline,
    }
