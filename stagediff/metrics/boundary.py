"""Stage-boundary jump: do samples jump where one generated stage meets the next?"""

from __future__ import annotations

import numbers

import numpy as np

from stagediff.errors import DataError


def check_stage_length(stage_length: object, length: int) -> int:
    """A stage length that leaves at least one boundary and one step inside a stage in windows of ``length``."""
    if isinstance(stage_length, bool) or not isinstance(stage_length, numbers.Integral) or stage_length < 2:
        raise DataError(
            f"stage_length must be an integer of at least 2 (a stage needs an inner step), got "
            f"{stage_length!r}; pass the model's config.stage_length"
        )
    if length <= stage_length:
        raise DataError(
            f"windows of length {length} hold no stage boundary at stage_length {stage_length}; pass "
            f"samples longer than one stage"
        )
    return int(stage_length)


def boundary_jump(synthetic: np.ndarray, stage_length: int) -> dict[str, float | list[float]]:
    """Mean absolute step ``|x[t+1] - x[t]|`` across stage boundaries (t + 1 a multiple of ``stage_length``)
    divided by the mean absolute step inside stages, pooled over windows and channels.

    A series without seams has a ratio of about 1 (real data do); a visible seam at each boundary gives a
    ratio well above 1 and over-smoothed boundaries one below 1. So about 1 is best (not 0).

    Args:
        synthetic: (n, length, channels) windows or long samples, length > stage_length.
        stage_length: steps per stage (the model's config.stage_length), >= 2.

    Returns:
        ``ratio``, ``boundary_step`` and ``inside_step`` (the two means), ``per_channel_ratio`` (list) and
        ``boundaries`` (boundary steps per window).
    """
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if synthetic.ndim != 3:
        raise DataError(f"boundary_jump expects (n, length, channels), got shape {synthetic.shape}")
    stage_length = check_stage_length(stage_length, synthetic.shape[1])
    steps = np.abs(np.diff(synthetic, axis=1))  # (n, length - 1, channels); step t goes from t to t + 1
    at_boundary = (np.arange(steps.shape[1]) + 1) % stage_length == 0
    boundary, inside = steps[:, at_boundary], steps[:, ~at_boundary]
    per_channel = [_ratio(boundary[..., c].mean(), inside[..., c].mean()) for c in range(steps.shape[2])]
    return {
        "ratio": _ratio(boundary.mean(), inside.mean()),
        "boundary_step": float(boundary.mean()),
        "inside_step": float(inside.mean()),
        "per_channel_ratio": per_channel,
        "boundaries": int(at_boundary.sum()),
    }


def _ratio(boundary: float, inside: float) -> float:
    """boundary / inside; a flat series (both 0) counts as seamless (1), a jump in a flat series as infinite."""
    if inside > 0:
        return float(boundary / inside)
    return 1.0 if boundary == 0 else float("inf")
