"""SV3D's VideoUNet (the SVD architecture), with sgm's parameter names so `model.diffusion_model.*` of sv3d_u /
sv3d_p loads unchanged.

Facts from sgm/modules/diffusionmodules/video_model.py (VideoUNet, VideoResBlock) and sgm/modules/video_attention.py
(SpatialVideoTransformer, VideoTransformerBlock)@0ad7de9a5cb5 (Stability-AI/generative-models):
- latents are [b * t, c, h, w] with t = 21 frames (views); the vector `y` is per frame ([b * t, adm]): SV3D_p's
  per-view cameras enter through label_emb, so every frame gets its own embedding.
- VideoResBlock: the spatial ResBlock, then `time_stack` (a Conv3d ResBlock over the frames, kernel [3,1,1]) mixed
  by `time_mixer`.
- SpatialVideoTransformer: per depth, the spatial transformer block (cross-attention to each frame's CLIP token),
  then `time_stack` attention over the t frames at each position with `time_pos_embed` of the frame index added, and
  cross-attention to the FIRST frame's context of each batch item (use_spatial_context), mixed by `time_mixer`.
- the AlphaBlenders run with image_only_indicator zero (the script passes zeros), so each mixer is
  sigmoid(mix_factor).
The blocks are those of the SV4D network (unet.py), which has the same block internals under other names.
"""
from __future__ import annotations

import torch
from torch import nn

from .sv3d_config import VideoUNetConfig
from .unet import AlphaBlender, BasicTransformerBlock, ResBlockWithTime, TimeMixBlock, UNetLayout, timestep_embedding


class VideoResBlock(ResBlockWithTime):
    temporal_name = "time_stack"


class SpatialVideoTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, dim_head: int, config: VideoUNetConfig) -> None:
        super().__init__()
        inner = heads * dim_head
        depth = config.transformer_depth
        self.use_linear = config.use_linear_in_transformer
        self.channels = channels
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if self.use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, config.context_dim) for _ in range(depth)])
        self.proj_out = nn.Linear(inner, channels) if self.use_linear else nn.Conv2d(inner, channels, 1)
        self.time_stack = nn.ModuleList(
            [TimeMixBlock(inner, heads, dim_head, config.context_dim, config.extra_ff_mix_layer)
             for _ in range(depth)])
        self.time_pos_embed = nn.Sequential(nn.Linear(channels, 4 * channels), nn.SiLU(),
                                            nn.Linear(4 * channels, channels))
        self.time_mixer = AlphaBlender()

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x [b*t, c, h, w]; context [b*t, n, d] (CLIP tokens per frame)."""
        n, _, h, w = x.shape
        x_in = x
        time_context = context[::num_frames].repeat_interleave(h * w, dim=0)  # (b hw) n d: frame 0's context
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.flatten(2).transpose(1, 2)
        if self.use_linear:
            x = self.proj_in(x)
        frames = torch.arange(num_frames, device=x.device).repeat(n // num_frames)
        emb = self.time_pos_embed(timestep_embedding(frames, self.channels).to(x.dtype))[:, None]
        for block, time_block in zip(self.transformer_blocks, self.time_stack):
            x = block(x, context)
            x = self.time_mixer(x, time_block(x + emb, time_context, timesteps=num_frames))
        if self.use_linear:
            x = self.proj_out(x)
        x = x.transpose(1, 2).reshape(n, -1, h, w)
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in


class VideoUNet(UNetLayout):
    def __init__(self, config: VideoUNetConfig) -> None:
        embed = 4 * config.model_channels
        super().__init__(
            config, lambda ch_in, ch_out: VideoResBlock(ch_in, embed, ch_out, config.video_kernel_size),
            lambda ch: SpatialVideoTransformer(ch, ch // config.num_head_channels, config.num_head_channels, config))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, y: torch.Tensor,
                num_frames: int) -> torch.Tensor:
        """x [b*t, in, h, w] (noisy latents + concat latents); timesteps [b*t] (c_noise); context [b*t, n, d];
        y [b*t, adm] (the vector, per frame)."""
        emb = self.embedding(timesteps, y, x.dtype)
        context = context.to(x.dtype)

        def run(layers: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
            for layer in layers:
                if isinstance(layer, VideoResBlock):
                    h = layer(h, emb, num_frames)
                elif isinstance(layer, SpatialVideoTransformer):
                    h = layer(h, context, num_frames)
                else:
                    h = layer(h)
            return h

        return self.unet(x, run)
