"""Known values: one mechanism for known channels, gaps to fill and the history a sample continues (issue 32).

Whatever is known of a series to generate is one array ``observed`` (rows, steps, channels) in scaled units, NaN
where a value is to be generated. While sampling, the known values replace their noisy counterparts at every step
(Song et al. 2021, section 5), so the rest is generated around them and they come back exactly as given: that is all
the default model (``conditioning=0``) does with them. A model trained with ``conditioning > 0`` also sees the known
values and where they are as inputs (:func:`condition_inputs`): in that share of its training windows some values
are given (:func:`draw_known`) and the loss counts only the others. It measured no better than replacement and made
unconditional samples easier to detect (results/decisions.md, "Known values"), so it is an option, not the default.
"""

from __future__ import annotations

import torch

KINDS = ("channels", "gaps", "history")
"""What a training window may have known, each in a third of the windows that have anything known: some channels
over the whole window (covariates), all but a few gaps in some or all channels (imputation), or its first steps
(continuing a history)."""
GAPS = 3
"""At most this many gaps per window of the "gaps" kind, each at most half the window long."""


def condition_inputs(observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """observed (batch, steps, channels), NaN where unknown -> (values with 0 where unknown, 1/0 known mask)."""
    known = observed.isfinite()
    return torch.where(known, observed, 0.0), known.to(observed.dtype)


def draw_known(shape: tuple[int, int, int], rate: float, generator: torch.Generator) -> torch.Tensor:
    """A random mask (batch, steps, channels) of what a training window has known: nothing in a share 1 - ``rate`` of
    the windows, else one of KINDS (drawn evenly; with one channel, "channels" falls back to "gaps"). Every window
    keeps at least one unknown value. All draws come from ``generator`` in one fixed order."""
    batch, steps, channels = shape
    draws = torch.rand(batch, 4, generator=generator)
    picks = torch.randint(0, 1 << 30, (batch, 2 * GAPS + 2), generator=generator)
    chosen = torch.rand(batch, channels, generator=generator) < 0.5
    known = torch.zeros(shape, dtype=torch.bool)
    for row in range(batch):
        if draws[row, 0] >= rate:
            continue
        kind = KINDS[min(int(draws[row, 1] * len(KINDS)), len(KINDS) - 1)]
        if kind == "channels" and channels == 1:
            kind = "gaps"
        subset = chosen[row].clone()
        if not subset.any():
            subset[int(picks[row, 0]) % channels] = True
        if kind == "channels":
            if subset.all():
                subset[int(picks[row, 1]) % channels] = False
            known[row, :, subset] = True
        elif kind == "history":
            known[row, : 1 + int(picks[row, 0]) % (steps - 1)] = True
        else:
            # all channels share the gaps in half of these windows, the chosen channels in the other half
            gapped = torch.ones(channels, dtype=torch.bool) if draws[row, 2] < 0.5 else subset
            known[row] = True
            for gap in range(1 + min(int(draws[row, 3] * GAPS), GAPS - 1)):
                length = 1 + int(picks[row, 2 + 2 * gap]) % max(1, steps // 2)
                first = int(picks[row, 3 + 2 * gap]) % (steps - length + 1)
                known[row, first : first + length, gapped] = False
    return known
