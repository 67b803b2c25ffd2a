"""UNet3D structure and the numerics that differ from diffusers' AnimateDiff/2-D blocks."""
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.resnet import ResnetBlock2D

from engine.pipelines.pose.motion_module import MotionModule
from engine.pipelines.pose.tiny import tiny_unet3d
from engine.pipelines.pose.unet3d import ResnetBlock3D, UNet3DConditionModel, UNet3DConfig
from engine.testing.weights import randomise
from tests.tolerance import assert_relative_close


def frames_with_different_statistics(b: int, c: int, f: int, hw: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.arange(1, f + 1, dtype=torch.float32).view(1, 1, f, 1, 1)
    return torch.randn(b, c, f, hw, hw, generator=g) * scale + scale


def test_full_size_keys_match_published_layout() -> None:
    with torch.device("meta"):
        unet = UNet3DConditionModel(UNet3DConfig())
        unet2d = UNet2DConditionModel(cross_attention_dim=768)
    state = unet.state_dict()
    motion = {k: v for k, v in state.items() if "motion_modules" in k}
    assert len(motion) == 560
    assert sum(v.numel() for k, v in motion.items() if not k.endswith(".pe")) == 417_137_600
    assert sum(v.numel() for k, v in state.items() if not k.endswith(".pe")) == 1_276_658_564
    modules = {k.split(".temporal_transformer")[0] for k in motion}
    assert modules == {f"down_blocks.{i}.motion_modules.{j}" for i in range(4) for j in range(2)} | {
        f"up_blocks.{i}.motion_modules.{j}" for i in range(4) for j in range(3)}
    pe = state["up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"]
    assert tuple(pe.shape) == (1, 24, 320)
    spatial = {k: tuple(v.shape) for k, v in state.items() if "motion_modules" not in k}
    assert spatial == {k: tuple(v.shape) for k, v in unet2d.state_dict().items()}


def test_resnet_groupnorm_pools_over_frames_unlike_diffusers_resnet2d() -> None:
    torch.manual_seed(0)
    block = randomise(ResnetBlock3D(32, 64, 128, groups=32, eps=1e-5), torch.Generator().manual_seed(1)).eval()
    per_frame = ResnetBlock2D(in_channels=32, out_channels=64, temb_channels=128, groups=32, eps=1e-5).eval()
    per_frame.load_state_dict(block.state_dict())
    x, temb = frames_with_different_statistics(1, 32, 4, 6), torch.randn(1, 128)
    with torch.no_grad():
        ours = block(x, temb)
        diffusers_frames = torch.stack([per_frame(x[:, :, k], temb) for k in range(4)], dim=2)
        single = block(x[:, :, :1], temb)
    assert (ours - diffusers_frames).abs().max() > 0.1  # per-frame normalisation would be a different model
    assert_relative_close(single[:, :, 0], per_frame(x[:, :, 0], temb))
    # changing one frame changes every other frame's output through the shared statistics
    x2 = x.clone()
    x2[:, :, 3] *= 3
    with torch.no_grad():
        assert (block(x2, temb)[:, :, 0] - ours[:, :, 0]).abs().max() > 1e-3


@pytest.fixture(scope="module")
def unet() -> UNet3DConditionModel:
    return tiny_unet3d().eval()


def test_resnet_and_output_norms_pool_frames_while_attention_norms_do_not(unet: UNet3DConditionModel) -> None:
    """Every GroupNorm of the UNet, seen from inside a forward pass over two frames."""
    seen = {}
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: seen.update({name: (args[0], out)}))
             for name, m in unet.named_modules() if isinstance(m, torch.nn.GroupNorm)]
    with torch.no_grad():
        unet(frames_with_different_statistics(1, 4, 2, 8), torch.tensor(501), torch.randn(1, 77, 32))
    for hook in hooks:
        hook.remove()
    pooled_names = [n for n in seen if ".resnets." in n or n == "conv_norm_out"]
    assert len(pooled_names) == 2 * (8 + 2 + 12) + 1
    for name, (x, y) in seen.items():
        if name in pooled_names:  # (b, C, f, h, w): statistics over every frame
            assert x.dim() == 5, name
            norm = unet.get_submodule(name)
            torch.testing.assert_close(y, F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps))
        else:  # spatial transformer and motion module norms: one frame per batch row
            assert x.dim() == 4 and x.shape[0] == 2, name
    x, y = seen["conv_norm_out"]
    norm = unet.conv_norm_out
    frame_wise = torch.stack([F.group_norm(x[:, :, k], 32, norm.weight, norm.bias, norm.eps) for k in range(2)], 2)
    assert (y - frame_wise).abs().max() > 1e-3


def independent_motion_module(module: MotionModule, x: torch.Tensor, heads: int = 8) -> torch.Tensor:
    """A plain re-statement of the original's Vanilla temporal module (per-frame GroupNorm, sinusoid, GEGLU)."""
    tt = module.temporal_transformer
    b, c, f, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        normed = torch.stack([F.group_norm(x[i, :, k][None], 32, tt.norm.weight, tt.norm.bias, 1e-6)[0]
                              for k in range(f)])  # (f, c, h, w), each frame on its own
        tokens = F.linear(normed.permute(2, 3, 0, 1).reshape(h * w, f, c), tt.proj_in.weight, tt.proj_in.bias)
        block = tt.transformer_blocks[0]
        for attention, norm in zip(block.attention_blocks, block.norms):
            n = F.layer_norm(tokens, (c,), norm.weight, norm.bias)
            position = torch.arange(f, dtype=torch.float32)[:, None]
            angle = position * torch.exp(-math.log(10000.0) * torch.arange(0, c, 2) / c)
            pe = torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(f, c)
            n = n + pe
            q, k, v = (F.linear(n, p.weight).view(h * w, f, heads, -1).transpose(1, 2)
                       for p in (attention.to_q, attention.to_k, attention.to_v))
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
            mixed = (weights @ v).transpose(1, 2).reshape(h * w, f, c)
            tokens = tokens + F.linear(mixed, attention.to_out[0].weight, attention.to_out[0].bias)
        n = F.layer_norm(tokens, (c,), block.ff_norm.weight, block.ff_norm.bias)
        value, gate = F.linear(n, block.ff.net[0].proj.weight, block.ff.net[0].proj.bias).chunk(2, dim=-1)
        tokens = tokens + F.linear(value * F.gelu(gate), block.ff.net[2].weight, block.ff.net[2].bias)
        tokens = F.linear(tokens, tt.proj_out.weight, tt.proj_out.bias)
        out[i] = tokens.reshape(h, w, f, c).permute(3, 2, 0, 1) + x[i]
    return out


def test_motion_module_matches_independent_statement() -> None:
    torch.manual_seed(0)
    module = randomise(MotionModule(64), torch.Generator().manual_seed(2)).eval()
    x = frames_with_different_statistics(2, 64, 5, 3)
    with torch.no_grad():
        assert_relative_close(module(x), independent_motion_module(module, x))
