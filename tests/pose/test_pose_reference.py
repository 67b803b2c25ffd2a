"""Reference attention: what the appearance encoder writes, how the UNet reads it, and how they pair."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from safetensors.torch import load_file

from engine.pipelines.pose.appearance import AppearanceEncoder, load_appearance_encoder
from engine.pipelines.pose.tiny import TINY_UNET, tiny_unet3d
from engine.pipelines.pose.unet3d import SpatialBlock
from engine.testing.weights import randomise
from engine.weights import DIFFUSERS_WEIGHTS
from tests.tolerance import assert_relative_close


@pytest.fixture(scope="module")
def encoder(pose_folders: dict[str, Path]) -> AppearanceEncoder:
    return load_appearance_encoder(pose_folders["magicanimate"] / "appearance_encoder", "cpu", torch.float32)


def test_writer_records_norm1_of_mid_and_up_blocks_widest_first(pose_folders: dict[str, Path],
                                                                encoder: AppearanceEncoder) -> None:
    full = UNet2DConditionModel.from_config(TINY_UNET).eval()
    full.load_state_dict(load_file(str(pose_folders["magicanimate"] / "appearance_encoder" / DIFFUSERS_WEIGHTS)),
                         strict=False)  # the 24 absent tensors stay random: they come after the last feature
    recorded = []
    for part in (full.mid_block, full.up_blocks):
        for module in part.modules():
            if isinstance(module, BasicTransformerBlock):
                module.norm1.register_forward_hook(lambda m, a, out: recorded.append(out))
    latent, context = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad():
        full(latent, torch.tensor(501), encoder_hidden_states=context)
        features = encoder(latent, torch.tensor(501), context)
    assert encoder.widths == [128, 128, 128, 128, 64, 64, 64, 32, 32, 32]
    # the module order is already widest-first here (mid, up1, up2, up3), so the stable sort keeps it
    assert len(features) == len(recorded) == 10
    for ours, theirs in zip(features, recorded):
        assert_relative_close(ours, theirs)


def test_reader_blocks_pair_with_writers_by_width(encoder: AppearanceEncoder) -> None:
    unet = tiny_unet3d()
    readers = unet.reference_blocks()
    assert [b.norm1.normalized_shape[0] for b in readers] == encoder.widths
    assert readers[0] is unet.mid_block.attentions[0].transformer_blocks[0]
    assert readers[1] is unet.up_blocks[1].attentions[0].transformer_blocks[0]
    features = [torch.randn(4, w) for w in encoder.widths]
    with unet.reading_reference(features, batch=[1]):
        assert all(b.reference is f for b, f in zip(readers, features))
    assert all(b.reference is None for b in readers)
    with pytest.raises(ValueError):
        with unet.reading_reference(features[:-1], batch=[1]):
            pass


def test_cond_half_reads_reference_and_uncond_half_does_not() -> None:
    torch.manual_seed(0)
    dim, frames, tokens = 64, 3, 5
    block = randomise(SpatialBlock(dim, heads=8, cross_dim=32), torch.Generator().manual_seed(1)).eval()
    x = torch.randn(2 * frames, tokens, dim)
    context = torch.randn(2 * frames, 7, 32)
    reference = torch.randn(6, dim)
    with torch.no_grad():
        plain = block(x, context, frames)
        block.reference, block.reference_batch = reference, (1,)
        read = block(x, context, frames)
    torch.testing.assert_close(read[:frames], plain[:frames])  # unconditional half: plain self-attention
    assert (read[frames:] - plain[frames:]).abs().max() > 1e-3

    # conditional half: attention over cat([own tokens, reference tokens]), written out by hand
    attn = block.attn1
    with torch.no_grad():
        n = F.layer_norm(x[frames:], (dim,), block.norm1.weight, block.norm1.bias)
        kv = torch.cat([n, reference.expand(frames, -1, -1)], dim=1)
        split = lambda t: t.view(frames, t.shape[1], 8, dim // 8).transpose(1, 2)  # noqa: E731
        q, k, v = split(F.linear(n, attn.to_q.weight)), split(F.linear(kv, attn.to_k.weight)), split(F.linear(kv, attn.to_v.weight))
        mixed = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // 8), -1) @ v).transpose(1, 2).reshape(frames, tokens, dim)
        h = x[frames:] + F.linear(mixed, attn.to_out[0].weight, attn.to_out[0].bias)
        h = h + block.attn2(block.norm2(h), encoder_hidden_states=context[frames:])
        h = h + block.ff(block.norm3(h))
    assert_relative_close(read[frames:], h)
