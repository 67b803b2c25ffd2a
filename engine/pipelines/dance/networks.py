"""CoNR's four networks, written to load the published `weights/*.pth` files strictly.

* `ResEncUnet` — a ResNet encoder (torchvision layout, InstanceNorm everywhere) with a U-Net decoder.
  `udpparsernet` is the Bottleneck ResNet-50 "danbo" variant (max-pool replaced by a stride-2 conv),
  `target_pose_encoder` the Basic ResNet-18 "danbo-4" variant (4-channel stem, only its encoder is used).
* `CINN` — the shader: a coarse-to-fine stack of `FlowBlock`s that predict flows, messages and
  confidence masks per sheet view and fuse the views with a softmax over the view axis.
* `RGBADecoderNet` — one residual block and a 3x3 conv to sigmoid RGBA.

Parameter names follow the checkpoints (`backbone.4.0.bn1.norm.weight`, `decoder_blocks.0.conv0.0.weight`,
`bottleneck.r0.norm1.weight` ...). Widths and depths are `DanceNetConfig` fields, so a tiny config of the
same architecture exists for tests, and `DanceNetConfig.from_state_dicts` reads them back from tensors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

# DIM_SHADER_REFERENCE 4 and the (x - 0.6) / 0.2970 input normalisation: conr.py@660c4f771390; 32 flow channels:
# DecoderBlock's out_local_flows / out_msgs_flows in model/shader.py@660c4f771390.
SHADER_REFERENCE_CHANNELS = 4  # DIM_SHADER_REFERENCE: premultiplied RGB + alpha of each sheet view
FLOW_CHANNELS = 2
GROUP_FLOW_CHANNELS = 32  # messages are warped by 16 flows (16 channel groups)
NETWORK_NAMES = ("udpparsernet", "target_pose_encoder", "shader", "rgbadecodernet")
INPUT_MEAN, INPUT_STD = 0.6, 0.2970


def normalize_input(x: torch.Tensor) -> torch.Tensor:
    """The encoders' input normalisation (both ResEncUnets, sheets and poses alike)."""
    return (x - INPUT_MEAN) / INPUT_STD


# --------------------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class ResNetSpec:
    """One torchvision-style ResNet body; `stem_pool_conv` replaces the max-pool with a 3x3/2 conv."""

    block: str  # "basic" | "bottleneck"
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    stem: int
    in_channels: int
    stem_pool_conv: bool

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    def feature_channels(self) -> list[int]:
        """Channels of the features the U-Net returns, deepest first: layer4, layer3, layer2, layer1, stem."""
        return [w * self.expansion for w in reversed(self.widths)] + [self.stem]


@dataclass(frozen=True)
class UNetSpec:
    backbone: ResNetSpec
    decoder_filters: tuple[int, ...]
    classes: int


@dataclass(frozen=True)
class ShaderSpec:
    """CINN widths per pyramid level; levels past the encoder depth have no reference/target features."""

    msgs: tuple[int, ...]
    locals: tuple[int, ...]
    block_nums: tuple[int, ...]
    block_channels: tuple[int, ...]


@dataclass(frozen=True)
class DanceNetConfig:
    parser: UNetSpec
    target: UNetSpec
    shader: ShaderSpec
    decoder_channels: int
    decoder_blocks: int = 1
    reference_channels: int = field(default=SHADER_REFERENCE_CHANNELS)

    @classmethod
    def full(cls) -> "DanceNetConfig":
        """The published networks (57.22M / 26.96M / 96.14M / 84,484 parameters).

        decoder_filters: conr.py@660c4f771390; shader widths/blocks: CINN defaults in model/shader.py@660c4f771390;
        decoder 64 channels, 1 block: RGBADecoderNet in model/decoder_small.py@660c4f771390."""
        filters = (512, 384, 256, 128, 32)
        return cls(
            parser=UNetSpec(ResNetSpec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64, 3, True), filters, 4),
            target=UNetSpec(ResNetSpec("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64, 4, False), filters, 1),
            shader=ShaderSpec(msgs=(2048, 1024, 512, 256, 64, 64), locals=(2048, 1024, 512, 256, 64, 0),
                              block_nums=(1, 1, 1, 1, 1, 2), block_channels=(224,) * 6),
            decoder_channels=64,
        )

    @classmethod
    def tiny(cls) -> "DanceNetConfig":
        """Same architecture at test width (a few hundred thousand parameters)."""
        filters = (16, 16, 8, 8, 8)
        return cls(
            parser=UNetSpec(ResNetSpec("bottleneck", (1, 1, 1, 1), (4, 8, 16, 32), 16, 3, True), filters, 4),
            target=UNetSpec(ResNetSpec("basic", (1, 1, 1, 1), (8, 16, 16, 32), 8, 4, False), filters, 1),
            shader=ShaderSpec(msgs=(32, 16, 16, 16, 16, 16), locals=(32, 16, 16, 16, 16, 0),
                              block_nums=(1, 1, 1, 1, 1, 2), block_channels=(8,) * 6),
            decoder_channels=16,
        )

    @classmethod
    def from_state_dicts(cls, dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> "DanceNetConfig":
        """Read every width and depth back from checkpoint tensor shapes and key counts.

        The shader's message widths are solved from its output channels under the published layout
        (pyramid levels with features carry as many local messages as messages; extra levels none).
        A checkpoint that does not fit raises KeyError/ValueError; strict loading then names the keys.
        """
        shader = dicts["shader"]
        levels = _count_indices(shader, r"decoder_blocks\.(\d+)\.")
        n_main = len(_unet_spec(dicts["udpparsernet"]).backbone.feature_channels())
        msgs, local_msgs, block_nums, channels = [], [], [], []
        for level in range(levels):
            prefix = f"decoder_blocks.{level}."
            out = shader[prefix + "conv_last.2.weight"].shape[1]
            if level < n_main:  # out = flow 2 + m + 32 + m(locals) + 32 + masks (2 + m)
                m = (out - 2 * FLOW_CHANNELS - 2 * GROUP_FLOW_CHANNELS) // 3
                local_msgs.append(m)
            else:  # out = flow 2 + m + 32 + masks (2 + m)
                m = (out - 2 * FLOW_CHANNELS - GROUP_FLOW_CHANNELS) // 2
                local_msgs.append(0)
            msgs.append(m)
            block_nums.append(_count_indices(shader, re.escape(prefix) + r"convblocks\.(\d+)\."))
            channels.append(shader[prefix + "conv0.0.weight"].shape[0])
        decoder = dicts["rgbadecodernet"]
        return cls(
            parser=_unet_spec(dicts["udpparsernet"]),
            target=_unet_spec(dicts["target_pose_encoder"]),
            shader=ShaderSpec(tuple(msgs), tuple(local_msgs), tuple(block_nums), tuple(channels)),
            decoder_channels=decoder["conv_rgba.0.weight"].shape[1],
            decoder_blocks=_count_indices(decoder, r"bottleneck\.r(\d+)\."),
        )


def _count_indices(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def _unet_spec(state: Mapping[str, torch.Tensor]) -> UNetSpec:
    stem_weight = state["backbone.0.weight"]
    block = "bottleneck" if "backbone.4.0.conv3.weight" in state else "basic"
    layers = tuple(_count_indices(state, rf"backbone\.{i}\.(\d+)\.") for i in range(4, 8))
    widths = tuple(state[f"backbone.{i}.0.conv1.weight"].shape[0] for i in range(4, 8))
    backbone = ResNetSpec(block, layers, widths, stem_weight.shape[0], stem_weight.shape[1],
                          "backbone.3.weight" in state)
    n_up = _count_indices(state, r"upsample_blocks\.(\d+)\.")
    filters = tuple(state[f"upsample_blocks.{i}.up.weight"].shape[1] for i in range(n_up))
    return UNetSpec(backbone, filters, state["final_conv.weight"].shape[0])


# --------------------------------------------------------------------------------------------- ResNet

class InstanceNorm(nn.Module):
    """InstanceNorm2d wrapped as `.norm` (the checkpoints' `MyNorm`); no running statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), InstanceNorm(out_ch))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = InstanceNorm(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = InstanceNorm(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = InstanceNorm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = InstanceNorm(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = InstanceNorm(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, width * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def resnet_body(spec: ResNetSpec) -> nn.Sequential:
    """Children 0..7: stem conv, norm, ReLU, pool, layer1..layer4 (fastai 'body' numbering)."""
    block_cls = Bottleneck if spec.block == "bottleneck" else BasicBlock
    pool = (nn.Conv2d(spec.stem, spec.stem, 3, 2, 1, bias=False) if spec.stem_pool_conv
            else nn.MaxPool2d(3, 2, 1))
    children: list[nn.Module] = [nn.Conv2d(spec.in_channels, spec.stem, 7, 2, 3, bias=False),
                                 InstanceNorm(spec.stem), nn.ReLU(inplace=True), pool]
    in_ch = spec.stem
    for i, (count, width) in enumerate(zip(spec.layers, spec.widths)):
        blocks = []
        for j in range(count):
            blocks.append(block_cls(in_ch, width, 2 if (i > 0 and j == 0) else 1))
            in_ch = width * spec.expansion
        children.append(nn.Sequential(*blocks))
    return nn.Sequential(*children)


class UpsampleBlock(nn.Module):
    """ConvTranspose 4/2/1 -> norm -> ReLU -> concat skip -> conv 3x3 -> norm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False)
        self.bn1 = InstanceNorm(out_ch)
        self.conv2 = nn.Conv2d(out_ch + skip_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = InstanceNorm(out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.relu(self.bn1(self.up(x)))
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return F.relu(self.bn2(self.conv2(x)))


SKIP_CHILDREN = (2, 4, 5, 6)  # stem ReLU, layer1, layer2, layer3


class ResEncUnet(nn.Module):
    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        self.backbone = resnet_body(spec.backbone)
        channels = spec.backbone.feature_channels()  # deepest first
        skips = channels[1:] + [0]  # the last upsample block has no skip (full resolution)
        ins = [channels[0], *spec.decoder_filters[:-1]]
        self.upsample_blocks = nn.ModuleList(
            UpsampleBlock(i, o, s) for i, o, s in zip(ins, spec.decoder_filters, skips))
        self.final_conv = nn.Conv2d(spec.decoder_filters[-1], spec.classes, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features, deepest first: [layer4, layer3, layer2, layer1, stem] (strides 32..2)."""
        skips = []
        for index, child in enumerate(self.backbone):
            x = child(x)
            if index in SKIP_CHILDREN:
                skips.append(x)
        return [x, *reversed(skips)]

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """U-Net head on `encode` output: `classes` channels at input resolution (no activation)."""
        x = features[0]
        skips = [*features[1:], None]
        for block, skip in zip(self.upsample_blocks, skips):
            x = block(x, skip)
        return self.final_conv(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.encode(x)
        return self.decode(features), features


# --------------------------------------------------------------------------------------------- warping

def _base_grid(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    ys = torch.linspace(-1.0, 1.0, h, device=device)
    xs = torch.linspace(-1.0, 1.0, w, device=device)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(n, h, w, 2)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp by a pixel flow (x, y): bilinear, border padding, align_corners=True.

    Sampling runs in fp32 so half-precision models keep sub-pixel coordinates exact enough.
    """
    n, _, h, w = image.shape
    scale = torch.tensor([(w - 1.0) / 2.0, (h - 1.0) / 2.0], device=flow.device, dtype=torch.float32)
    grid = _base_grid(n, h, w, flow.device) + flow.float().permute(0, 2, 3, 1) / scale
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(image.dtype)


def warp_groups(features: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """Warp channel group g of `features` by flow pair g of `flows` (C/groups channels per flow)."""
    n, c, h, w = features.shape
    groups = flows.shape[1] // 2
    if c % groups or flows.shape[1] % 2:
        raise ValueError(f"cannot warp {c} channels with {flows.shape[1]} flow channels")
    out = warp(features.reshape(n * groups, c // groups, h, w), flows.reshape(n * groups, 2, h, w))
    return out.reshape(n, c, h, w)


def rescale_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a pixel flow to `size` (square pyramids) and scale its vectors alike."""
    factor = size[-1] / flow.shape[-1]
    if factor == 1:
        return flow
    return F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False,
                         recompute_scale_factor=False) * factor


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False); at the same size that is the identity, so no pass is made."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------- shader

@dataclass
class BlockOutput:
    flow: torch.Tensor
    mask: torch.Tensor
    message: torch.Tensor | None
    message_flow: torch.Tensor | None
    local: torch.Tensor | None
    local_flow: torch.Tensor | None


class FlowBlock(nn.Module):
    """One pyramid level of CINN (`DecoderBlock` in the checkpoints): /4 convs, residual conv stack, x4 up."""

    def __init__(self, in_ch: int, c: int, block_nums: int, msgs: int, local_msgs: int, masks: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(nn.Conv2d(in_ch, c, 3, 2, 1), nn.PReLU(c), nn.Conv2d(c, c, 3, 2, 1), nn.PReLU(c))
        self.convblocks = nn.ModuleList(
            nn.Sequential(*[m for _ in range(6) for m in (nn.Conv2d(c, c, 3, 1, 1), nn.PReLU(c))])
            for _ in range(block_nums))
        msg_flows = GROUP_FLOW_CHANNELS if msgs else 0
        local_flows = GROUP_FLOW_CHANNELS if local_msgs else 0
        self.split = (FLOW_CHANNELS, msgs, msg_flows, local_msgs, local_flows, masks)
        self.conv_last = nn.Sequential(nn.ConvTranspose2d(c, c, 4, 2, 1), nn.PReLU(c),
                                       nn.ConvTranspose2d(c, sum(self.split), 4, 2, 1))

    def forward(self, inputs: list[tuple[torch.Tensor | None, bool]], views: int) -> BlockOutput:
        """inputs: (tensor, shared) in the checkpoint's channel order. A shared tensor is the same for every
        view, so it holds one row per sample instead of `views`: the first (linear) convolution then runs
        on it once and its result is broadcast over the views, which is the same sum in a different order.
        """
        first = self.conv0[0]
        groups: dict[bool, tuple[list[torch.Tensor], list[torch.Tensor]]] = {False: ([], []), True: ([], [])}
        start = 0
        for x, shared in inputs:
            if x is not None:
                groups[shared][0].append(x)
                groups[shared][1].append(first.weight[:, start:start + x.shape[1]])
                start += x.shape[1]
        if start != first.in_channels:
            raise ValueError(f"FlowBlock got {start} input channels, its weights take {first.in_channels}")

        def conv(tensors: list[torch.Tensor], weights: list[torch.Tensor], bias: torch.Tensor | None) -> torch.Tensor:
            return F.conv2d(torch.cat(tensors, dim=1), torch.cat(weights, dim=1), bias, first.stride, first.padding)

        feat = conv(*groups[False], first.bias)
        if groups[True][0]:
            feat = (feat.unflatten(0, (-1, views)) + conv(*groups[True], None)[:, None]).flatten(0, 1)
        feat = self.conv0[1:](feat)
        for block in self.convblocks:
            feat = block(feat) + feat
        parts = torch.split(self.conv_last(feat), self.split, dim=1)
        flow, msg, msg_flow, local, local_flow, mask = (p if p.shape[1] else None for p in parts)
        return BlockOutput(flow, torch.sigmoid(mask), msg, msg_flow, local, local_flow)


class CINN(nn.Module):
    """The shader. Forward takes target-pose features, the sheet views and their parser features and
    returns the fused message at full resolution (`decoder_channels` wide).

    The original loops over views with batch 1; here the M views of a sample form one batch, which is
    the same arithmetic, and inputs common to all views (target features, fused state) go through each
    level's first convolution once instead of M times. Flows are kept in fp32 whatever the model dtype.
    """

    def __init__(self, spec: ShaderSpec, target_channels: list[int], feature_channels: list[int],
                 reference_channels: int = SHADER_REFERENCE_CHANNELS) -> None:
        super().__init__()
        # own flow + fused flow, own warped reference + fused warped reference
        base = 2 * FLOW_CHANNELS + 2 * reference_channels
        in_msgs = (0, *spec.msgs[:-1])
        in_locals = (0, *spec.locals[:-1])
        self.decoder_blocks = nn.ModuleList()
        for level in range(len(spec.msgs)):
            has_features = level < len(feature_channels)
            in_ch = base + in_msgs[level] + in_locals[level]
            if has_features:
                in_ch += target_channels[level] + feature_channels[level]
            masks = 2 + (spec.locals[level] if has_features else spec.msgs[level])
            self.decoder_blocks.append(FlowBlock(in_ch, spec.block_channels[level], spec.block_nums[level],
                                                 spec.msgs[level], spec.locals[level], masks))

    def forward(self, target_features: list[torch.Tensor], reference: torch.Tensor,
                reference_features: list[torch.Tensor]) -> torch.Tensor:
        """target_features: [N,C,h,w] per level; reference: [N,M,4,H,W]; reference_features: [N,M,C,h,w]."""
        n, views = reference.shape[:2]
        reference = reference.flatten(0, 1)
        ref_feats = [f.flatten(0, 1) for f in reference_features]
        dtype = reference.dtype

        size = ref_feats[0].shape[-2:]
        flow = torch.zeros(n * views, FLOW_CHANNELS, *size, device=reference.device, dtype=torch.float32)
        warped_ref = resize(reference, size)
        warped_feat: torch.Tensor | None = ref_feats[0]
        local = fused_msg = None
        fused_flow, fused_ref = flow, warped_ref
        last = len(self.decoder_blocks) - 1
        for level, block in enumerate(self.decoder_blocks):
            fused_shared = level > 0  # level 0 feeds each view its own state as the "fused" one
            target = target_features[level] if level < len(target_features) else None
            out = block([(flow.to(dtype), False), (target, True), (warped_ref, False), (warped_feat, False),
                         (fused_flow.to(dtype), fused_shared), (fused_ref, fused_shared), (fused_msg, True),
                         (local, False)], views)
            next_feat = ref_feats[level + 1] if level + 1 < len(ref_feats) else None
            size = (next_feat if next_feat is not None else reference).shape[-2:]
            message = self._moved(out.message, out.message_flow, size)

            # fuse the views: each confidence channel weighted by its softmax over the view axis
            mask = resize(out.mask, size).unflatten(0, (n, views))
            weight = mask * torch.softmax(mask, dim=1)
            fused_msg = _view_sum(weight[:, :, 2:], message)
            if level == last:  # only the fused message leaves the shader
                break
            flow = rescale_flow(flow + out.flow.float(), size)
            local = self._moved(out.local, out.local_flow, size)
            warped_ref = warp_groups(resize(reference, size), flow)
            warped_feat = warp_groups(next_feat, flow) if next_feat is not None else None
            fused_flow = _view_sum(weight[:, :, 0:1], flow)
            fused_ref = _view_sum(weight[:, :, 0:1], warped_ref)
        return fused_msg

    @staticmethod
    def _moved(x: torch.Tensor | None, flows: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor | None:
        """Upsample a message to the next level and warp it by its own group flows."""
        if x is None:
            return None
        x = resize(x, size)
        return x if flows is None else warp_groups(x, rescale_flow(flows.float(), size))


def _view_sum(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum over the view axis of weight [N,M,c,h,w] times x [N*M,C,h,w] -> [N,C,h,w]."""
    return (weight * x.unflatten(0, weight.shape[:2])).sum(dim=1)


# --------------------------------------------------------------------------------------------- decoder

class ResBlock2d(nn.Module):
    """Residual block whose 'norms' are 1x1 convs (as published)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.norm1 = nn.Conv2d(c, c, 1)
        self.norm2 = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


class RGBADecoderNet(nn.Module):
    def __init__(self, c: int = 64, blocks: int = 1) -> None:
        super().__init__()
        self.bottleneck = nn.Sequential()
        for i in range(blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(c))
        self.conv_rgba = nn.Sequential(nn.Conv2d(c, 4, 3, 1, 1))

    def forward(self, message: torch.Tensor) -> torch.Tensor:
        """Straight (not premultiplied) RGBA in [0, 1]."""
        return torch.sigmoid(self.conv_rgba(self.bottleneck(message)))


# --------------------------------------------------------------------------------------------- factory

def build_networks(config: DanceNetConfig) -> dict[str, nn.Module]:
    """The four networks, with fresh (untrained) weights; load the checkpoints into them."""
    if config.shader.msgs[-1] != config.decoder_channels:
        raise ValueError("the shader's last message width must equal the decoder width")
    return {
        "udpparsernet": ResEncUnet(config.parser),
        "target_pose_encoder": ResEncUnet(config.target),
        "shader": CINN(config.shader, config.target.backbone.feature_channels(),
                       config.parser.backbone.feature_channels(), config.reference_channels),
        "rgbadecodernet": RGBADecoderNet(config.decoder_channels, config.decoder_blocks),
    }

