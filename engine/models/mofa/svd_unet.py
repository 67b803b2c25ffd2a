"""SVD UNet that takes ControlNet residuals the way MOFA trained with them.

diffusers' `UNetSpatioTemporalConditionModel` supplies the layers and key names; only the forward is
ours. MOFA adds the residuals INSIDE the down-block loop: after every down block, all skips collected
so far get their residual again. The first four skips therefore receive theirs four times, and so on:
multiplicity [4,4,4,4,3,3,3,2,2,2,1,1]; the mid residual is added once. The adapter weights expect it.
(The down-block loop of MOFA-Video-Traj/models/unet_spatio_temporal_condition_controlnet.py@3ad3b546da4c.)
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch import nn


def embed_time(model: nn.Module, sample: torch.Tensor, timestep: torch.Tensor | float,
               added_time_ids: torch.Tensor) -> torch.Tensor:
    """Timestep + added-time-id embedding [B, D] (shared by the UNet and the ControlNets)."""
    batch = sample.shape[0]
    timesteps = torch.as_tensor(timestep, device=sample.device)
    timesteps = timesteps.reshape(-1).expand(batch)
    emb = model.time_embedding(model.time_proj(timesteps).to(sample.dtype))
    time_embeds = model.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype)
    return emb + model.add_embedding(time_embeds)


def run_block(block: nn.Module, hidden: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,
              indicator: torch.Tensor, **extra: object) -> object:
    """Call a spatio-temporal down/mid/up block, passing the context only to attention blocks."""
    if getattr(block, "has_cross_attention", False):
        extra["encoder_hidden_states"] = context
    return block(hidden_states=hidden, temb=emb, image_only_indicator=indicator, **extra)


class MofaSVDUNet(UNetSpatioTemporalConditionModel):
    """`UNetSpatioTemporalConditionModel` with MOFA's residual injection (same config and keys)."""

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor, down_residuals: Sequence[torch.Tensor] | None = None,
                mid_residual: torch.Tensor | None = None) -> torch.Tensor:
        """sample [B,F,C,h,w] -> prediction [B,F,4,h,w]; residuals are per-frame [B*F, c, h', w']."""
        batch, frames = sample.shape[:2]
        emb = embed_time(self, sample, timestep, added_time_ids).repeat_interleave(frames, dim=0)
        context = encoder_hidden_states.repeat_interleave(frames, dim=0)
        indicator = torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device)

        hidden = self.conv_in(sample.flatten(0, 1))
        skips: tuple[torch.Tensor, ...] = (hidden,)
        for block in self.down_blocks:
            hidden, block_skips = run_block(block, hidden, emb, context, indicator)
            skips += block_skips
            if down_residuals is not None:
                skips = add_residuals(skips, down_residuals)
        hidden = run_block(self.mid_block, hidden, emb, context, indicator)
        if mid_residual is not None:
            hidden = hidden + mid_residual

        for block in self.up_blocks:
            count = len(block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            hidden = run_block(block, hidden, emb, context, indicator, res_hidden_states_tuple=block_skips)
        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        return hidden.reshape(batch, frames, *hidden.shape[1:])


def add_residuals(skips: tuple[torch.Tensor, ...], residuals: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Add residual i to skip i for every skip collected so far (zip stops at the shorter one)."""
    return tuple(skip + residual for skip, residual in zip(skips, residuals)) + skips[len(residuals):]
