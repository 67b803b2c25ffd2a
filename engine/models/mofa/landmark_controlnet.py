"""MOFA's landmark ControlNet (keypoint and hybrid faces): the flow ControlNet's encoder with a landmark pathway.

Differences from the trajectory adapter, all from MOFA-Video-Keypoint/models/ldmk_ctrlnet.py@3ad3b546da4c (identical in
MOFA-Video-Hybrid):
- the first-frame pyramid (`flow_encoder`) has no zero-convs;
- each level's warped features (frames >= 1) are refined by `occlusions[str(s)]` (ForegroundMatting, fed the level's
  own unwarped feature and the flow downscaled by s) and read out by the 1x1 `zero_outs[str(s)]`, s = 8, 16, 32, 64
  (the level's downscale from pixels); frame 0 keeps its raw feature;
- the landmark pose images of every frame go through `controlnet_ldmk_embedding` (widths (16, 32, 64, 128)) and are
  added after conv_in and, nearest-downsampled by 2, after every down block whose output has the first block's width
  (the original tests `sample.shape[1] == 320`: after down block 0 only in the published net).
The original hard-codes the widths 320/640/1280; they are read from `block_out_channels` here (the same numbers for the
published config) so tests can build the architecture small. `matting_expansion` and `matting_max_features` are the
hourglass widths (published: the ForegroundMatting defaults 64 and 512).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from torch import nn

from engine.models.mofa.controlnet import (ConditioningEmbedding, FeaturePyramid, SVDControlNetBase, downscale_flow,
                                           splat_to_frames, with_first_frame)
from engine.models.mofa.matting import ForegroundMatting

LANDMARK_EMBEDDING_WIDTHS = (16, 32, 64, 128)  # controlnet_ldmk_embedding in ldmk_ctrlnet.py@3ad3b546da4c
LEVEL_SCALES = (8, 16, 32, 64)  # the pyramid levels' downscale from pixels: the keys of zero_outs and occlusions


class LandmarkControlNet(SVDControlNetBase):
    """Landmark adapter of MOFA-Video (`ckpts/mofa/ldmk_controlnet` of MyNiuuu/MOFA-Video-Hybrid)."""

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
        matting_expansion: int = 64,
        matting_max_features: int = 512,
    ) -> None:
        super().__init__(sample_size, in_channels, out_channels, down_block_types, up_block_types, block_out_channels,
                         addition_time_embed_dim, projection_class_embeddings_input_dim, layers_per_block,
                         cross_attention_dim, transformer_layers_per_block, num_attention_heads, num_frames,
                         conditioning_channels, conditioning_embedding_out_channels)

    def build_adapter(self, widths: list[int]) -> None:
        expansion, max_features = self.config.matting_expansion, self.config.matting_max_features
        self.flow_encoder = FeaturePyramid(widths[0], widths[:3], zero_convs=False)
        self.controlnet_ldmk_embedding = ConditioningEmbedding(
            widths[0], self.config.conditioning_channels, LANDMARK_EMBEDDING_WIDTHS)
        level_widths = [widths[0]] + widths[:3]
        self.zero_outs = nn.ModuleDict({str(s): nn.Conv2d(c, c, 1) for s, c in zip(LEVEL_SCALES, level_widths)})
        self.occlusions = nn.ModuleDict({str(s): ForegroundMatting(c, expansion=expansion, max_features=max_features)
                                         for s, c in zip(LEVEL_SCALES, level_widths)})

    def refine_level(self, feature: torch.Tensor, flow: torch.Tensor, scale: int) -> torch.Tensor:
        """One pyramid level: feature [B,C,h,w], flow [B,T,2,h,w] (already downscaled by `scale`) ->
        [B*(T+1), C, h, w]: frame 0 raw, frames >= 1 splatted, matted and read out by the zero-out conv."""
        b, t = flow.shape[:2]
        warped = splat_to_frames(feature, flow).flatten(0, 1)
        reference = feature.unsqueeze(1).expand(-1, t, -1, -1, -1).flatten(0, 1)
        matted, _ = self.occlusions[str(scale)](reference, flow.flatten(0, 1).to(feature.dtype), warped)
        return with_first_frame(feature, self.zero_outs[str(scale)](matted).unflatten(0, (b, t)))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor, controlnet_cond: torch.Tensor, controlnet_flow: torch.Tensor,
                landmarks: torch.Tensor, conditioning_scale: float = 1.0) -> tuple[list[torch.Tensor], torch.Tensor]:
        """sample [B,F,8,h,w]; cond [B,3,H,W] in [-1,1]; flow [B,F-1,2,H,W] pixels (frame 0 -> t);
        landmarks [B,F,3,H,W]: the pose images in [0,1]."""
        first = self.controlnet_cond_embedding(controlnet_cond)
        levels = [first] + self.flow_encoder(first)
        height = controlnet_flow.shape[-2]
        warped = []
        for level in levels:
            scale = height // level.shape[-2]
            warped.append(self.refine_level(level, downscale_flow(controlnet_flow, scale), scale))
        injections = self.pyramid_injections(warped)

        pose = self.controlnet_ldmk_embedding(landmarks.flatten(0, 1))
        injections[0].append(pose)
        widths = self.config.block_out_channels
        for k in range(len(self.down_blocks)):
            if widths[k] == widths[0]:  # the original's `sample.shape[1] == 320` test
                injections[k + 1].append(F.interpolate(pose, scale_factor=0.5 ** (k + 1)))
        return self.encode(sample, timestep, encoder_hidden_states, added_time_ids, injections, conditioning_scale)
