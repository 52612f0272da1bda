"""The Stage-Diff denoiser x_theta(x_k, k): stages, per-channel progressive decomposition and
cross-channel fusion between stages (arXiv 2508.21330, section 3; our decisions in docs/design.md)."""

from __future__ import annotations

import types

import torch
from einops import rearrange, repeat
from torch import nn

from stagediff.conditioning import condition_inputs
from stagediff.config import StageDiffConfig
from stagediff.diffusion import NoiseSchedule
from stagediff.errors import ConfigError
from stagediff.model.layers import DecompositionLayer, StepEmbedding, moving_average


def add_context(stages: torch.Tensor, context: int) -> torch.Tensor:
    """Extend each stage with ``context`` steps of its neighbours on both sides (zeros past the ends).

    stages (batch, M, channels, L_sta) -> (batch, M, channels, L_sta + 2 * context)."""
    if context == 0:
        return stages
    zeros = stages.new_zeros(*stages.shape[:-1][:1], 1, *stages.shape[2:-1], context)
    left = torch.cat([zeros, stages[:, :-1, ..., -context:]], dim=1)
    right = torch.cat([stages[:, 1:, ..., :context], zeros], dim=1)
    return torch.cat([left, stages, right], dim=-1)


def seam_weights(stage_length: int, context: int) -> torch.Tensor:
    """Overlap-add weights over a stage's extended span (stage_length + 2 * context): linear ramps over the
    2 * context steps shared with each neighbour, 1 elsewhere; a ramp and its neighbour's sum to 1."""
    ramp = (torch.arange(2 * context) + 0.5) / (2 * context)
    middle = torch.ones(stage_length - 2 * context)
    return torch.cat([ramp, middle, 1 - ramp])


def blend_stages(spans: torch.Tensor, weights: torch.Tensor, context: int) -> torch.Tensor:
    """Overlap-add each stage's prediction over its extended span into the stage grid.

    spans (batch, M, channels, L_sta + 2 * context) -> (batch, M, channels, L_sta): a step near a seam is the
    weighted mean of the two stages that predict it, so neighbouring stages meet without a jump."""
    if context == 0:
        return spans

    def gather(values: torch.Tensor) -> torch.Tensor:
        length = values.shape[-1] - 2 * context
        core = values[..., context : context + length]
        from_left = torch.cat(
            [torch.zeros_like(values[:, :1, ..., :context]), values[:, :-1, ..., length + context :]], dim=1
        )
        from_right = torch.cat([values[:, 1:, ..., :context], torch.zeros_like(values[:, :1, ..., :context])], dim=1)
        middle = core[..., context : length - context]
        return torch.cat([core[..., :context] + from_left, middle, core[..., length - context :] + from_right], dim=-1)

    total = gather(weights.expand(1, spans.shape[1], 1, -1))  # the weight each grid step received (< 1 at the ends)
    return gather(spans * weights) / total


def output_coefficients(abar: torch.Tensor, s: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip and c_out of x_0 = c_skip x_k + c_out F(x_k, k) (Karras et al. 2022, "EDM", table 1, in the
    variance-preserving form: with abar = abar_k and s = sigma_data,
    c_skip = s^2 sqrt(abar) / (1 - abar + s^2 abar), c_out = s sqrt(1 - abar) / sqrt(1 - abar + s^2 abar)).

    At low noise the estimate is mostly the input itself, so fine detail passes through without the
    network having to reproduce it; at high noise it is the network's. ``abar`` and ``s`` broadcast."""
    denominator = 1 - abar + s**2 * abar
    return s**2 * abar.sqrt() / denominator, s * (1 - abar).sqrt() / denominator.sqrt()


class StageDiffDenoiser(nn.Module):
    """Predicts x_0 from a noisy series x_k at diffusion step k; all stages are denoised jointly.

    ``forward(x, k, calendar, observed)``: x (batch, length, channels) with length any multiple of the stage length
    (a trained model unrolls more stages than it was trained with, since weights are shared across stages),
    k (batch,), calendar (batch, length, calendar_inputs) the calendar features of x's steps
    (:func:`stagediff.calendar.calendar_features`; None for a model without calendar), observed (batch, length,
    channels) the known values, NaN where unknown (stagediff.conditioning; None: nothing known; a model without
    conditioning takes None only) -> x_0 estimate (batch, length, channels).

    With conditioning, each channel's stage patches also see its known values and where they are; in the channel-
    independent form, where a sequence holds one channel, they also see those of every channel.
    """

    def __init__(self, config: StageDiffConfig, channels: int):
        super().__init__()
        if config.channel_independent is None:
            raise ConfigError(
                "channel_independent is None (chosen from the data when StageDiff.fit trains); set it to "
                "true or false to build a denoiser directly"
            )
        self.config, self.channels = config, channels
        self.stage_length = config.effective_stage_length
        self.context = config.effective_context
        # With seam_blend each stage also predicts its context steps and neighbours are overlap-added.
        self.blend_context = self.context if config.seam_blend else 0
        self.register_buffer("seam_weights", seam_weights(self.stage_length, self.blend_context), persistent=False)
        abar = NoiseSchedule.create(config.diffusion_steps, config.schedule).alphas_cumprod.float()
        self.register_buffer("abar", abar, persistent=False)
        # s of the skip parametrization, as a float32 tensor (so the coefficients round as they always have)
        self.register_buffer("sigma_data", torch.tensor(config.sigma_data), persistent=False)
        self.kernels = config.pool_kernels
        per_sequence = 1 if config.channel_independent else channels
        # Each stage's patches also see the calendar features of their steps (a sine/cosine pair per cycle).
        self.calendar_inputs = 2 * len(config.calendar or ())
        self.conditioned = config.conditioning > 0
        # per channel: the layer's input, with input_skip the noisy stage, with conditioning the known values and mask
        per_channel = (2 if config.input_skip else 1) + (2 if self.conditioned else 0)
        # the known values and masks of all channels, for a sequence that holds one channel
        shared = 2 * channels if self.conditioned and config.channel_independent else 0
        self.step_embedding = StepEmbedding(config.d_model)
        self.layers = nn.ModuleList(
            DecompositionLayer(
                per_sequence,
                self.stage_length + 2 * self.context,
                self.stage_length,
                config.patch_length,
                config.patch_stride,
                config.d_model,
                config.heads,
                config.feedforward,
                config.encoder_layers,
                config.decoder_layers,
                config.dropout,
                inputs_per_channel=per_channel,
                extra_inputs=self.calendar_inputs + shared,
                output_length=self.stage_length + 2 * self.blend_context,
                stage_reach=config.stages if config.stage_attention and config.staged else 0,
            )
            for _ in self.kernels
        )
        # The history of stage 1 (no previous stage): learned per scale and channel, initialised at zero.
        self.initial_history = nn.Parameter(torch.zeros(len(self.kernels), channels, self.stage_length))
        conv = lambda: nn.Conv1d(channels, channels, config.fusion_kernel, padding=config.fusion_kernel // 2)  # noqa: E731
        # Multi-channel information fusion: one D x L_conv convolution per scale (absent in "w/o CD").
        self.fusion = nn.ModuleList(conv() for _ in self.kernels) if config.channel_fusion else None
        # "w/o Stage" keeps some channel mixing with a multi-channel convolution inside each layer.
        self.mixing = nn.ModuleList(conv() for _ in self.kernels) if not config.staged else None

    def to_sequences(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, length) -> (sequences, channels per sequence, length)."""
        return x.reshape(-1, 1, x.shape[-1]) if self.config.channel_independent else x

    def from_sequences(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        return x.reshape(batch, -1, x.shape[-1]) if self.config.channel_independent else x

    def forward(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        calendar: torch.Tensor | None = None,
        observed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, length, channels = x.shape
        if channels != self.channels or length % self.stage_length:
            raise ValueError(
                f"expected (batch, a multiple of {self.stage_length}, {self.channels}), got {tuple(x.shape)}"
            )
        stages = length // self.stage_length
        times = self.calendar_segments(calendar, batch, length)
        given, shared = self.known_segments(observed, x)
        if shared is not None:
            times = shared if times is None else torch.cat([times, shared], dim=2)
        step = self.step_embedding(k)
        residual = rearrange(x, "b (m l) d -> b m d l", l=self.stage_length)
        # (b, m, d, inputs, span): with input_skip the noisy stage, with conditioning the known values and mask
        fixed = [add_context(residual, self.context).unsqueeze(3)] if self.config.input_skip else []
        if given is not None:
            fixed.append(given)
        fixed = None if not fixed else fixed[0] if len(fixed) == 1 else torch.cat(fixed, dim=3)
        estimate = torch.zeros_like(residual)
        for scale, layer in enumerate(self.layers):
            # (b, m, d, inputs, span): the layer's input x^s, then the fixed inputs
            segments = add_context(residual, self.context).unsqueeze(3)
            if fixed is not None:
                segments = torch.cat([segments, fixed], dim=3)
            if self.config.channel_independent:
                sequences = rearrange(segments, "b m d c l -> (b m d) c l")
                if times is not None:
                    sequences = torch.cat([sequences, repeat(times, "b m f l -> (b m d) f l", d=channels)], dim=1)
                tokens = layer.encode(
                    sequences,
                    repeat(step, "b e -> (b m d) e", m=stages, d=channels),
                )
                tokens = layer.attend_across_stages(rearrange(tokens, "(b m d) p e -> (b d) m p e", b=batch, m=stages))
                tokens = rearrange(tokens, "(b d) m p e -> m (b d) p e", b=batch)
            else:
                sequences = rearrange(segments, "b m d c l -> (b m) (d c) l")
                if times is not None:
                    sequences = torch.cat([sequences, rearrange(times, "b m f l -> (b m) f l")], dim=1)
                tokens = layer.encode(sequences, repeat(step, "b e -> (b m) e", m=stages))
                tokens = layer.attend_across_stages(rearrange(tokens, "(b m) p e -> b m p e", b=batch))
                tokens = rearrange(tokens, "b m p e -> m b p e")
            tokens = layer.prepare(tokens)  # the part of decoding that needs no history, for all stages at once
            history = self.initial_history[scale].expand(batch, -1, -1)
            outputs = []
            for stage in range(stages):
                x_hat = self.from_sequences(layer.decode(tokens[stage], self.to_sequences(history)), batch)
                if self.mixing is not None:
                    x_hat = x_hat + self.mixing[scale](x_hat)
                trend = moving_average(x_hat, self.kernels[scale])
                own_trend = trend[..., self.blend_context : self.blend_context + self.stage_length]
                history = self.fusion[scale](own_trend) if self.fusion is not None else own_trend
                outputs.append((x_hat, trend))
            x_hat = blend_stages(torch.stack([o[0] for o in outputs], dim=1), self.seam_weights, self.blend_context)
            trend = blend_stages(torch.stack([o[1] for o in outputs], dim=1), self.seam_weights, self.blend_context)
            residual = x_hat - trend
            estimate = estimate + trend
        estimate = estimate / len(self.layers)  # the stage estimate is the mean of the S trends
        network = rearrange(estimate, "b m d l -> b (m l) d")
        if not self.config.skip_parametrization:
            return network
        skip, output = self.coefficients(k)
        return skip * x + output * network

    def calendar_segments(self, calendar: torch.Tensor | None, batch: int, length: int) -> torch.Tensor | None:
        """calendar (batch, length, calendar_inputs) -> (batch, stages, calendar_inputs, stage span) as the stages
        see it (with context), or None for a model without calendar."""
        if not self.calendar_inputs:
            if calendar is not None:
                raise ValueError("this model has no calendar features; pass calendar=None")
            return None
        if calendar is None or tuple(calendar.shape) != (batch, length, self.calendar_inputs):
            raise ValueError(
                f"expected calendar features (batch, length, features) = {(batch, length, self.calendar_inputs)}, "
                f"got {None if calendar is None else tuple(calendar.shape)}"
            )
        stages = rearrange(calendar.to(self.abar.dtype), "b (m l) f -> b m f l", l=self.stage_length)
        return add_context(stages, self.context)

    def known_segments(
        self, observed: torch.Tensor | None, x: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """observed (batch, length, channels), NaN where unknown -> (each channel's known values and mask as the
        stages see them, (batch, stages, channels, 2, span); for a channel-independent model also every channel's,
        (batch, stages, 2 * channels, span), else None); (None, None) for a model without conditioning."""
        if not self.conditioned:
            if observed is not None:
                raise ValueError("this model has no conditioning inputs; pass observed=None")
            return None, None
        if observed is None:
            observed = torch.full_like(x, float("nan"))
        elif observed.shape != x.shape:
            raise ValueError(f"expected observed values shaped as x {tuple(x.shape)}, got {tuple(observed.shape)}")
        values, mask = condition_inputs(observed.to(x.dtype))
        pair = torch.stack([values, mask], dim=-1)  # (b, length, d, 2)
        stages = rearrange(pair, "b (m l) d c -> b m d c l", l=self.stage_length)
        given = add_context(stages, self.context)
        if not self.config.channel_independent:
            return given, None
        return given, rearrange(given, "b m d c l -> b m (c d) l")

    def coefficients(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c_skip and c_out of the skip parametrization at steps k (batch,), each (batch, 1, 1)."""
        return output_coefficients(self.abar[k].view(-1, 1, 1), self.sigma_data)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def batch_invariant(self) -> StageDiffDenoiser:
        """Make each row's output independent of how many rows share the call (done once; weights and state_dict
        unchanged), so that a series gets the same bytes sampled alone or beside others.

        On a CPU a matrix product of few rows takes other kernels than a larger one, and its rounding differs in the
        7th digit: measured with torch 2.13's MKL on an AVX-512 CPU, 1-3 rows at one thread, and with 2 or 8 threads
        every count below :data:`STABLE_ROWS` that is no multiple of :data:`ROW_BLOCK` (5-7 and 9-11 rows too); a
        convolution of one sequence does too. From there on, rows do not depend on the row count (measured:
        serving.batching.rows_independent probes it). Only some layers ever see fewer than STABLE_ROWS rows (the step
        embedding, the channel fusion, a projection of a stage's few patches): a forward of the smallest input (one
        row, one stage) finds them, and each pads such a call to the next multiple of ROW_BLOCK rows with copies of
        its first row and drops them again after (:func:`_padded_forward`). The other layers run untouched."""
        if getattr(self, "_batch_invariant", False):
            return self
        seen: dict[nn.Module, int] = {}

        def count(layer: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            seen[layer] = min(seen.get(layer, STABLE_ROWS), _rows(layer, args[0]))

        probes = [
            layer.register_forward_pre_hook(count)
            for layer in self.modules()
            if isinstance(layer, (nn.Linear, nn.Conv1d))
        ]
        try:
            with torch.no_grad():
                x = self.seam_weights.new_zeros(1, self.stage_length, self.channels)
                calendar = x.new_zeros(1, self.stage_length, self.calendar_inputs) if self.calendar_inputs else None
                self(x, torch.zeros(1, dtype=torch.long, device=x.device), calendar)
        finally:
            for probe in probes:
                probe.remove()
        for layer, rows in seen.items():
            if rows < STABLE_ROWS:
                layer.forward = types.MethodType(_padded_forward, layer)
        self._batch_invariant = True
        return self


ROW_BLOCK = 4
STABLE_ROWS = 12
"""A CPU matrix product of fewer rows than this, unless a multiple of ROW_BLOCK, took other kernels than a larger one
(measured; :meth:`StageDiffDenoiser.batch_invariant`)."""


def _rows(layer: nn.Module, x: torch.Tensor) -> int:
    """The rows a layer's kernel sees: every position for a linear layer, the sequences for a convolution."""
    return x.numel() // x.shape[-1] if isinstance(layer, nn.Linear) else x.shape[0]


def _padded_forward(layer: nn.Linear | nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """The layer's own forward, on a call of fewer than STABLE_ROWS rows (no multiple of ROW_BLOCK) padded to the next
    multiple of ROW_BLOCK with copies of its first row, which are dropped again."""
    forward = type(layer).forward
    linear = isinstance(layer, nn.Linear)
    rows = x.reshape(-1, x.shape[-1]) if linear else x
    count = rows.shape[0]
    if not 0 < count < STABLE_ROWS or count % ROW_BLOCK == 0:
        return forward(layer, x)
    padding = rows[:1].expand(ROW_BLOCK - count % ROW_BLOCK, *rows.shape[1:])
    output = forward(layer, torch.cat([rows, padding]))[:count]
    return output.reshape(*x.shape[:-1], output.shape[-1]) if linear else output
