"""SpatialUNetModelWithTime: sgm's parameter names and sizes, the camera-attention reshape quirk, the temporal conv
over the flattened (frame, view) sequence, and the camera embedding taken from frame 0."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.pipelines.fourd.config import UNetConfig, built_in_config
from engine.pipelines.fourd.unet import (ResBlock, ResBlockWithTime, SpatialTransformerWithTimeMixingAndMotion,
                                         SpatialUNetModelWithTime, regroup, ungroup)
from engine.testing.weights import randomise
from engine.weights import build_on_meta

TINY = UNetConfig(in_channels=8, out_channels=4, model_channels=32, channel_mult=(1, 1), num_res_blocks=1,
                  attention_resolutions=(2,), num_head_channels=16, transformer_depth=1, context_dim=32,
                  adm_in_channels=128, motion_context_dim=4, use_linear_in_transformer=True, extra_ff_mix_layer=True,
                  time_kernel_size=(3, 1, 1), use_camera_emb=True, use_3d_attention=True,
                  separate_motion_merge_factor=True)


def test_published_network_names_and_size() -> None:
    unet = build_on_meta(lambda: SpatialUNetModelWithTime(built_in_config("sv4d2").unet))
    state = unet.state_dict()
    # 1924 tensors, 2.011 B parameters: model.diffusion_model.* of sv4d2.safetensors (reference note)
    assert len(state) == 1924
    assert sum(t.numel() for t in state.values()) == pytest.approx(2.011e9, rel=1e-3)
    for key in ["input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.0.in_layers.2.weight",
                "input_blocks.1.0.emb_layers.1.weight", "input_blocks.1.0.out_layers.0.weight",
                "input_blocks.1.0.out_layers.3.weight", "input_blocks.1.0.time_mix_blocks.in_layers.2.weight",
                "input_blocks.1.0.time_mixer.mix_factor", "input_blocks.1.1.norm.weight", "input_blocks.1.1.proj_in.weight",
                "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
                "input_blocks.1.1.time_mix_blocks.0.ff_in.net.0.proj.weight",
                "input_blocks.1.1.motion_blocks.0.attn2.to_k.weight", "input_blocks.1.1.time_mix_time_embed.0.weight",
                "input_blocks.1.1.time_mix_motion_embed.2.weight", "input_blocks.1.1.time_mixer_motion.mix_factor",
                "input_blocks.3.0.op.weight", "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "label_emb.0.0.weight",
                "label_emb.0.2.weight", "time_embed.0.weight", "time_embed.2.weight", "out.0.weight", "out.2.weight"]:
        assert key in state, key
    assert state["input_blocks.1.0.time_mix_blocks.in_layers.2.weight"].shape == (320, 320, 3, 1, 1)
    assert state["input_blocks.1.1.time_mix_time_embed.0.weight"].shape == (1280, 1280)  # adm_in -> 4c
    assert state["input_blocks.1.1.motion_blocks.0.attn2.to_k.weight"].shape == (320, 4)  # motion context dim 4


def test_camera_attention_groups_consecutive_positions_with_3d_attention() -> None:
    """With use_3d_attention the block sees (b*v*hw, t, c) but attends with timesteps=v: each attended sequence is v
    consecutive spatial positions of one (view, frame)."""
    b, t, v, hw = 1, 2, 2, 4
    label = torch.tensor([[[[ti, vi, p] for p in range(hw)] for vi in range(v)] for ti in range(t)]).float()
    x = label.view(b, t, v, hw, 3)
    camera_in = x.permute(0, 2, 3, 1, 4).reshape(-1, t, 3)  # as the block reshapes it: (b v hw) t c
    sequences = regroup(camera_in, v)  # the attention block's "(b t) s c -> (b s) t c"
    assert sequences.shape == (b * hw * t, v, 3)
    for sequence in sequences:
        frames, views, positions = sequence.T
        assert len(set(frames.tolist())) == 1 and len(set(views.tolist())) == 1  # one frame, one view
        assert positions.tolist() == [positions[0].item() + i for i in range(v)]  # consecutive positions
    assert torch.equal(ungroup(sequences, v, t), camera_in)
    # without it: (b v) (t hw) c, attended across the v views at one frame and position
    sequences = regroup(x.permute(0, 2, 1, 3, 4).reshape(b * v, -1, 3), v)
    for sequence in sequences:
        assert sequence[:, 1].tolist() == list(range(v)) and len(set(map(tuple, sequence[:, [0, 2]].tolist()))) == 1


def _transformer(use_3d: bool) -> SpatialTransformerWithTimeMixingAndMotion:
    config = dataclasses.replace(TINY, use_3d_attention=use_3d)
    return randomise(SpatialTransformerWithTimeMixingAndMotion(32, 2, 16, config).eval(),
                     torch.Generator().manual_seed(1))


@pytest.mark.parametrize("use_3d", [True, False])
def test_frame_zero_context_reach(use_3d: bool) -> None:
    """Perturbing frame 0's CLIP context: with the 3D quirk the camera block's misaligned context moves frames other
    than 0 too; without it only frame 0 moves."""
    b, t, v, h = 1, 3, 2, 4
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b * t * v, 32, h, h, generator=gen)
    context = torch.randn(b, t, 32, generator=gen)
    cam, cond_view = torch.randn(b * t * v, 128, generator=gen), torch.randn(b * v, 4, 8, 8, generator=gen)
    block = _transformer(use_3d)
    motion = block.motion_blocks[0]
    block.time_mixer_motion.mix_factor.data.fill_(30.0)  # motion output off: isolate the camera attention
    with torch.no_grad():
        base = block(x, context, cam, cond_view)
        moved = context.clone()
        moved[:, 0] += 1.0
        changed = (block(x, moved, cam, cond_view) - base).abs().flatten(1).amax(1).view(t, v)
    assert motion is block.motion_blocks[0]
    assert (changed[0] > 0).all()
    if use_3d:
        assert (changed[1:] > 0).any()
    else:
        assert (changed[1:] == 0).all()


def test_camera_embedding_comes_from_frame_zero() -> None:
    b, t, v, h = 1, 3, 2, 4
    gen = torch.Generator().manual_seed(0)
    x, context = torch.randn(b * t * v, 32, h, h, generator=gen), torch.randn(b, t, 32, generator=gen)
    cam, cond_view = torch.randn(b * t * v, 128, generator=gen), torch.randn(b * v, 4, 8, 8, generator=gen)
    block = _transformer(True)
    with torch.no_grad():
        base = block(x, context, cam, cond_view)
        later = cam.clone()
        later[v:] += 1.0  # every frame but the first
        assert torch.equal(block(x, context, later, cond_view), base)
        first = cam.clone()
        first[1] += 1.0  # frame 0, view 1
        assert not torch.equal(block(x, context, first, cond_view), base)


def test_temporal_conv_runs_over_the_flattened_frame_view_sequence() -> None:
    """Kernel [3,1,1] over all t*v images of a batch item in (frame, view) order, so the last view of frame 0
    neighbours view 0 of frame 1 (and the block's GroupNorm takes its statistics over that whole sequence)."""
    t, v = 3, 2
    block = randomise(ResBlockWithTime(32, 128, 32, (3, 1, 1)).eval(), torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(0)
    x, emb = torch.randn(2 * t * v, 32, 4, 4, generator=gen), torch.randn(2 * t * v, 128, generator=gen)
    seen = []
    block.time_mix_blocks.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        block(x, emb, num_frames=t * v)
        spatial = ResBlock.forward(block, x, emb)
    conv = block.time_mix_blocks.in_layers[2]
    assert isinstance(conv, torch.nn.Conv3d) and conv.kernel_size == (3, 1, 1) and conv.padding == (1, 0, 0)
    assert seen[0].shape == (2, 32, t * v, 4, 4)
    for item in range(2):
        for i in range(t * v):  # sequence index i = frame * v + view
            assert torch.equal(seen[0][item, :, i], spatial[item * t * v + i])


def test_tiny_unet_forward_shapes() -> None:
    unet = randomise(SpatialUNetModelWithTime(TINY).eval(), torch.Generator().manual_seed(3))
    b, t, v = 2, 1, 2
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = unet(torch.randn(b * t * v, 8, 8, 8, generator=gen), torch.full((b * t * v,), 0.3),
                   torch.randn(b, t, 32, generator=gen), torch.randn(b * t * v, 128, generator=gen),
                   torch.randn(b * v, 4, 8, 8, generator=gen), num_frames=t * v)
    assert out.shape == (b * t * v, 4, 8, 8) and torch.isfinite(out).all()


def test_sv4d_without_a_separate_motion_factor_has_no_motion_mixer_keys() -> None:
    """sgm registers time_mixer_motion only with separate_motion_merge_factor (spacetime_attention.py@0ad7de9a5cb5
    l.498); SV4D 1.0's config leaves it off, so its published file has no such keys and the motion blocks reuse
    time_mixer."""
    config = dataclasses.replace(TINY, separate_motion_merge_factor=False)
    block = SpatialUNetModelWithTime(config)
    keys = list(block.state_dict())
    assert any("time_mixer.mix_factor" in k for k in keys)
    assert not any("time_mixer_motion" in k for k in keys)
    sv4d = build_on_meta(lambda: SpatialUNetModelWithTime(built_in_config("sv4d").unet)).state_dict()
    assert not any("time_mixer_motion" in k for k in sv4d)
