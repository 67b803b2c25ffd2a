"""The demo's diffusers 0.24 temporal cross-attention context order (batch-interleaved under CFG)."""

import numpy as np
import torch
from diffusers.models.attention import TemporalBasicTransformerBlock
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

from engine.pipelines.motion.pipeline import MotionPipeline
from engine.pipelines.motion.spec import SPEC
from engine.models.mofa.time_context import legacy_time_context


def spy_contexts(model: torch.nn.Module) -> tuple[list[torch.Tensor], list]:
    """Record the context each temporal block receives (the legacy hook is prepended, so spies see its output)."""
    seen: list[torch.Tensor] = []
    handles = [block.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["encoder_hidden_states"].clone()), with_kwargs=True)
        for block in model.modules() if isinstance(block, TemporalBasicTransformerBlock)]
    return seen, handles


def test_reorder_equals_the_diffusers_024_construction_and_is_removed_afterwards():
    torch.manual_seed(0)
    batch, frames, height, width, dim = 2, 3, 4, 5, 8
    model = TransformerSpatioTemporalModel(2, 16, in_channels=32, cross_attention_dim=dim).eval()
    hidden = torch.randn(batch * frames, 32, height, width)
    context = torch.randn(batch * frames, 1, dim)
    indicator = torch.zeros(batch, frames)
    with torch.no_grad(), legacy_time_context(model):
        seen, handles = spy_contexts(model)
        legacy_out = model(hidden, context, image_only_indicator=indicator, return_dict=False)[0]
    for handle in handles:
        handle.remove()
    # diffusers 0.24: first-frame context broadcast to (h w) x batch and flattened in (h w b) order.
    first = context.reshape(batch, frames, 1, dim)[:, 0]
    expected = first[None].broadcast_to(height * width, batch, 1, dim).reshape(height * width * batch, 1, dim)
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)

    seen_after, _ = spy_contexts(model)
    with torch.no_grad():
        fixed_out = model(hidden, context, image_only_indicator=indicator, return_dict=False)[0]
    torch.testing.assert_close(seen_after[0], first.repeat_interleave(height * width, 0), rtol=0, atol=0)
    assert (legacy_out - fixed_out).abs().max() > 1e-3


def test_pipeline_uses_the_demo_order_in_unet_and_controlnet(tiny_pipeline: MotionPipeline):
    """Under CFG, rows alternate zero (unconditional) / image embedding, as in the original (diffusers 0.24)."""
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    flow = torch.zeros(3, 2, 64, 64)
    opts = SPEC.parse_options({"frames": 4, "steps": 1, "size": 64})
    unet_seen, unet_handles = spy_contexts(tiny_pipeline.unet)
    cn_seen, cn_handles = spy_contexts(tiny_pipeline.controlnet)
    try:
        legacy = tiny_pipeline.generate(image, flow, opts)
        first_unet, first_cn = unet_seen[0], cn_seen[0]
        corrected = tiny_pipeline.generate(image, flow, opts.replace(demo_context_order=False))
        fixed_unet = unet_seen[len(unet_seen) // 2]
    finally:
        for handle in unet_handles + cn_handles:
            handle.remove()
    for context in (first_unet, first_cn):
        assert context[0::2].abs().max() == 0
        assert context[1::2].abs().sum(dim=-1).min() > 0
        torch.testing.assert_close(context[1::2], context[1:2].expand_as(context[1::2]))
    half = len(fixed_unet) // 2
    assert fixed_unet[:half].abs().max() == 0 and fixed_unet[half:].abs().sum(dim=-1).min() > 0
    assert np.abs(legacy.numpy() - corrected.numpy()).max() > 1e-4
    assert not any(block._forward_pre_hooks for block in tiny_pipeline.unet.modules())
