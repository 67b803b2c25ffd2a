"""Architecture checks: published parameter counts and key names, shape flow, warping, view fusion."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.pipelines.dance.networks import (CINN, DanceNetConfig, build_networks, rescale_flow, warp,
                                             warp_groups)
from engine.pipelines.dance.tiny import random_networks
from tests.tolerance import assert_relative_close

PUBLISHED = {  # name: (parameters rounded as published, tensors)
    "udpparsernet": (57.22e6, 192),
    "target_pose_encoder": (26.96e6, 92),
    "shader": (96.14e6, 192),
    "rgbadecodernet": (84_484, 10),
}


@pytest.fixture(scope="module")
def full_states() -> dict[str, dict[str, torch.Tensor]]:
    with torch.device("meta"):
        return {name: net.state_dict() for name, net in build_networks(DanceNetConfig.full()).items()}


@pytest.fixture(scope="module")
def tiny_nets() -> dict[str, torch.nn.Module]:
    return {name: net.eval() for name, net in random_networks(DanceNetConfig.tiny(), seed=1).items()}


def test_full_config_matches_published_counts(full_states):
    for name, (params, tensors) in PUBLISHED.items():
        state = full_states[name]
        count = sum(t.numel() for t in state.values())
        assert len(state) == tensors, name
        if params < 1e6:
            assert count == params, name
        else:
            assert round(count / 1e4) == round(params / 1e4), (name, count)


def test_full_config_key_names_and_shader_widths(full_states):
    parser, target, shader, decoder = (full_states[n] for n in PUBLISHED)
    for key in ("backbone.0.weight", "backbone.1.norm.weight", "backbone.3.weight", "backbone.4.0.bn1.norm.weight",
                "backbone.4.0.downsample.1.norm.bias", "upsample_blocks.0.up.weight", "final_conv.bias"):
        assert key in parser, key
    assert parser["backbone.0.weight"].shape[1] == 3 and target["backbone.0.weight"].shape[1] == 4
    assert "backbone.3.weight" not in target  # resnet18 keeps its max-pool
    assert target["final_conv.weight"].shape[0] == 1 and parser["final_conv.weight"].shape[0] == 4
    assert not any("running_mean" in k for k in parser)
    levels = [(shader[f"decoder_blocks.{i}.conv0.0.weight"].shape[1],
               shader[f"decoder_blocks.{i}.conv_last.2.weight"].shape[1]) for i in range(6)]
    assert levels == [(2572, 6212), (5388, 3140), (2700, 1604), (1356, 836), (652, 260), (140, 164)]
    assert shader["decoder_blocks.0.conv0.1.weight"].shape == (224,)  # PReLU
    assert "decoder_blocks.5.convblocks.1.11.weight" in shader and "decoder_blocks.4.convblocks.1.0.weight" not in shader
    assert set(decoder) >= {"conv_rgba.0.weight", "bottleneck.r0.conv1.weight", "bottleneck.r0.norm2.bias"}


@pytest.mark.parametrize("config", [DanceNetConfig.full(), DanceNetConfig.tiny(),
                                    dataclasses.replace(DanceNetConfig.tiny(), decoder_blocks=2)])
def test_from_state_dicts_recovers_config(config):
    with torch.device("meta"):
        states = {name: net.state_dict() for name, net in build_networks(config).items()}
    assert DanceNetConfig.from_state_dicts(states) == config


def test_encoder_shapes(tiny_nets):
    config = DanceNetConfig.tiny()
    x = torch.randn(2, 3, 128, 128)
    udp, features = tiny_nets["udpparsernet"](x)
    assert udp.shape == (2, 4, 128, 128)
    assert [f.shape[1] for f in features] == config.parser.backbone.feature_channels()
    assert [f.shape[-1] for f in features] == [4, 8, 16, 32, 64]  # strides 32 .. 2
    target = tiny_nets["target_pose_encoder"].encode(torch.randn(1, 4, 128, 128))
    assert [tuple(f.shape[1:]) for f in target] == [(32, 4, 4), (16, 8, 8), (16, 16, 16), (8, 32, 32), (8, 64, 64)]


def _shader_inputs(nets, n: int, views: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    reference = torch.rand(n, views, 4, 128, 128, generator=g)
    feats = [f.unflatten(0, (n, views)) for f in nets["udpparsernet"].encode(torch.randn(n * views, 3, 128, 128, generator=g))]
    targets = nets["target_pose_encoder"].encode(torch.randn(n, 4, 128, 128, generator=g))
    return targets, reference, feats


def test_shader_and_decoder_shapes(tiny_nets):
    with torch.no_grad():
        message = tiny_nets["shader"](*_shader_inputs(tiny_nets, 1, 2))
        rgba = tiny_nets["rgbadecodernet"](message)
    assert message.shape == (1, 16, 128, 128)
    assert rgba.shape == (1, 4, 128, 128) and 0 <= rgba.min() and rgba.max() <= 1


def test_shader_is_symmetric_in_views_and_independent_across_samples(tiny_nets):
    shader: CINN = tiny_nets["shader"]
    targets, reference, feats = _shader_inputs(tiny_nets, 2, 3)
    with torch.no_grad():
        both = shader(targets, reference, feats)
        perm = [2, 0, 1]
        permuted = shader(targets, reference[:, perm], [f[:, perm] for f in feats])
        alone = shader([t[1:] for t in targets], reference[1:], [f[1:] for f in feats])
    assert both.abs().max() > 0
    assert_relative_close(permuted, both)
    assert_relative_close(alone, both[1:])


def test_flow_block_convolves_shared_inputs_once_as_if_repeated_per_view(tiny_nets):
    block = tiny_nets["shader"].decoder_blocks[1]
    first = block.conv0[0]
    views, n = 3, 2
    sizes = [2, 5, first.in_channels - 2 - 5 - 4, 4]  # per-view, shared, per-view, shared (checkpoint order)
    torch.manual_seed(0)
    per_view = [torch.randn(n * views, c, 16, 16) for c in sizes[0::2]]
    shared = [torch.randn(n, c, 16, 16) for c in sizes[1::2]]
    inputs = [(per_view[0], False), (shared[0], True), (None, False), (per_view[1], False), (shared[1], True)]
    repeated = [(x if x is None or not is_shared else x.repeat_interleave(views, 0), False) for x, is_shared in inputs]
    with torch.no_grad():
        got = block(inputs, views)
        expected = block(repeated, views)  # one convolution over the full per-view concatenation
    for name in ("flow", "mask", "message", "message_flow", "local", "local_flow"):
        assert_relative_close(getattr(got, name), getattr(expected, name))
    with pytest.raises(ValueError, match="input channels"):
        block(inputs[:2], views)


def test_warp_zero_flow_is_identity_and_unit_flow_shifts():
    image = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(1, 2, 5, 6)
    zero = torch.zeros(1, 2, 5, 6)
    torch.testing.assert_close(warp(image, zero), image)
    right = zero.clone()
    right[:, 0] = 1.0  # sample one pixel to the right; the last column repeats (border padding)
    shifted = warp(image, right)
    torch.testing.assert_close(shifted[..., :-1], image[..., 1:])
    torch.testing.assert_close(shifted[..., -1], image[..., -1])
    down = zero.clone()
    down[:, 1] = 1.0
    torch.testing.assert_close(warp(image, down)[..., :-1, :], image[..., 1:, :])


def test_warp_groups_uses_one_flow_per_channel_group():
    features = torch.rand(1, 4, 5, 6)
    flows = torch.zeros(1, 4, 5, 6)
    flows[:, 2] = 1.0  # second group (channels 2, 3) moves right, first group stays
    out = warp_groups(features, flows)
    torch.testing.assert_close(out[:, :2], features[:, :2])
    torch.testing.assert_close(out[:, 2:, :, :-1], features[:, 2:, :, 1:])


def test_rescale_flow_scales_vectors_with_size():
    flow = torch.full((1, 2, 4, 4), 1.5)
    up = rescale_flow(flow, (8, 8))
    assert up.shape == (1, 2, 8, 8)
    torch.testing.assert_close(up, torch.full_like(up, 3.0))
