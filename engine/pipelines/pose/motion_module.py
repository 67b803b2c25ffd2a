"""MagicAnimate's temporal attention ("Vanilla" motion module), with the published key names.

Numerics that matter (and differ from diffusers' AnimateDiff blocks): the GroupNorm here normalises each
frame on its own (the input is reshaped to (batch*frames, C, H, W) first), and the sinusoidal position table
is added to the normalised tokens inside each attention block, before the q/k/v projections.
"""
from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn

# Heads 8, max_len 24, GroupNorm 32 groups (eps 1e-6), 10000 in the sinusoid: VanillaTemporalModule,
# TemporalTransformer3DModel and PositionalEncoding in magicanimate/models/motion_module.py@d2bc3bc3c9cc
# (heads and max_len also in configs/inference/inference.yaml@d2bc3bc3c9cc).
MOTION_HEADS = 8
MOTION_MAX_LEN = 24
MOTION_GROUPS = 32  # the original never passes the UNet's group count: it is always 32


def sinusoidal_table(max_len: int, dim: int) -> torch.Tensor:
    """The (1, max_len, dim) table of the original: sin on even channels, cos on odd ones."""
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_len, dim)
    table[0, :, 0::2] = torch.sin(position * freq)
    table[0, :, 1::2] = torch.cos(position * freq)
    return table


class TemporalSelfAttention(Attention):
    """Self-attention along time with the stored sinusoidal table `pos_encoder.pe` added first.

    Subclasses diffusers' Attention so the keys are `to_q/to_k/to_v/to_out.0` as in the checkpoint.
    """

    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = nn.Module()
        self.pos_encoder.register_buffer("pe", sinusoidal_table(max_len, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """tokens: (batch*pixels, frames, C)."""
        tokens = tokens + self.pos_encoder.pe[:, : tokens.shape[1]].to(tokens.dtype)
        return super().forward(tokens)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalSelfAttention(dim, heads, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            tokens = attention(norm(tokens)) + tokens
        return self.ff(self.ff_norm(tokens)) + tokens


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(MOTION_GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, C, f, h, w) -> same shape."""
        b, c, f, h, w = x.shape
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        tokens = rearrange(self.norm(frames), "(b f) c h w -> (b h w) f c", f=f)  # per-frame statistics
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        tokens = self.proj_out(tokens)
        out = rearrange(tokens, "(b h w) f c -> b c f h w", b=b, h=h, w=w)
        return out + x


class MotionModule(nn.Module):
    """`...motion_modules.N` in the checkpoint: a wrapper whose only child is `temporal_transformer`."""

    def __init__(self, channels: int, heads: int = MOTION_HEADS, max_len: int = MOTION_MAX_LEN) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_transformer(x)
