"""Building blocks of the Stage-Diff denoiser (paper section 3.2): step embedding, patching,
Transformer encoders and the cross-attention decoder of one progressive decomposition layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class StepEmbedding(nn.Module):
    """Sinusoidal embedding of the diffusion step k (Vaswani et al. 2017) followed by a small MLP.

    k: (batch,) integer steps -> (batch, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=k.device, dtype=torch.float32) / half)
        angles = k.float()[:, None] * frequencies[None]
        embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if self.dim % 2:
            embedding = F.pad(embedding, (0, 1))
        return self.mlp(embedding)


class PatchEmbedding(nn.Module):
    """Cut a series into patches, project each linearly to d_model and add a learnable position.

    (sequences, in_channels, length) -> (sequences, patches, d_model),
    patches = (length - patch_length) / stride + 1 (paper: P = (L_sta - L_patch) / L_win + 1)."""

    def __init__(self, in_channels: int, length: int, patch_length: int, stride: int, d_model: int):
        super().__init__()
        self.patch_length, self.stride = patch_length, stride
        self.count = (length - patch_length) // stride + 1
        self.projection = nn.Linear(in_channels * patch_length, d_model)
        self.position = nn.Parameter(torch.randn(self.count, d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.unfold(-1, self.patch_length, self.stride)  # (n, c, p, l)
        n, c, p, length = patches.shape
        return self.projection(patches.permute(0, 2, 1, 3).reshape(n, p, c * length)) + self.position


def softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis; written out because torch's CPU kernel is 4-5x slower on the
    very short rows (a dozen patches) that attention has here (measured: docs/design.md, "attention")."""
    exponent = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    return exponent / exponent.sum(dim=-1, keepdim=True)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017).

    queries (n, p, d_model), keys_values (n, q, d_model) -> (n, p, d_model)."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.scale = heads, (d_model // heads) ** -0.5
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.output = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, queries: torch.Tensor, keys_values: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """bias: (p, q) added to every head's scores before the softmax (-inf: never attend), or None."""
        # Tensor methods rather than einops here: this runs thousands of times per sample on tiny tensors, where
        # einops' own overhead was 15 % of a sample's time (results/decisions.md, "Sampling speed: the stage loop").
        n, p, q, h = queries.shape[0], queries.shape[1], keys_values.shape[1], self.heads
        queries = self.query(queries).reshape(n, p, h, -1).permute(0, 2, 1, 3).reshape(n * h, p, -1)
        k, v = self.key_value(keys_values).reshape(n, q, 2, h, -1).permute(2, 0, 3, 1, 4).reshape(2, n * h, q, -1)
        scores = torch.bmm(queries, k.transpose(1, 2)) * self.scale
        weights = softmax(scores if bias is None else scores + bias)
        if self.training:
            weights = self.dropout(weights)
        mixed = torch.bmm(weights, v).reshape(n, h, p, -1).permute(0, 2, 1, 3).reshape(n, p, -1)
        return self.output(mixed)


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_model))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: self-attention, then feed-forward, each with a residual."""

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.attention_norm, self.feedforward_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = Attention(d_model, heads, dropout)
        self.feedforward = FeedForward(d_model, feedforward, dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        normed = self.attention_norm(x)
        x = x + self.attention(normed, normed, bias)
        return x + self.feedforward(self.feedforward_norm(x))


class DecoderBlock(nn.Module):
    """Pre-norm Transformer decoder block: self-attention, cross-attention to a memory, feed-forward."""

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float):
        super().__init__()
        self.self_norm, self.cross_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.feedforward_norm = nn.LayerNorm(d_model)
        self.self_attention = Attention(d_model, heads, dropout)
        self.cross_attention = Attention(d_model, heads, dropout)
        self.feedforward = FeedForward(d_model, feedforward, dropout)

    def attend_self(self, x: torch.Tensor) -> torch.Tensor:
        """The self-attention step alone (with its residual)."""
        normed = self.self_norm(x)
        return x + self.self_attention(normed, normed)

    def attend_memory(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The cross-attention and feed-forward steps, after :meth:`attend_self`."""
        x = x + self.cross_attention(self.cross_norm(x), memory)
        return x + self.feedforward(self.feedforward_norm(x))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.attend_memory(self.attend_self(x), memory)


class Encoder(nn.Module):
    """A stack of encoder blocks with a final LayerNorm: (n, p, d_model) -> (n, p, d_model)."""

    def __init__(self, d_model: int, heads: int, feedforward: int, layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(EncoderBlock(d_model, heads, feedforward, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class Decoder(nn.Module):
    """A stack of decoder blocks with a final LayerNorm: queries (n, p, d_model), memory (n, q, d_model).

    The first block's self-attention does not depend on the memory, so it is split off (:meth:`prepare`): the
    denoiser runs it for all stages in one call, and only the rest waits for each stage's history."""

    def __init__(self, d_model: int, heads: int, feedforward: int, layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(DecoderBlock(d_model, heads, feedforward, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """queries (..., p, d_model) -> the first block's self-attention applied (any leading axes)."""
        return self.blocks[0].attend_self(x.reshape(-1, *x.shape[-2:])).reshape(x.shape)

    def forward(self, prepared: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """prepared: queries after :meth:`prepare`."""
        x = self.blocks[0].attend_memory(prepared, memory)
        for block in self.blocks[1:]:
            x = block(x, memory)
        return self.norm(x)


def moving_average(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Length-preserving AvgPool with edge replication (Autoformer's series decomposition).

    x: (..., length) -> (..., length). kernel 1 is the identity (keeps the finest detail)."""
    if kernel == 1:
        return x
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    pad = (kernel - 1) // 2
    if pad >= shape[-1]:  # replicate padding needs pad < length; repeat edges by hand
        left = flat[..., :1].expand(-1, -1, pad)
        right = flat[..., -1:].expand(-1, -1, pad)
        padded = torch.cat([left, flat, right], dim=-1)
    else:
        padded = F.pad(flat, (pad, pad), mode="replicate")
    return F.avg_pool1d(padded, kernel, stride=1).reshape(shape)


class DecompositionLayer(nn.Module):
    """One scale s of the progressive sequence decomposition, shared across stages and channels.

    ``encode`` runs the current-stage patch encoder (steps 1-3 of the paper's layer) for all stages at
    once; ``decode`` cross-attends to one stage's history (steps 4-6) and returns x_hat^s."""

    def __init__(
        self,
        in_channels: int,
        span: int,
        stage_length: int,
        patch_length: int,
        stride: int,
        d_model: int,
        heads: int,
        feedforward: int,
        encoder_layers: int,
        decoder_layers: int,
        dropout: float,
        inputs_per_channel: int = 1,
        extra_inputs: int = 0,
        output_length: int | None = None,
        stage_reach: int = 0,
    ):
        super().__init__()
        self.in_channels, self.stage_length = in_channels, stage_length
        self.output_length = output_length or stage_length
        self.stage_patches = PatchEmbedding(
            in_channels * inputs_per_channel + extra_inputs, span, patch_length, stride, d_model
        )
        self.history_patches = PatchEmbedding(in_channels, stage_length, patch_length, stride, d_model)
        self.encoder = Encoder(d_model, heads, feedforward, encoder_layers, dropout)
        self.history_encoder = Encoder(d_model, heads, feedforward, encoder_layers, dropout)
        self.decoder = Decoder(d_model, heads, feedforward, decoder_layers, dropout)
        self.head = nn.Linear(self.stage_patches.count * d_model, in_channels * self.output_length)
        # Each stage's tokens attend to those of the stages fewer than stage_reach away (0: no such block), with a
        # learned score bias per stage offset; a chunk longer than the training window sees the same offsets.
        self.stage_reach = stage_reach
        self.across_stages = EncoderBlock(d_model, heads, feedforward, dropout) if stage_reach else None
        self.stage_offset_bias = nn.Parameter(torch.zeros(2 * stage_reach - 1)) if stage_reach else None

    def attend_across_stages(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (n, stages, patches, d_model) -> the same, each stage's tokens having attended to the tokens of
        the stages within reach in the same sequence (a no-op without ``across_stages``)."""
        if self.across_stages is None:
            return tokens
        stages, patches = tokens.shape[1], tokens.shape[2]
        stage = torch.arange(stages, device=tokens.device).repeat_interleave(patches)
        offset = stage[:, None] - stage[None, :]
        reachable = offset.abs() < self.stage_reach
        index = (offset + self.stage_reach - 1).clamp(0, 2 * self.stage_reach - 2)
        bias = self.stage_offset_bias[index].masked_fill(~reachable, float("-inf"))
        mixed = self.across_stages(rearrange(tokens, "n m p e -> n (m p) e"), bias)
        return rearrange(mixed, "n (m p) e -> n m p e", m=stages)

    def encode(self, segments: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """segments (n, in_channels * inputs_per_channel + extra_inputs, span), step (n, d_model)
        -> tokens (n, patches, d_model)."""
        return self.encoder(self.stage_patches(segments) + step[:, None, :])

    def prepare(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (..., patches, d_model), all stages at once -> the queries that :meth:`decode` takes."""
        return self.decoder.prepare(tokens)

    def decode(self, queries: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """queries (n, patches, d_model) from :meth:`prepare`, history (n, in_channels, stage_length)
        -> x_hat (n, in_channels, output_length)."""
        memory = self.history_encoder(self.history_patches(history))
        decoded = self.decoder(queries, memory)
        return self.head(decoded.flatten(1)).view(-1, self.in_channels, self.output_length)
