"""MagicAnimate's appearance encoder: an SD1.5 UNet2D that only "writes" reference features.

It runs on the clean reference latent and records the `norm1` output of every transformer block in the mid and
up blocks ("midup" fusion: fusion_blocks in configs/prompts/animation.yaml@d2bc3bc3c9cc). The published file
lacks the 24 tensors after the last recorded `norm1`
(`conv_norm_out`, `conv_out`, and the rest of up_blocks.3.attentions.2), so the network is built without them
and stops right after that last `norm1`. diffusers' UNet2DConditionModel matches the original's numerics here
(plain 2-D UNet on single images).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from engine.pipelines.pose.reference import order_by_width
from engine.weights import DIFFUSERS_WEIGHTS, assign_strict, build_on_meta, read_json, read_state

# The block whose norm1 output is the last feature needed; everything after it is absent from the checkpoint.
LAST_WRITER = "up_blocks.3.attentions.2"


class _Done(Exception):
    """Raised by the last writer's hook to end the forward pass once every feature is recorded."""


def prune(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Drop the layers the published appearance encoder does not store (24 tensors)."""
    transformer = unet.get_submodule(LAST_WRITER)
    block = transformer.transformer_blocks[0]
    for name in ("attn1", "norm2", "attn2", "norm3", "ff"):
        setattr(block, name, None)
    transformer.proj_out = None
    unet.conv_norm_out = None
    unet.conv_out = None
    return unet


class AppearanceEncoder(nn.Module):
    """Calling it returns the reference features, ordered by width (widest first, stable) for the readers."""

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.unet = unet
        writers = [m for part in (unet.mid_block, unet.up_blocks) for m in part.modules()
                   if isinstance(m, BasicTransformerBlock)]
        self._writers = order_by_width(writers, lambda block: block.norm1.normalized_shape[0])
        self._last = unet.get_submodule(LAST_WRITER).transformer_blocks[0]
        self._bank: dict[int, torch.Tensor] = {}
        for slot, block in enumerate(self._writers):
            block.norm1.register_forward_hook(self._recorder(slot, block is self._last))

    def _recorder(self, slot: int, last: bool):  # noqa: ANN202 - a forward hook
        def record(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            self._bank[slot] = output
            if last:
                raise _Done
        return record

    @property
    def widths(self) -> list[int]:
        return [block.norm1.normalized_shape[0] for block in self._writers]

    def forward(self, latent: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> list[torch.Tensor]:
        """latent (b,4,h,w) clean reference latent -> one (b, h_i*w_i, C_i) tensor per writer block."""
        self._bank.clear()
        try:
            self.unet(latent, timestep, encoder_hidden_states=context)
        except _Done:
            pass
        features = [self._bank[slot] for slot in range(len(self._writers))]
        self._bank.clear()
        return features


def build_appearance_encoder(config: dict[str, Any]) -> AppearanceEncoder:
    """On the meta device: load weights with `load_appearance_encoder` or `assign_strict`."""
    return build_on_meta(lambda: AppearanceEncoder(prune(UNet2DConditionModel.from_config(config))))


def load_appearance_encoder(folder: Path, device: Any, dtype: torch.dtype) -> AppearanceEncoder:
    encoder = build_appearance_encoder(read_json(folder / "config.json"))
    assign_strict(encoder.unet, read_state([folder / DIFFUSERS_WEIGHTS]), str(folder / DIFFUSERS_WEIGHTS), device, dtype)
    return encoder.eval()
