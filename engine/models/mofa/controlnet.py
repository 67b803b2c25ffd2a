"""MOFA's flow ControlNet for SVD: an SVD encoder copy whose features are pushed by a motion field.

The first frame is embedded to latent resolution, encoded into a 4-level pyramid, and each level is
forward-splatted along the (downscaled) flow into every later frame. Those warped features are added
to the encoder stream: level 0 after `conv_in`, level min(k+1, 3) after down block k, level 3 again
before the mid block. 12 zero-initialised 1x1 convs (plus one for the mid block) read out residuals.

`SVDControlNetBase` holds what every MOFA ControlNet shares (the SVD encoder copy, the read-out convs,
the first-frame embedding) so the landmark ControlNet can reuse it with its own injections.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_3d_blocks import UNetMidBlockSpatioTemporal, get_down_block
from torch import nn

from engine.models.mofa.softsplat import splat_average
from engine.models.mofa.svd_unet import embed_time, run_block

class ConditioningEmbedding(nn.Module):
    """3x3 conv stack with three stride-2 convs (image -> 1/8 resolution) and a zero-init conv out.

    widths (16, 32, 96, 256): FlowControlNetConditioningEmbeddingSVD in
    MOFA-Video-Traj/models/svdxt_featureflow_forward_controlnet_s2d_fixcmp_norefine.py@3ad3b546da4c."""

    def __init__(self, c_out: int, c_in: int = 3, widths: Sequence[int] = (16, 32, 96, 256)) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(c_in, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for a, b in zip(widths[:-1], widths[1:]):
            self.blocks.append(nn.Conv2d(a, a, 3, padding=1))
            self.blocks.append(nn.Conv2d(a, b, 3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(widths[-1], c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class _EncoderLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(c_in, c_out, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv_in(x))


class FeaturePyramid(nn.Module):
    """Three stride-2 conv+SiLU layers on the first-frame embedding; optional 1x1 zero-convs per level."""

    def __init__(self, c_in: int, widths: Sequence[int], zero_convs: bool = True) -> None:
        super().__init__()
        self.encoders = nn.ModuleList()
        self.zeroconvs = nn.ModuleList()
        for width in widths:
            self.encoders.append(_EncoderLayer(c_in, width))
            self.zeroconvs.append(nn.Conv2d(width, width, 1) if zero_convs else nn.Identity())
            c_in = width

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for encoder, zeroconv in zip(self.encoders, self.zeroconvs):
            x = encoder(x)
            levels.append(zeroconv(x))
        return levels


def downscale_flow(flow: torch.Tensor, factor: int) -> torch.Tensor:
    """[B,T,2,H,W] pixel flow -> nearest-downsampled by `factor` and divided by it (as the original)."""
    b, t, c, h, w = flow.shape
    small = F.interpolate(flow.reshape(b * t, c, h, w), scale_factor=1 / factor)
    return small.reshape(b, t, c, h // factor, w // factor) / factor


def splat_to_frames(feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """feature [B,C,h,w], flow [B,T,2,h,w] -> feature forward-splatted into every frame [B,T,C,h,w].

    Splatting runs in float32 (as the original's kernel); the result is cast back to the feature's dtype."""
    b, t = flow.shape[:2]
    repeated = feature.unsqueeze(1).expand(-1, t, -1, -1, -1).flatten(0, 1)
    return splat_average(repeated, flow.flatten(0, 1)).to(feature.dtype).unflatten(0, (b, t))


def with_first_frame(feature: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
    """feature [B,C,h,w] (frame 0, unwarped) + warped [B,T,C,h,w] -> [B*(T+1), C, h, w] in frame order."""
    return torch.cat([feature.unsqueeze(1), warped], dim=1).flatten(0, 1)


def warp_to_frames(feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """feature [B,C,h,w], flow [B,T,2,h,w] -> [B*(T+1), C, h, w]: frame 0 unwarped, then splats."""
    return with_first_frame(feature, splat_to_frames(feature, flow))


class SVDControlNetBase(ModelMixin, ConfigMixin):
    """SVD encoder copy + read-out convs + first-frame embedding; subclasses decide the injections.

    Head counts follow what the published adapters were trained with: the original always built its
    parent with default arguments, so down block 2 uses the head count of down block 1 ((5,10,10,20)).
    Heads do not change weight shapes, only the attention split.
    The __init__ defaults are FlowControlNet's in
    MOFA-Video-Traj/models/svdxt_featureflow_forward_controlnet_s2d_fixcmp_norefine.py@3ad3b546da4c.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: Sequence[str] = ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
        up_block_types: Sequence[str] = ("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int = 2,
        cross_attention_dim: int = 1024,
        transformer_layers_per_block: int = 1,
        num_attention_heads: Sequence[int] = (5, 10, 10, 20),
        num_frames: int = 25,
        conditioning_channels: int = 3,
        conditioning_embedding_out_channels: Sequence[int] = (16, 32, 96, 256),
    ) -> None:
        super().__init__()
        widths = list(block_out_channels)
        # exactly the heads config.json lists: the original's saved config records what it really built
        heads = list(num_attention_heads) if not isinstance(num_attention_heads, int) else [num_attention_heads] * 4
        time_dim = widths[0] * 4
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.time_proj = Timesteps(widths[0], True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(widths[0], time_dim)
        self.add_time_proj = Timesteps(addition_time_embed_dim, True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, time_dim)

        self.down_blocks = nn.ModuleList()
        self.controlnet_down_blocks = nn.ModuleList([nn.Conv2d(widths[0], widths[0], 1)])
        c_in = widths[0]
        for i, block_type in enumerate(down_block_types):
            last = i == len(widths) - 1
            self.down_blocks.append(get_down_block(
                block_type, num_layers=layers_per_block, transformer_layers_per_block=transformer_layers_per_block,
                in_channels=c_in, out_channels=widths[i], temb_channels=time_dim, add_downsample=not last,
                resnet_eps=1e-5, cross_attention_dim=cross_attention_dim, num_attention_heads=heads[i],
                resnet_act_fn="silu"))
            readouts = layers_per_block + (0 if last else 1)
            self.controlnet_down_blocks.extend(nn.Conv2d(widths[i], widths[i], 1) for _ in range(readouts))
            c_in = widths[i]
        self.controlnet_mid_block = nn.Conv2d(widths[-1], widths[-1], 1)
        self.mid_block = UNetMidBlockSpatioTemporal(
            widths[-1], temb_channels=time_dim, transformer_layers_per_block=transformer_layers_per_block,
            cross_attention_dim=cross_attention_dim, num_attention_heads=heads[-1])
        self.controlnet_cond_embedding = ConditioningEmbedding(
            widths[0], conditioning_channels, conditioning_embedding_out_channels)
        self.build_adapter(widths)

    def build_adapter(self, widths: list[int]) -> None:
        """Subclasses add their conditioning modules here (keeps one registered config signature)."""

    def encode(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
               added_time_ids: torch.Tensor, injections: Sequence[Sequence[torch.Tensor]],
               conditioning_scale: float) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the encoder with MOFA's additions and return the scaled residuals.

        `injections` holds what is added, in order, at each point: [0] after conv_in, [k+1] after down block k,
        [-1] before the mid block (each a sequence of [B*F,c,h,w] tensors, added one after the other as the
        original's `sample + a + b` does)."""
        batch, frames = sample.shape[:2]
        emb = embed_time(self, sample, timestep, added_time_ids).repeat_interleave(frames, dim=0)
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)
        indicator = torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device)

        hidden = _add_all(self.conv_in(sample.flatten(0, 1)), injections[0])
        skips = [hidden]
        for k, block in enumerate(self.down_blocks):
            hidden, block_skips = run_block(block, hidden, emb, context, indicator)
            hidden = _add_all(hidden, injections[k + 1])
            skips.extend(block_skips)
        hidden = run_block(self.mid_block, _add_all(hidden, injections[-1]), emb, context, indicator)

        down = [conv(skip) * conditioning_scale for conv, skip in zip(self.controlnet_down_blocks, skips)]
        return down, self.controlnet_mid_block(hidden) * conditioning_scale

    def pyramid_injections(self, levels: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
        """MOFA's injection points for a 4-level warped pyramid: level 0 after conv_in, level min(k+1, 3) after
        down block k, level 3 again before the mid block."""
        last = len(levels) - 1
        return ([[levels[0]]] + [[levels[min(k + 1, last)]] for k in range(len(self.down_blocks))]
                + [[levels[last]]])


def _add_all(hidden: torch.Tensor, addends: Sequence[torch.Tensor]) -> torch.Tensor:
    for addend in addends:
        hidden = hidden + addend
    return hidden


class FlowControlNet(SVDControlNetBase):
    """Trajectory adapter of MOFA-Video (`ckpts/controlnet` of MyNiuuu/MOFA-Video-Traj)."""

    def build_adapter(self, widths: list[int]) -> None:
        self.flow_encoder = FeaturePyramid(widths[0], widths[:3], zero_convs=True)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor, controlnet_cond: torch.Tensor, controlnet_flow: torch.Tensor,
                conditioning_scale: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
        """sample [B,F,8,h,w]; cond [B,3,H,W] in [-1,1]; flow [B,F-1,2,H,W] pixels (frame 0 -> t)."""
        first = self.controlnet_cond_embedding(controlnet_cond)
        levels = [first] + self.flow_encoder(first)
        height = controlnet_flow.shape[-2]
        warped = [warp_to_frames(level, downscale_flow(controlnet_flow, height // level.shape[-2]))
                  for level in levels]
        return self.encode(sample, timestep, encoder_hidden_states, added_time_ids, self.pyramid_injections(warped),
                           conditioning_scale)
