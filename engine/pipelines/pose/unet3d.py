"""MagicAnimate's video UNet (SD1.5 spatial layers + 20 motion modules), keeping the checkpoint key names.

Layout is (batch, C, frames, H, W) like the original. Numerics kept on purpose:
- ResNet GroupNorms and `conv_norm_out` see the whole 5-D tensor, so their statistics pool over every frame of
  the window (diffusers' ResnetBlock2D would normalise per frame and give different results);
- the spatial transformer's GroupNorm and the motion modules' GroupNorm normalise each frame alone.
The self-attention of the mid/up transformer blocks can read appearance features (see `reading_reference`).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from einops import rearrange
from torch import nn

from engine.pipelines.pose.motion_module import MotionModule
from engine.pipelines.pose.reference import order_by_width

SD_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")


@dataclass(frozen=True)
class UNet3DConfig:
    """The SD1.5 `unet/config.json` fields the video UNet uses (motion settings are fixed by MagicAnimate).

    Defaults are SD1.5's config values; they equal UNet3DConditionModel's defaults in
    magicanimate/models/unet_controlnet.py@d2bc3bc3c9cc except cross_attention_dim (1280 there, always
    overridden by SD1.5's 768 through from_pretrained_2d). 20 motion modules: motion_module_resolutions
    (1, 2, 4, 8) without the mid block, configs/inference/inference.yaml@d2bc3bc3c9cc."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    attention_head_dim: int = 8  # diffusers' historic name: this is the number of heads
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    in_channels: int = 4
    out_channels: int = 4
    flip_sin_to_cos: bool = True
    freq_shift: int = 0

    @classmethod
    def from_sd_config(cls, config: Mapping[str, Any]) -> "UNet3DConfig":
        """Read an SD1.5-style UNet2DConditionModel config; refuse layouts MagicAnimate was not built on."""
        if tuple(config.get("down_block_types", SD_DOWN)) != SD_DOWN or tuple(config.get("up_block_types", SD_UP)) != SD_UP:
            raise ValueError("unet/config.json is not a Stable Diffusion 1.x UNet (unexpected block types).")
        if len(config.get("block_out_channels", ())) != 4:
            raise ValueError("unet/config.json must have four block_out_channels like Stable Diffusion 1.x.")
        heads = config.get("attention_head_dim", 8)
        if not isinstance(heads, int):
            raise ValueError("MagicAnimate expects one head count for every block (SD1.x attention_head_dim=8).")
        return cls(
            block_out_channels=tuple(config["block_out_channels"]),
            layers_per_block=config.get("layers_per_block", 2),
            attention_head_dim=heads,
            cross_attention_dim=config.get("cross_attention_dim", 768),
            norm_num_groups=config.get("norm_num_groups", 32),
            norm_eps=config.get("norm_eps", 1e-5),
            in_channels=config.get("in_channels", 4),
            out_channels=config.get("out_channels", 4),
            flip_sin_to_cos=config.get("flip_sin_to_cos", True),
            freq_shift=config.get("freq_shift", 0),
        )


class FrameConv(nn.Conv2d):
    """A 2-D convolution applied to each frame of a (b, C, f, H, W) tensor (4-D weights, as stored)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        f = x.shape[2]
        y = super().forward(rearrange(x, "b c f h w -> (b f) c h w"))
        return rearrange(y, "(b f) c h w -> b c f h w", f=f)


class ResnetBlock3D(nn.Module):
    """SD ResNet block whose GroupNorms run on the 5-D tensor: statistics pooled over all frames."""

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = FrameConv(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps)
        self.conv2 = FrameConv(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = FrameConv(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return skip + h


class SpatialBlock(nn.Module):
    """SD BasicTransformerBlock (self-attn, cross-attn, GEGLU FF) that can also attend to reference features.

    When `reference` is set, batch entries listed in `reference_batch` run self-attention with keys/values
    cat([own tokens, reference tokens]) — MagicAnimate's "read" mode; other entries attend to themselves.
    """

    def __init__(self, dim: int, heads: int, cross_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(query_dim=dim, cross_attention_dim=cross_dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.reference: torch.Tensor | None = None  # (tokens, C) from the appearance encoder
        self.reference_batch: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        normed = self.norm1(x)
        x = x + (self._self_attention(normed, frames) if self.reference is not None else self.attn1(normed))
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=context)
        return x + self.ff(self.norm3(x))

    def _self_attention(self, normed: torch.Tensor, frames: int) -> torch.Tensor:
        per_video = normed.view(-1, frames, *normed.shape[1:])
        out = []
        for index, video in enumerate(per_video):
            if index in self.reference_batch:
                ref = self.reference.to(video.dtype).expand(frames, -1, -1)
                out.append(self.attn1(video, encoder_hidden_states=torch.cat([video, ref], dim=1)))
            else:
                out.append(self.attn1(video))
        return torch.cat(out)


class SpatialTransformer(nn.Module):
    """Per-frame Transformer2D of SD1.5 (GroupNorm eps 1e-6, 1x1 conv projections).

    eps 1e-6: Transformer3DModel in magicanimate/models/attention.py@d2bc3bc3c9cc."""

    def __init__(self, channels: int, heads: int, cross_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([SpatialBlock(channels, heads, cross_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        tokens = rearrange(self.proj_in(self.norm(frames)), "n c h w -> n (h w) c")
        context = context.repeat_interleave(f, dim=0)
        for block in self.transformer_blocks:
            tokens = block(tokens, context, f)
        out = self.proj_out(rearrange(tokens, "n (h w) c -> n c h w", h=h)) + frames
        return rearrange(out, "(b f) c h w -> b c f h w", f=f)


class Downsample3D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = FrameConv(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample3D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = FrameConv(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class VideoBlock(nn.Module):
    """One down or up stage: (resnet -> [spatial transformer] -> motion module) x layers, then resampling."""

    def __init__(self, resnet_in: Sequence[int], out_ch: int, cfg: UNet3DConfig, temb_ch: int,
                 attention: bool, resample: str | None) -> None:
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList([ResnetBlock3D(c, out_ch, temb_ch, groups, eps) for c in resnet_in])
        if attention:
            self.attentions = nn.ModuleList([
                SpatialTransformer(out_ch, cfg.attention_head_dim, cfg.cross_attention_dim, groups) for _ in resnet_in])
        self.motion_modules = nn.ModuleList([MotionModule(out_ch) for _ in resnet_in])
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample3D(out_ch)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample3D(out_ch)])

    def layer(self, i: int, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.resnets[i](x, temb)
        if hasattr(self, "attentions"):
            x = self.attentions[i](x, context)
        return self.motion_modules[i](x)


class MidBlock3D(nn.Module):
    """resnet -> spatial transformer -> resnet (MagicAnimate has no motion module here)."""

    def __init__(self, channels: int, cfg: UNet3DConfig, temb_ch: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock3D(channels, channels, temb_ch, cfg.norm_num_groups, cfg.norm_eps) for _ in range(2)])
        self.attentions = nn.ModuleList([
            SpatialTransformer(channels, cfg.attention_head_dim, cfg.cross_attention_dim, cfg.norm_num_groups)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class UNet3DConditionModel(nn.Module):
    """The MagicAnimate denoiser. forward(sample (b,4,f,h,w), t, text (1 or b, 77, D), ControlNet residuals)."""

    def __init__(self, cfg: UNet3DConfig) -> None:
        super().__init__()
        self.config = cfg
        ch = cfg.block_out_channels
        temb_ch = ch[0] * 4
        layers = cfg.layers_per_block
        self.conv_in = FrameConv(cfg.in_channels, ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(ch[0], temb_ch)

        self.down_blocks = nn.ModuleList()
        skip_channels = [ch[0]]
        prev = ch[0]
        for i, out in enumerate(ch):
            last = i == len(ch) - 1
            self.down_blocks.append(VideoBlock([prev] + [out] * (layers - 1), out, cfg, temb_ch,
                                               attention=not last, resample=None if last else "down"))
            skip_channels += [out] * (layers + (0 if last else 1))
            prev = out

        self.mid_block = MidBlock3D(ch[-1], cfg, temb_ch)

        self.up_blocks = nn.ModuleList()
        reversed_ch = list(reversed(ch))
        prev = reversed_ch[0]
        for i, out in enumerate(reversed_ch):
            last = i == len(ch) - 1
            resnet_in = []
            for j in range(layers + 1):
                resnet_in.append((prev if j == 0 else out) + skip_channels.pop())
            self.up_blocks.append(VideoBlock(resnet_in, out, cfg, temb_ch,
                                             attention=i > 0, resample=None if last else "up"))
            prev = out

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, ch[0], eps=cfg.norm_eps)
        self.conv_out = FrameConv(ch[0], cfg.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def reference_blocks(self) -> list[SpatialBlock]:
        """The "midup" readers, ordered by width (descending, stable) like the original pairing."""
        blocks = [m for part in (self.mid_block, self.up_blocks) for m in part.modules() if isinstance(m, SpatialBlock)]
        return order_by_width(blocks, lambda block: block.norm1.normalized_shape[0])

    @contextmanager
    def reading_reference(self, features: Sequence[torch.Tensor], batch: Sequence[int]) -> Iterator[None]:
        """Let batch entries `batch` attend to `features` (ordered by width like `reference_blocks`)."""
        blocks = self.reference_blocks()
        if len(features) != len(blocks):
            raise ValueError(f"{len(features)} reference features for {len(blocks)} attention blocks.")
        for block, feature in zip(blocks, features):
            if feature.shape[-1] != block.norm1.normalized_shape[0]:
                raise ValueError("Reference feature widths do not match the UNet's attention blocks.")
            block.reference, block.reference_batch = feature, tuple(batch)
        try:
            yield
        finally:
            for block in blocks:
                block.reference, block.reference_batch = None, ()

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, context: torch.Tensor,
                down_residuals: Sequence[torch.Tensor] | None = None,
                mid_residual: torch.Tensor | None = None) -> torch.Tensor:
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(b)
        temb = self.time_embedding(self.time_proj(t).to(self.dtype))
        context = context.expand(b, -1, -1) if context.shape[0] == 1 else context

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            for i in range(len(block.resnets)):
                x = block.layer(i, x, temb, context)
                skips.append(x)
            if hasattr(block, "downsamplers"):
                x = block.downsamplers[0](x)
                skips.append(x)
        if down_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_residuals, strict=True)]

        x = self.mid_block(x, temb, context)
        if mid_residual is not None:
            x = x + mid_residual

        for block in self.up_blocks:
            for i in range(len(block.resnets)):
                x = block.layer(i, torch.cat([x, skips.pop()], dim=1), temb, context)
            if hasattr(block, "upsamplers"):
                x = block.upsamplers[0](x)

        return self.conv_out(F.silu(self.conv_norm_out(x)))
