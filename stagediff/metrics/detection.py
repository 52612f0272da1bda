"""Detection scores: how well a strong classifier tells real from synthetic windows, as cross-validated ROC AUC.

0.5: the classifier cannot tell them apart; 1.0: it tells every window apart. Two classifiers:

- :func:`detection_score`: gradient boosting (scikit-learn ``HistGradientBoostingClassifier``, pinned settings)
  on hand-made window features (:func:`window_features`: step distribution, levels, autocorrelation, spectral
  band shares, channel correlations), with the features that give the synthetic windows away the most;
- :func:`cnn_detection_score`: a small 1-D CNN on the raw windows and their first differences.

:func:`detection_baseline` and :func:`cnn_detection_baseline` run the same classifier on two random halves of the
real windows (real against real), the score of indistinguishable sets on this data (about 0.5). Both classes
are balanced: the larger set is subsampled (seeded) to the size of the smaller one.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from stagediff.errors import DataError
from stagediff.metrics.inputs import as_tensor, check_pair, choose, seeded_module

DETECTION_FOLDS = 5
"""Stratified folds of the gradient-boosting detector."""
CNN_FOLDS = 3
"""Stratified folds of the CNN detector."""
CNN_EPOCHS = 12
"""Passes over the training folds of the CNN detector (``fast``: :data:`FAST_CNN_EPOCHS`)."""
FAST_CNN_EPOCHS = 4
CNN_BATCH = 64
CNN_WIDTH = 32
CNN_LEARNING_RATE = 2e-3
BOOSTING = {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 15, "early_stopping": False}
"""Pinned settings of the gradient-boosting detector (``random_state`` is the seed)."""
MIN_DETECTION_WINDOWS = 10
"""Fewest windows per class (as the other judges): every test fold then holds at least one of each."""
MIN_BASELINE_WINDOWS = 40
"""Fewest real windows for the real-vs-real baseline in evaluate (two halves of 20)."""
OVERLAP_ROWS = 3
"""Consecutive rows that must match exactly for two windows to count as cut from one series."""
MAX_PAIRS = 120
"""Channel pairs in the features at most (16 channels have 120); more channels: a fixed subset."""
ZERO_STEP = 1e-4
"""A step counts as near zero below this, in the units of the windows ([0, 1] on the real range in evaluate)."""
PERCENTILES = (1, 5, 95, 99)
BANDS = 6
TOP_FEATURES = 5


# -- features --------------------------------------------------------------------------------------------------
def _lags(length: int) -> list[int]:
    """1, 2, 4, ... up to max(1, length // 4)."""
    lags, lag = [], 1
    while lag <= max(1, length // 4):
        lags.append(lag)
        lag *= 2
    return lags


def _band_edges(length: int) -> np.ndarray:
    """Edges of about :data:`BANDS` log-spaced bands over the rfft bins 1 .. length // 2 (the DC bin left out)."""
    bins = length // 2 + 1
    return np.unique(np.round(np.geomspace(1, bins, BANDS + 1)).astype(int))


def _pairs(channels: int) -> list[tuple[int, int]]:
    """Upper-triangle channel pairs; above :data:`MAX_PAIRS` a fixed (seed 0) subset of them, in order."""
    pairs = [(i, j) for i in range(channels) for j in range(i + 1, channels)]
    if len(pairs) > MAX_PAIRS:
        keep = np.sort(np.random.default_rng(0).choice(len(pairs), size=MAX_PAIRS, replace=False))
        pairs = [pairs[k] for k in keep]
    return pairs


def feature_names(length: int, channels: int | Sequence[str]) -> list[str]:
    """Names of the :func:`window_features` columns for windows of ``length`` steps; ``channels``: a count
    (names ``c0``, ``c1``, ...) or the channel names."""
    labels = [f"c{i}" for i in range(channels)] if isinstance(channels, int) else [str(c) for c in channels]
    per_channel = (
        ["step_std", "step_mean_abs", "step_skew", "step_kurtosis"]
        + [f"step_p{p}" for p in PERCENTILES]
        + ["step_near_zero", "level_mean", "level_std", "level_min", "level_max"]
        + [f"level_acf{lag}" for lag in _lags(length)]
        + [f"step_acf{lag}" for lag in _lags(length)]
    )
    edges = _band_edges(length)
    per_channel += [f"band{edges[b]}-{edges[b + 1] - 1}_share" for b in range(len(edges) - 1)]
    names = [f"{label}.{name}" for name in per_channel for label in labels]
    for kind in ("level_corr", "step_corr"):
        names += [f"{labels[i]}~{labels[j]}.{kind}" for i, j in _pairs(len(labels))]
    return names


def _autocorrelation(values: np.ndarray, lags: list[int]) -> np.ndarray:
    """Biased autocorrelation of (n, time, channels) along time at ``lags``: (len(lags), n, channels); 0 for a
    constant series or a lag beyond the series."""
    centred = values - values.mean(axis=1, keepdims=True)
    variance = (centred**2).sum(axis=1)
    safe = np.where(variance > 0, variance, 1.0)
    out = np.zeros((len(lags),) + variance.shape)
    for index, lag in enumerate(lags):
        if lag < values.shape[1]:
            out[index] = (centred[:, :-lag] * centred[:, lag:]).sum(axis=1) / safe
    return out


def _pair_correlations(values: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Per-window Pearson correlation of the channel ``pairs`` of (n, time, channels): (len(pairs), n)."""
    if not pairs:
        return np.zeros((0, len(values)))
    centred = values - values.mean(axis=1, keepdims=True)
    scale = np.sqrt((centred**2).sum(axis=1, keepdims=True))
    standard = centred / np.where(scale > 0, scale, 1.0)
    first, second = (np.array(side) for side in zip(*pairs))
    return np.einsum("ntp,ntp->pn", standard[:, :, first], standard[:, :, second])


def window_features(windows: np.ndarray) -> np.ndarray:
    """Summary features of (n, length, channels) windows: (n, features), columns named by :func:`feature_names`.

    Per channel: the step (first difference) distribution's standard deviation, mean absolute value, skewness,
    excess kurtosis, 1/5/95/99 % percentiles and share of near-zero steps (below :data:`ZERO_STEP`); the level's
    mean, standard deviation, minimum and maximum; the autocorrelation of levels and of steps at lags 1, 2, 4,
    ... up to length // 4; the shares of the de-meaned window's power (rfft, DC left out) in about 6 log-spaced
    frequency bands. Per channel pair (upper triangle, at most :data:`MAX_PAIRS`): the correlation of levels
    and of steps within the window. Windows of one step have zero step features.
    """
    n, length, channels = windows.shape
    lags = _lags(length)
    steps = np.diff(windows, axis=1) if length > 1 else np.zeros((n, 1, channels))
    centred = steps - steps.mean(axis=1, keepdims=True)
    m2 = (centred**2).mean(axis=1)
    safe = np.where(m2 > 0, m2, 1.0)
    skew = np.where(m2 > 0, (centred**3).mean(axis=1) / safe**1.5, 0.0)
    kurtosis = np.where(m2 > 0, (centred**4).mean(axis=1) / safe**2 - 3.0, 0.0)
    columns = [
        np.sqrt(m2),
        np.abs(steps).mean(axis=1),
        skew,
        kurtosis,
        *np.percentile(steps, PERCENTILES, axis=1),
        (np.abs(steps) < ZERO_STEP).mean(axis=1),
        windows.mean(axis=1),
        windows.std(axis=1),
        windows.min(axis=1),
        windows.max(axis=1),
        *_autocorrelation(windows, lags),
        *_autocorrelation(steps, lags),
    ]
    power = np.abs(np.fft.rfft(windows - windows.mean(axis=1, keepdims=True), axis=1)) ** 2
    total = power[:, 1:].sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    edges = _band_edges(length)
    columns += [power[:, edges[b] : edges[b + 1]].sum(axis=1) / total for b in range(len(edges) - 1)]
    pairs = _pairs(channels)
    features = np.concatenate(
        [
            np.stack(columns, axis=1).reshape(n, -1),  # (n, feature, channel) -> names order
            _pair_correlations(windows, pairs).T,
            _pair_correlations(steps, pairs).T,
        ],
        axis=1,
    )
    return features


# -- overlapping windows and their folds -----------------------------------------------------------------------
def overlap_layout(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(component, start) per window of (n, length, channels): windows cut from one series (they share rows at
    a shift) get one component and their start relative to its first window; every other window is a
    component of its own at start 0.

    Two windows are linked when the first :data:`OVERLAP_ROWS` rows of one equal, exactly, rows at some position
    of the other; a row block that occurs twice in one window or in more windows than a stride-1 cut of one
    series allows (constant or repeating stretches) links nothing.
    """
    n, length, channels = windows.shape
    flat = np.ascontiguousarray(windows, dtype=np.float64).reshape(n * length, channels) + 0.0  # -0.0 -> 0.0
    _, row_ids = np.unique(flat.view(np.dtype((np.void, 8 * channels))).ravel(), return_inverse=True)
    row_ids = row_ids.reshape(n, length).astype(np.int64)
    base = int(row_ids.max()) + 1
    rows = min(length, OVERLAP_ROWS if base < 2**21 else 2)
    positions = length - rows + 1
    codes = np.zeros((n, positions), dtype=np.int64)
    for r in range(rows):  # exact: base ** rows < 2 ** 63
        codes = codes * base + row_ids[:, r : r + positions]
    _, block_ids = np.unique(codes.ravel(), return_inverse=True)
    block_ids = block_ids.reshape(n, positions)
    counts = np.bincount(block_ids.ravel())
    repeated = np.zeros(len(counts), dtype=bool)  # a block twice in one window: not an overlap marker
    for index in range(n):
        values, times = np.unique(block_ids[index], return_counts=True)
        repeated[values[times > 1]] = True
    usable = (counts <= positions) & ~repeated
    order = np.argsort(block_ids.ravel(), kind="stable")
    sorted_ids = block_ids.ravel()[order]
    neighbours: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for j in range(n):
        first = block_ids[j, 0]
        if counts[first] < 2 or not usable[first]:
            continue
        low, high = np.searchsorted(sorted_ids, [first, first + 1])
        for where in order[low:high]:
            i, shift = divmod(int(where), positions)
            if i != j:  # window j starts `shift` steps after window i
                neighbours[i].append((j, shift))
                neighbours[j].append((i, -shift))
    component, start = np.full(n, -1), np.zeros(n, dtype=np.int64)
    for root in range(n):
        if component[root] >= 0:
            continue
        component[root], queue = root, [root]
        while queue:
            node = queue.pop()
            for other, shift in neighbours[node]:
                if component[other] < 0:
                    component[other], start[other] = root, start[node] + shift
                    queue.append(other)
    _, component = np.unique(component, return_inverse=True)
    first = np.full(component.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, component, start)
    start -= first[component]
    return component, start


def independent_windows(windows: np.ndarray) -> float:
    """About how many windows of distinct rows (n, length, channels) windows hold: the rows they cover (per
    :func:`overlap_layout` component, the union of their spans) divided by the length. Equals n for windows
    that do not overlap; far less for many windows cut from one short series, where a detector (or any judge)
    has little to go on."""
    length = windows.shape[1]
    component, start = overlap_layout(windows)
    order = np.lexsort((start, component))
    component, start = component[order], start[order]
    gaps = np.diff(start)
    same = np.diff(component) == 0
    covered = length + np.where(same, np.minimum(gaps, length), length).sum()
    return float(covered / length)


def purged_folds(
    component: np.ndarray,
    start: np.ndarray,
    labels: np.ndarray,
    length: int,
    folds: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of cross-validation that never tests on a window overlapping a training window.

    Windows alone in their component (see :func:`overlap_layout`) go to folds at random, stratified by label
    (seeded). A component of overlapping windows is cut into ``folds`` contiguous blocks of equal counts in time
    order, one per fold (a seeded rotation); the windows that overlap a test window (same component, starts
    fewer than ``length`` steps apart) are left out of that fold's training part. Folds whose test part lacks
    a class or whose training part has fewer than 2 windows of a class are dropped.
    """
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=np.int64)
    sizes = np.bincount(component)
    alone = sizes[component] == 1
    for label in (0, 1):
        members = np.flatnonzero(alone & (labels == label))
        fold[rng.permutation(members)] = np.arange(len(members)) % folds
    shared = np.flatnonzero(sizes > 1)
    for group in shared:
        members = np.flatnonzero(component == group)
        members = members[np.argsort(start[members], kind="stable")]
        fold[members] = (np.arange(len(members)) * folds // len(members) + rng.integers(folds)) % folds
    pairs = []
    for f in range(folds):
        test = fold == f
        train = ~test
        for group in shared:
            members = component == group
            test_starts = np.sort(start[members & test])
            if not len(test_starts):
                continue
            candidates = np.flatnonzero(members & train)
            place = np.searchsorted(test_starts, start[candidates])
            below = np.abs(start[candidates] - test_starts[np.clip(place - 1, 0, len(test_starts) - 1)])
            above = np.abs(test_starts[np.clip(place, 0, len(test_starts) - 1)] - start[candidates])
            train[candidates[np.minimum(below, above) < length]] = False
        test_labels, train_labels = labels[test], labels[train]
        if (
            min(np.sum(test_labels == 0), np.sum(test_labels == 1)) >= 1
            and min(np.sum(train_labels == 0), np.sum(train_labels == 1)) >= 2
        ):
            pairs.append((np.flatnonzero(train), np.flatnonzero(test)))
    if len(pairs) < 2:
        raise DataError(
            f"the windows overlap too much for {folds} folds that keep test windows apart from "
            f"training windows (fewer than 2 usable folds); pass windows of a longer series"
        )
    return pairs


# -- gradient boosting -----------------------------------------------------------------------------------------
def check_detection_size(windows: np.ndarray, name: str, metric: str = "detection") -> None:
    """At least :data:`MIN_DETECTION_WINDOWS` windows for the folds."""
    if len(windows) < MIN_DETECTION_WINDOWS:
        raise DataError(
            f"{metric} needs at least {MIN_DETECTION_WINDOWS} {name} windows for its cross-validation "
            f"folds, got {len(windows)}; pass more windows"
        )


def _check_folds(folds: object, limit: int = 10) -> None:
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= limit:
        raise DataError(f"folds must be an integer from 2 to {limit}, got {folds!r}")


def balanced(real_count: int, synthetic_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices cutting both sets to the size of the smaller one by a seeded subsample (the smaller one whole)."""
    rng = np.random.default_rng(seed)
    count = min(real_count, synthetic_count)
    return choose(real_count, count, rng), choose(synthetic_count, count, rng)


def halves(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves (seeded) of ``range(count)``, each sorted."""
    order = np.random.default_rng(seed).permutation(count)
    half = count // 2
    return np.sort(order[:half]), np.sort(order[half : 2 * half])


def single_feature_auc(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of every feature column alone as the score of label 1 (ties counted half): (features,)."""
    ranks = rankdata(features, axis=0)
    positive = labels == 1
    count, other = positive.sum(), (~positive).sum()
    return (ranks[positive].sum(axis=0) - count * (count + 1) / 2) / (count * other)


@contextmanager
def _threads():
    """scikit-learn's OpenMP threads limited to torch's thread count (torch.set_num_threads governs both)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=torch.get_num_threads(), user_api="openmp"):
        yield


@dataclass(frozen=True)
class DetectionData:
    """Real and synthetic windows prepared once for repeated detection runs: their :func:`window_features` and
    their :func:`overlap_layout` (computed over both sets together)."""

    real: np.ndarray
    synthetic: np.ndarray
    features: np.ndarray
    component: np.ndarray
    start: np.ndarray
    names: list[str]

    @classmethod
    def build(cls, real: np.ndarray, synthetic: np.ndarray, channels: Sequence[str] | None = None) -> DetectionData:
        together = np.concatenate([real, synthetic])
        component, start = overlap_layout(together)
        names = feature_names(real.shape[1], channels if channels is not None else real.shape[2])
        return cls(real, synthetic, window_features(together), component, start, names)

    def score(self, seed: int = 0, folds: int = DETECTION_FOLDS) -> dict[str, Any]:
        """:func:`detection_score` of these windows."""
        first, second = balanced(len(self.real), len(self.synthetic), seed)
        return self._detect(first, len(self.real) + second, seed, folds)

    def baseline(self, seed: int = 0, folds: int = DETECTION_FOLDS) -> float:
        """:func:`detection_baseline` of these real windows."""
        check_detection_size(self.real[: len(self.real) // 2], "real (half of the)", "the detection baseline")
        first, second = halves(len(self.real), seed)
        return self._detect(first, second, seed, folds)["auc"]

    def _detect(self, negative: np.ndarray, positive: np.ndarray, seed: int, folds: int) -> dict[str, Any]:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import roc_auc_score

        _check_folds(folds)
        rows = np.concatenate([negative, positive])
        features, labels = self.features[rows], np.repeat([0, 1], [len(negative), len(positive)])
        aucs = []
        with _threads():
            for train, test in purged_folds(
                self.component[rows], self.start[rows], labels, self.real.shape[1], folds, seed
            ):
                model = HistGradientBoostingClassifier(**BOOSTING, random_state=seed)
                model.fit(features[train], labels[train])
                aucs.append(float(roc_auc_score(labels[test], model.predict_proba(features[test])[:, 1])))
        single = single_feature_auc(features, labels)
        order = np.argsort(-np.abs(single - 0.5), kind="stable")[:TOP_FEATURES]
        return {
            "auc": float(np.mean(aucs)),
            "fold_aucs": aucs,
            "top_features": [(self.names[i], round(float(single[i]), 4)) for i in order],
        }


def detection_score(
    real: np.ndarray,
    synthetic: np.ndarray,
    seed: int = 0,
    folds: int = DETECTION_FOLDS,
    channels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Cross-validated ROC AUC of gradient boosting telling synthetic (label 1) from real (label 0) windows.

    Protocol: both sets cut to the smaller one's size (seeded subsample); :func:`window_features` of every
    window; ``folds`` folds of :func:`purged_folds` (stratified random folds (seeded) for windows that do not
    overlap; windows cut from one series are split in time and a test window never overlaps a training
    window); in each fold a ``HistGradientBoostingClassifier`` with the settings :data:`BOOSTING` and
    ``random_state=seed`` is fitted on the training part and scored by ROC AUC on the test part. scikit-learn
    uses ``torch.get_num_threads()`` threads.

    Args:
        real, synthetic: (n, length, channels) and (m, length, channels), already scaled (evaluate uses [0, 1] on
            the real range); at least :data:`MIN_DETECTION_WINDOWS` each.
        seed: seeds the subsample, the folds and the classifier; the same seed gives the same result.
        channels: channel names for ``top_features`` (default ``c0``, ``c1``, ...).

    Returns:
        ``{"auc": mean of the fold AUCs (0.5 best, 1 worst), "fold_aucs", "top_features"}``; ``top_features``:
        the 5 features that alone tell the sets apart best, as (name, AUC of that feature alone); above 0.5 the
        synthetic windows have larger values of it, below 0.5 smaller ones.
    """
    check_pair(real, synthetic)
    check_detection_size(real, "real")
    check_detection_size(synthetic, "synthetic")
    return DetectionData.build(real, synthetic, channels).score(seed, folds)


def detection_baseline(real: np.ndarray, seed: int = 0, folds: int = DETECTION_FOLDS) -> float:
    """:func:`detection_score`'s AUC for two random halves (seeded) of the real windows: what sets that cannot
    be told apart score on this data (about 0.5). Needs :data:`MIN_BASELINE_WINDOWS` windows."""
    return DetectionData.build(real, real[:0]).baseline(seed, folds)


# -- the CNN detector ------------------------------------------------------------------------------------------
class ConvDetector(nn.Module):
    """Three strided 1-D convolutions (kernel 5, GELU), global average and max pooling, a linear logit."""

    def __init__(self, inputs: int, width: int = CNN_WIDTH):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(3):
            layers += [nn.Conv1d(inputs if index == 0 else width, width, 5, stride=2, padding=2), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length, inputs) -> (batch,) logits."""
        hidden = self.body(x.transpose(1, 2))
        return self.head(torch.cat([hidden.mean(dim=2), hidden.amax(dim=2)], dim=1)).squeeze(1)


def _with_steps(windows: np.ndarray) -> np.ndarray:
    """(n, length, channels) -> (n, length, 2 * channels): the windows and their first differences (0 first)."""
    steps = np.diff(windows, axis=1, prepend=windows[:, :1])
    return np.concatenate([windows, steps], axis=2)


def _cnn_fold(
    inputs: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    epochs: int,
) -> float:
    from sklearn.metrics import roc_auc_score

    mean = inputs[train].mean(axis=(0, 1))
    std = inputs[train].std(axis=(0, 1))
    scaled = (inputs - mean) / np.where(std > 0, std, 1.0)
    x_train, x_test = as_tensor(scaled[train]), as_tensor(scaled[test])
    y_train = torch.as_tensor(labels[train], dtype=torch.float32)
    positives = float(labels[train].sum())
    weight = torch.tensor((len(train) - positives) / positives)  # balanced classes after purging
    detector = seeded_module(lambda: ConvDetector(inputs.shape[2]), seed)
    optimizer = torch.optim.Adam(detector.parameters(), lr=CNN_LEARNING_RATE)
    loss_function = nn.BCEWithLogitsLoss(pos_weight=weight)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(x_train)))
        for first in range(0, len(order), CNN_BATCH):
            batch = order[first : first + CNN_BATCH]
            loss = loss_function(detector(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    detector.eval()
    with torch.no_grad():
        scores = torch.cat([detector(x_test[i : i + 1024]) for i in range(0, len(x_test), 1024)]).numpy()
    return float(roc_auc_score(labels[test], scores))


def _cnn_detect(windows: np.ndarray, labels: np.ndarray, seed: int, folds: int, epochs: int) -> dict[str, Any]:
    _check_folds(folds)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise DataError(f"epochs must be a positive integer, got {epochs!r}")
    component, start = overlap_layout(windows)
    pairs = purged_folds(component, start, labels, windows.shape[1], folds, seed)
    inputs = _with_steps(windows)
    aucs = [_cnn_fold(inputs, labels, train, test, seed + fold, epochs) for fold, (train, test) in enumerate(pairs)]
    return {"auc": float(np.mean(aucs)), "fold_aucs": aucs}


def cnn_detection_score(
    real: np.ndarray, synthetic: np.ndarray, seed: int = 0, folds: int = CNN_FOLDS, epochs: int = CNN_EPOCHS
) -> dict[str, Any]:
    """Cross-validated ROC AUC of a small 1-D CNN telling synthetic (label 1) from real (label 0) windows.

    Protocol: both sets cut to the smaller one's size (seeded subsample); the input is each window with its
    first differences as extra channels, standardised per input channel with the training part's mean and
    standard deviation; the folds of :func:`purged_folds`; per fold a :class:`ConvDetector` (3 convolutions of
    32 filters, kernel 5, stride 2, GELU; average and max pooling; linear logit; initial weights seeded by
    ``seed + fold``) is trained ``epochs`` passes with Adam (lr 2e-3, batch 64, binary cross-entropy with the
    classes weighted equally) and scored by ROC AUC on the test part. torch's thread count is used as set.

    Args:
        real, synthetic: (n, length, channels) and (m, length, channels), already scaled; at least
            :data:`MIN_DETECTION_WINDOWS` each.
        seed: seeds the subsample, folds, batches and weights; the same seed gives the same result on CPU.

    Returns:
        ``{"auc": mean of the fold AUCs (0.5 best, 1 worst), "fold_aucs"}``.
    """
    check_pair(real, synthetic)
    check_detection_size(real, "real", "detection_cnn")
    check_detection_size(synthetic, "synthetic", "detection_cnn")
    first, second = balanced(len(real), len(synthetic), seed)
    return _cnn_detect(
        np.concatenate([real[first], synthetic[second]]), np.repeat([0, 1], len(first)), seed, folds, epochs
    )


def cnn_detection_baseline(
    real: np.ndarray,
    seed: int = 0,
    folds: int = CNN_FOLDS,
    epochs: int = CNN_EPOCHS,
) -> float:
    """:func:`cnn_detection_score`'s AUC for two random halves (seeded) of the real windows (about 0.5)."""
    check_detection_size(real[: len(real) // 2], "real (half of the)", "the detection_cnn baseline")
    first, second = halves(len(real), seed)
    return _cnn_detect(np.concatenate([real[first], real[second]]), np.repeat([0, 1], len(first)), seed, folds, epochs)[
        "auc"
    ]
