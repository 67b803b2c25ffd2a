"""detectron2's ResNet (stride in the 1x1 convolution, frozen batch norm) and FPN with P6, under detectron2's
parameter names (`backbone.bottom_up.res2.0.conv1.norm.running_var`, `backbone.fpn_lateral2.weight`...), so the
model-zoo checkpoint loads without renaming."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

FROZEN_BN_EPS = 1e-5  # FrozenBatchNorm2d's eps, detectron2/layers/batch_norm.py@02b5c4e295e9


@dataclass(frozen=True)
class BackboneConfig:
    """ResNet-50 + FPN widths; tests build narrower ones of the same layout."""

    stem: int = 64  # RESNETS.STEM_OUT_CHANNELS
    bottleneck: int = 64  # res2's bottleneck width (RESNETS.NUM_GROUPS x WIDTH_PER_GROUP); doubles per stage
    res2_out: int = 256  # RESNETS.RES2_OUT_CHANNELS; doubles per stage
    blocks: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-50
    fpn: int = 256  # FPN.OUT_CHANNELS


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all four stored in the checkpoint)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + FROZEN_BN_EPS).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + bias.view(1, -1, 1, 1).to(x.dtype)


class ConvNorm(nn.Conv2d):
    """detectron2's Conv2d with a `norm` submodule: convolution without bias, then frozen batch norm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.norm = FrozenBatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    """BottleneckBlock with STRIDE_IN_1X1 (the MSRA weights): the first 1x1 convolution carries the stride."""

    def __init__(self, cin: int, width: int, cout: int, stride: int) -> None:
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride=stride) if cin != cout else None
        self.conv1 = ConvNorm(cin, width, 1, stride=stride)
        self.conv2 = ConvNorm(width, width, 3, padding=1)
        self.conv3 = ConvNorm(width, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class Stem(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, channels, 7, stride=2, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet(nn.Module):
    """Stem + res2..res5; returns the four stages' outputs (strides 4, 8, 16, 32)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.stem = Stem(config.stem)
        cin, width, cout = config.stem, config.bottleneck, config.res2_out
        for stage, count in enumerate(config.blocks):
            first_stride = 1 if stage == 0 else 2
            blocks = [Bottleneck(cin if i == 0 else cout, width, cout, first_stride if i == 0 else 1)
                      for i in range(count)]
            self.add_module(f"res{stage + 2}", nn.Sequential(*blocks))
            cin, width, cout = cout, width * 2, cout * 2
        self.stage_names = [f"res{stage + 2}" for stage in range(len(config.blocks))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outputs.append(x)
        return outputs


class FPNBackbone(nn.Module):
    """`backbone`: ResNet (`bottom_up`) + FPN laterals/outputs + P6 (max pool, kernel 1, stride 2 of P5).
    Returns [p2, p3, p4, p5, p6]."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.bottom_up = ResNet(config)
        channels = [config.res2_out * 2 ** i for i in range(len(config.blocks))]
        for level, cin in enumerate(channels, start=2):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(cin, config.fpn, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(config.fpn, config.fpn, 3, padding=1))
        self.levels = list(range(2, 2 + len(channels)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = self.bottom_up(x)
        results = []
        previous = None
        for level, stage in zip(reversed(self.levels), reversed(stages)):
            lateral = getattr(self, f"fpn_lateral{level}")(stage)
            previous = lateral if previous is None else \
                lateral + F.interpolate(previous, scale_factor=2.0, mode="nearest")
            results.insert(0, getattr(self, f"fpn_output{level}")(previous))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return results
