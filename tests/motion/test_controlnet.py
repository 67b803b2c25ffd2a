import torch

from engine.models.mofa.controlnet import FlowControlNet, downscale_flow
from engine.pipelines.motion.tiny import TINY_UNET
from engine.testing.weights import randomise
from tests.tolerance import assert_relative_close

CONFIG = {k: v for k, v in TINY_UNET.items() if k != "num_frames"}


def _net() -> FlowControlNet:
    return randomise(FlowControlNet(**CONFIG), torch.Generator().manual_seed(0)).eval()


def _run(net, flow, scale=1.0):
    gen = torch.Generator().manual_seed(2)
    sample = torch.randn(2, 3, 8, 8, 8, generator=gen)
    cond = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    context = torch.randn(2, 1, 32, generator=gen)
    time_ids = torch.tensor([[6.0, 128.0, 0.02]]).repeat(2, 1)
    with torch.no_grad():
        return net(sample, torch.tensor(1.5), context, time_ids, cond, flow, scale)


def test_residual_shapes_and_trained_head_pattern():
    net = _net()
    down, mid = _run(net, torch.zeros(2, 2, 2, 64, 64))
    expected = [(32, 8)] * 3 + [(32, 4)] + [(64, 4)] * 2 + [(64, 2)] * 3 + [(64, 1)] * 3
    assert [(r.shape[1], r.shape[-1]) for r in down] == expected
    assert all(r.shape[0] == 6 for r in down) and mid.shape == (6, 64, 1, 1)
    heads = [b.attentions[0].transformer_blocks[0].attn1.heads for b in net.down_blocks[:3]]
    assert heads == [2, 4, 4]  # block 2 takes block 1's heads, as the published adapter was trained
    widths = [e.conv_in.out_channels for e in net.flow_encoder.encoders]
    assert widths == [32, 64, 64]


def test_outputs_scale_linearly_and_flow_changes_the_residuals():
    net = _net()
    still = torch.zeros(2, 2, 2, 64, 64)
    down1, mid1 = _run(net, still, 1.0)
    down_half, mid_half = _run(net, still, 0.5)
    for a, b in zip(down1, down_half):
        torch.testing.assert_close(b, a * 0.5)
    torch.testing.assert_close(mid_half, mid1 * 0.5)
    moving = still.clone()
    moving[:, :, 0] = 16.0
    down_moving, _ = _run(net, moving, 1.0)
    # frame 0 (unwarped) is identical, later frames differ
    assert_relative_close(down_moving[0][0], down1[0][0])
    assert not torch.allclose(down_moving[0][1], down1[0][1], atol=1e-3)


def test_flow_downscaling_is_nearest_and_divided():
    flow = torch.arange(64.0).view(1, 1, 1, 8, 8).repeat(1, 1, 2, 1, 1)
    small = downscale_flow(flow, 4)
    assert small.shape == (1, 1, 2, 2, 2)
    assert small[0, 0, 0].tolist() == [[0.0, 1.0], [8.0, 9.0]]


def test_attention_heads_are_exactly_what_the_config_lists():
    """The original's saved config.json records the heads it built; a pattern with heads[2] != heads[1] is kept."""
    from diffusers.models.attention_processor import Attention

    net = FlowControlNet(**{**CONFIG, "num_attention_heads": (2, 4, 8, 8)})
    heads = [sorted({m.heads for m in block.modules() if isinstance(m, Attention)}) for block in net.down_blocks[:3]]
    assert heads == [[2], [4], [8]]
    assert {m.heads for m in net.mid_block.modules() if isinstance(m, Attention)} == {8}
