"""The temporal cross-attention context order of diffusers < 0.27, which the published MOFA demo ran with.

MOFA pins diffusers 0.24 (MOFA-Video-Traj/requirements.txt@3ad3b546da4c).
There, `TransformerSpatioTemporalModel` laid out the temporal cross-attention
context (the first-frame CLIP embedding) in (h w b) order while the hidden states are in (b h w) order
(fixed upstream in diffusers PR #7268, release 0.27). With a batch of B > 1, which CFG always makes
(B = 2: zero embedding, image embedding), spatial position p of EVERY sample attends to the context of
sample p % B: in both halves, half of the positions see the zero embedding and half the image embedding.
MOFA trained with batch 1 per GPU, so only inference has this; on the tiny test model it changes the
ControlNet residuals by ~30 % and the final latents by ~16 %. `legacy_time_context` reproduces the old
order on the current diffusers blocks (UNet and ControlNets share them).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from diffusers.models.attention import TemporalBasicTransformerBlock
from torch import nn


def _hw_b_order(module: nn.Module, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Forward pre-hook: rows in (b h w) order -> row r holds the context of sample r % B."""
    context = kwargs.get("encoder_hidden_states")
    if context is None:
        return None
    hidden = args[0] if args else kwargs["hidden_states"]
    positions = hidden.shape[1]  # hidden is [B*F, h*w, C]; context is [B*h*w, 1, C]
    per_sample = context[::positions]
    return args, {**kwargs, "encoder_hidden_states": per_sample.repeat(positions, 1, 1)}


@contextlib.contextmanager
def legacy_time_context(*models: nn.Module) -> Iterator[None]:
    """While active, every temporal transformer block of `models` uses diffusers 0.24's context order."""
    handles = [block.register_forward_pre_hook(_hw_b_order, prepend=True, with_kwargs=True)
               for model in models for block in model.modules()
               if isinstance(block, TemporalBasicTransformerBlock)]
    if not handles:
        raise RuntimeError("legacy_time_context found no temporal transformer blocks to patch")
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()

