"""Starts for synthetic windows in the studies.

On a model with a time axis, a sample without a start continues the data from its end (guided toward it; issue
32), so a study that wants windows of the model's series, not continuations, gives each sample a start inside the
training data: where a real window starts when it compares with real windows (the fourth value of
:func:`stagediff.evaluation.protocol_windows`), else one of :func:`training_starts`.
"""

from __future__ import annotations

import numpy as np

from stagediff import StageDiff


def training_starts(model: StageDiff, n: int, seed: int = 0) -> list | None:
    """``n`` timestamps where windows of the training data start, drawn with ``seed``; None on a model without a
    time axis (its samples start at step 0 and continue nothing)."""
    info = model.metadata
    if info.get("time_column") is None or info.get("frequency") is None:
        return None
    times = model.sample_times(info["rows"], info["first_time"])[1]
    first = np.random.default_rng(seed).integers(0, len(times) - model.config.window + 1, n)
    return list(times[first])
