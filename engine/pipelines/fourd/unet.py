"""SV4D's SpatialUNetModelWithTime, with sgm's parameter names so `model.diffusion_model.*` loads unchanged.

Facts from sgm/modules/diffusionmodules/video_model.py, sgm/modules/spacetime_attention.py, sgm/modules/attention.py
and sgm/modules/diffusionmodules/openaimodel.py@0ad7de9a5cb5 (Stability-AI/generative-models):
- latents are ordered (batch, frame, view): N = b * t * v images; `num_frames` = t * v.
- each res block's temporal Conv3d (kernel [3,1,1]) runs over the flattened (frame, view) sequence of t * v images,
  so view v-1 of one frame neighbours view 0 of the next (reproduced: the sequence is the whole N per batch item).
- the "camera" attention with use_3d_attention reshapes to (b*v*hw, t, c) and then attends with timesteps=v: the
  block regroups that batch as (b*v*hw/v, v) and attends over v CONSECUTIVE SPATIAL POSITIONS of one view and frame,
  with the CLIP context taken in (b, t, hw) order, i.e. misaligned. Without use_3d_attention it attends across the v
  views at one frame and position. Reproduced exactly (the checkpoints were trained with it).
- the camera embedding: the full timestep + label embedding of frame 0 of each view (`cam.view(b,t,v,-1)[:,0]`).
- every AlphaBlender runs with image_only_indicator zero (the original multiplies it by 0 or passes zeros), so each
  mixer is sigmoid(mix_factor).
- `cond_motion` reaches the network but is not used by it.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .config import UNetConfig


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[N] -> [N, dim] float32: cos of the frequencies first, then sin (sgm's order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(timesteps.device)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([embedding, torch.zeros_like(embedding[:, :1])], -1) if dim % 2 else embedding


class GroupNorm32(nn.GroupNorm):
    """sgm's `normalization`: 32 groups, computed in float32."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 parameters too: CPU kernels refuse float32 input with bf16/fp16 parameters
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).type(x.dtype)


class AlphaBlender(nn.Module):
    """alpha * spatial + (1 - alpha) * temporal with alpha = sigmoid(mix_factor) (no image-only frames here)."""

    def __init__(self) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.zeros(1))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor.float()).to(spatial.dtype)
        return alpha * spatial + (1.0 - alpha) * temporal


def _conv(dims: int, *args: object, **kwargs: object) -> nn.Module:
    return (nn.Conv2d if dims == 2 else nn.Conv3d)(*args, **kwargs)


class ResBlock(nn.Module):
    """sgm's ResBlock without up/down sampling or scale-shift norm (keys in_layers.0/2, emb_layers.1,
    out_layers.0/3, skip_connection)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, dims: int = 2,
                 kernel_size: int | tuple[int, ...] = 3, exchange_temb_dims: bool = False) -> None:
        super().__init__()
        out_channels = out_channels or channels
        padding = tuple(k // 2 for k in kernel_size) if isinstance(kernel_size, tuple) else kernel_size // 2
        self.exchange_temb_dims = exchange_temb_dims
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(),
                                       _conv(dims, channels, out_channels, kernel_size, padding=padding))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Identity(),  # 2: dropout
                                        _conv(dims, out_channels, out_channels, kernel_size, padding=padding))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else _conv(dims, channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while emb_out.ndim < h.ndim:
            emb_out = emb_out[..., None]
        if self.exchange_temb_dims:  # (b, t, c, 1, 1) -> (b, c, t, 1, 1)
            emb_out = emb_out.transpose(1, 2)
        return self.skip_connection(x) + self.out_layers(h + emb_out)


class ResBlockWithTime(ResBlock):
    """PostHocResBlockWithTime: the spatial block, then a Conv3d block over the whole (frame, view) sequence.
    `temporal_name` is the temporal block's parameter name (VideoUNet's VideoResBlock calls it time_stack)."""

    temporal_name = "time_mix_blocks"

    def __init__(self, channels: int, emb_channels: int, out_channels: int, time_kernel_size: tuple[int, ...]) -> None:
        super().__init__(channels, emb_channels, out_channels)
        self.add_module(self.temporal_name, ResBlock(out_channels, emb_channels, out_channels, dims=3,
                                                     kernel_size=time_kernel_size, exchange_temb_dims=True))
        self.time_mixer = AlphaBlender()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = super().forward(x, emb)
        n, c, h, w = x.shape
        spatial = x.view(n // num_frames, num_frames, c, h, w).transpose(1, 2)  # b c (t v) h w
        temporal = getattr(self, self.temporal_name)(spatial, emb.view(n // num_frames, num_frames, -1))
        return self.time_mixer(spatial, temporal).transpose(1, 2).reshape(n, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class CrossAttention(nn.Module):
    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        return self.to_out(attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """Gated (GEGLU) feed-forward, 4x wide (keys net.0.proj, net.2)."""

    def __init__(self, dim: int, dim_out: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Identity(), nn.Linear(dim * 4, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Spatial self-attention, cross-attention to the context, feed-forward; pre-norm residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, heads, dim_head, context_dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


def regroup(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """sgm's `(b t) s c -> (b s) t c` with t = timesteps: the leading axis is read as (rest, timesteps)."""
    n, s, c = x.shape
    return x.view(n // timesteps, timesteps, s, c).transpose(1, 2).reshape(-1, timesteps, c)


def ungroup(x: torch.Tensor, timesteps: int, s: int) -> torch.Tensor:
    """The inverse: `(b s) t c -> (b t) s c`."""
    n, _, c = x.shape
    return x.view(n // s, s, timesteps, c).transpose(1, 2).reshape(-1, s, c)


class TimeMixBlock(nn.Module):
    """BasicTransformerTimeMixBlock: attention along a regrouped axis of `timesteps` items, with an extra gated
    feed-forward in front (extra_ff_mix_layer) and cross-attention to a one-token context."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, ff_in: bool) -> None:
        super().__init__()
        if ff_in:
            self.norm_in = nn.LayerNorm(dim)
            self.ff_in = FeedForward(dim, dim)
        self.attn1 = CrossAttention(dim, heads, dim_head)
        self.ff = FeedForward(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, heads, dim_head, context_dim)
        self.norm1, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, timesteps: int) -> torch.Tensor:
        s = x.shape[1]
        x = regroup(x, timesteps)
        if hasattr(self, "ff_in"):
            x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        x = self.ff(self.norm3(x)) + x
        return ungroup(x, timesteps, s)


class SpatialTransformerWithTimeMixingAndMotion(nn.Module):
    """PostHocSpatialTransformerWithTimeMixingAndMotion: per depth, spatial attention (CLIP of the frame), camera
    attention (see the module docstring for its reshape) and motion attention over the frames of each view and
    position (cross-attention to the cond_view latents at this resolution)."""

    def __init__(self, channels: int, heads: int, dim_head: int, config: UNetConfig) -> None:
        super().__init__()
        inner = heads * dim_head
        depth = config.transformer_depth
        self.use_linear = config.use_linear_in_transformer
        self.use_camera_emb = config.use_camera_emb
        self.use_3d_attention = config.use_3d_attention
        self.channels = channels
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if self.use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, config.context_dim) for _ in range(depth)])
        self.time_mix_blocks = nn.ModuleList(
            [TimeMixBlock(inner, heads, dim_head, config.context_dim, config.extra_ff_mix_layer)
             for _ in range(depth)])
        self.motion_blocks = nn.ModuleList(
            [TimeMixBlock(inner, heads, dim_head, config.motion_context_dim, config.extra_ff_mix_layer)
             for _ in range(depth)])
        view_in = config.adm_in_channels if self.use_camera_emb else channels
        self.time_mix_time_embed = nn.Sequential(nn.Linear(view_in, 4 * channels), nn.SiLU(),
                                                 nn.Linear(4 * channels, channels))
        self.time_mix_motion_embed = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU(),
                                                   nn.Linear(4 * channels, channels))
        self.time_mixer = AlphaBlender()
        # Without a separate motion factor (SV4D 1.0) the motion blocks reuse time_mixer; registering it under a second
        # name would add `time_mixer_motion.*` keys that the published file (sgm registers none) does not have.
        if config.separate_motion_merge_factor:
            self.time_mixer_motion = AlphaBlender()
        self.proj_out = nn.Linear(inner, channels) if self.use_linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, cam: torch.Tensor,
                cond_view: torch.Tensor) -> torch.Tensor:
        """x [b*t*v, c, h, w]; context [b, t, d] (CLIP per frame); cam [b*t*v, adm] (the full embedding);
        cond_view [b*v, d2, H, W] latents of the views' conditioning images."""
        b, t, d1 = context.shape
        v = cond_view.shape[0] // b
        _, _, h, w = x.shape
        hw = h * w
        x_in = x
        cond_view = F.interpolate(cond_view, size=(h, w), mode="bilinear")
        spatial_context = context[:, :, None].expand(b, t, v, d1).reshape(-1, 1, d1)  # (b t v) 1 d
        camera_context = context[:, :, None].expand(b, t, hw, d1).reshape(-1, 1, d1)  # (b t hw) 1 d
        motion_context = cond_view.permute(0, 2, 3, 1).reshape(-1, 1, cond_view.shape[1])  # (b v hw) 1 d2

        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.flatten(2).transpose(1, 2)
        if self.use_linear:
            x = self.proj_in(x)
        c = x.shape[-1]

        frames = torch.arange(t, device=x.device).repeat(b)
        emb_time = self.time_mix_motion_embed(
            timestep_embedding(frames, self.channels).to(x.dtype))[:, None]  # (b t) 1 c
        if self.use_camera_emb:
            emb_view = self.time_mix_time_embed(cam.view(b, t, v, -1)[:, 0].reshape(b * v, -1))[:, None]
        else:
            views = torch.arange(v, device=x.device).repeat(b)
            emb_view = self.time_mix_time_embed(timestep_embedding(views, self.channels).to(x.dtype))[:, None]
        if self.use_3d_attention:
            emb_view = emb_view.repeat(1, hw, 1).view(-1, 1, c)  # (b v hw) 1 c

        for block, camera_block, motion_block in zip(self.transformer_blocks, self.time_mix_blocks,
                                                     self.motion_blocks):
            x = block(x, spatial_context)
            if self.use_3d_attention:  # (b v hw) t c, then attended as groups of v (see the module docstring)
                x = x.view(b, t, v, hw, c).permute(0, 2, 3, 1, 4).reshape(-1, t, c)
            else:  # (b v) (t hw) c: across the v views at one frame and position
                x = x.view(b, t, v, hw, c).permute(0, 2, 1, 3, 4).reshape(b * v, -1, c)
            x = self.time_mixer(x, camera_block(x + emb_view, camera_context, timesteps=v))
            if self.use_3d_attention:
                x = x.view(b, v, hw, t, c).permute(0, 3, 1, 2, 4).reshape(b * t, -1, c)
            else:
                x = x.view(b, v, t, hw, c).permute(0, 2, 1, 3, 4).reshape(b * t, -1, c)
            motion_mixer = getattr(self, "time_mixer_motion", self.time_mixer)
            x = motion_mixer(x, motion_block(x + emb_time, motion_context, timesteps=t))
            x = x.reshape(-1, hw, c)  # (b t v) hw c

        if self.use_linear:
            x = self.proj_out(x)
        x = x.transpose(1, 2).reshape(-1, c if not self.use_linear else self.channels, h, w)
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


class UNetLayout(nn.Module):
    """openaimodel's layout shared by SpatialUNetModelWithTime and VideoUNet: time and label (vector) embeddings,
    input blocks (a res block per level and repeat, attention where the downsampling factor is listed, a strided
    conv between levels), a middle res-attention-res, output blocks with skip connections and nearest upsampling,
    and the output norm + conv. `res(ch_in, ch_out)` and `attention(ch)` make the model's own blocks."""

    def __init__(self, config: Any, res: Callable[[int, int], nn.Module],
                 attention: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.config = config
        mc = config.model_channels
        embed = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(config.adm_in_channels, embed), nn.SiLU(),
                                                     nn.Linear(embed, embed)))
        self.input_blocks = nn.ModuleList([nn.ModuleList([nn.Conv2d(config.in_channels, mc, 3, padding=1)])])
        chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in config.attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(nn.ModuleList(layers))
                chans.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(nn.ModuleList([Downsample(ch)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = nn.ModuleList([res(ch, ch), attention(ch), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(config.channel_mult))[::-1]:
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + chans.pop(), mc * mult)]
                ch = mc * mult
                if ds in config.attention_resolutions:
                    layers.append(attention(ch))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(nn.ModuleList(layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(mc, config.out_channels, 3, padding=1))

    def embedding(self, timesteps: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """time_embed(sinusoid of the timesteps) + label_emb(vector)."""
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(dtype))
        return emb + self.label_emb(y.to(dtype))

    def unet(self, x: torch.Tensor, run: Callable[[nn.ModuleList, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The block sequence with skips; `run(layers, h)` runs one block's layers."""
        hs = []
        h = x
        for block in self.input_blocks:
            h = run(block, h)
            hs.append(h)
        h = run(self.middle_block, h)
        for block in self.output_blocks:
            h = run(block, torch.cat([h, hs.pop()], dim=1))
        return self.out(h)


class SpatialUNetModelWithTime(UNetLayout):
    def __init__(self, config: UNetConfig) -> None:
        embed = 4 * config.model_channels
        super().__init__(
            config, lambda ch_in, ch_out: ResBlockWithTime(ch_in, embed, ch_out, config.time_kernel_size),
            lambda ch: SpatialTransformerWithTimeMixingAndMotion(ch, ch // config.num_head_channels,
                                                                 config.num_head_channels, config))

    @staticmethod
    def _run(layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,
             cond_view: torch.Tensor, num_frames: int) -> torch.Tensor:
        for layer in layers:
            if isinstance(layer, ResBlockWithTime):
                h = layer(h, emb, num_frames)
            elif isinstance(layer, SpatialTransformerWithTimeMixingAndMotion):
                h = layer(h, context, emb, cond_view)
            else:
                h = layer(h)
        return h

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, y: torch.Tensor,
                cond_view: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x [b*t*v, in, h, w] (noisy latents + concat latents); timesteps [b*t*v] (c_noise); context [b, t, d];
        y [b*t*v, adm] (the vector); cond_view [b*v, 4, h, w]; num_frames = t*v."""
        emb = self.embedding(timesteps, y, x.dtype)
        context, cond_view = context.to(x.dtype), cond_view.to(x.dtype)
        return self.unet(x, lambda layers, h: self._run(layers, h, emb, context, cond_view, num_frames))
