"""Starts for synthetic windows in the studies.

On a model with a time axis, a sample without a start continues the data from its end (guided toward it; issue
32), so a study that wants windows of the model's series, not continuations, gives each sample a start inside the
training data: where a real window starts when it compares with real windows (the fourth value of
:func:`stagediff.evaluation.protocol_windows`), else one of :func:`training_starts`.
"""

from __future__ import annotations

from stagediff import StageDiff
from stagediff.evaluation import window_starts


def training_starts(model: StageDiff, n: int, seed: int = 0) -> list | None:
    """The first timestamps of ``n`` windows of the training data (at most as many as it has), drawn with ``seed``
    as :func:`stagediff.evaluation.window_starts` draws real windows; None on a model without a time axis (its
    samples start at step 0 and continue nothing)."""
    info = model.metadata
    if info.get("time_column") is None or info.get("frequency") is None:
        return None
    times = model.sample_times(info["rows"], info["first_time"])[1]
    return list(window_starts(times, model.config.window, n, seed))
