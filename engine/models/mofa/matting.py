"""ForegroundMatting: the occlusion refinement the landmark ControlNet applies to every warped feature.

An hourglass of plain 3x3 conv+ReLU layers (no pooling or upsampling: every layer keeps the resolution) reads
cat[reference feature, flow (2), warped feature]; two 7x7 convs give a sigmoid mask m and a matte, and the output is
warped * m + matte * (1 - m). The decoder concatenates each encoder output (first) with the decoded features (second),
deepest first. Key names follow the published checkpoint (`hourglass.encoder.down_blocks.0.conv`, `matting_mask`,
`matting`). Defaults 3 blocks, expansion 64, max 512 channels: ForegroundMatting and Hourglass in
MOFA-Video-Keypoint/models/occlusion/hourglass.py@3ad3b546da4c (the ldmk ControlNet builds them with these defaults).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ConvReLU(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def _width(level: int, expansion: int, max_features: int) -> int:
    return min(max_features, expansion * 2 ** level)


class HourglassEncoder(nn.Module):
    def __init__(self, c_in: int, blocks: int, expansion: int, max_features: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            _ConvReLU(c_in if i == 0 else _width(i, expansion, max_features), _width(i + 1, expansion, max_features))
            for i in range(blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for block in self.down_blocks:
            x = block(x)
            outputs.append(x)
        return outputs


class HourglassDecoder(nn.Module):
    def __init__(self, blocks: int, expansion: int, max_features: int) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            _ConvReLU((1 if i == blocks - 1 else 2) * _width(i + 1, expansion, max_features),
                      _width(i, expansion, max_features))
            for i in reversed(range(blocks)))

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        decoded = self.up_blocks[0](skips[-1])
        for block, skip in zip(self.up_blocks[1:], reversed(skips[:-1])):
            decoded = block(torch.cat([skip, decoded], dim=1))
        return decoded


class Hourglass(nn.Module):
    def __init__(self, c_in: int, blocks: int, expansion: int, max_features: int) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(c_in, blocks, expansion, max_features)
        self.decoder = HourglassDecoder(blocks, expansion, max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ForegroundMatting(nn.Module):
    """warped [N,C,h,w] refined from the reference feature [N,C,h,w] and the flow [N,2,h,w] that warped it."""

    def __init__(self, channels: int, blocks: int = 3, expansion: int = 64, max_features: int = 512) -> None:
        super().__init__()
        self.hourglass = Hourglass(2 * channels + 2, blocks, expansion, max_features)
        self.matting_mask = nn.Conv2d(expansion, 1, 7, padding=3)
        self.matting = nn.Conv2d(expansion, channels, 7, padding=3)

    def forward(self, reference: torch.Tensor, flow: torch.Tensor,
                warped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (refined feature, mask m)."""
        features = self.hourglass(torch.cat([reference, flow, warped], dim=1))
        mask = torch.sigmoid(self.matting_mask(features))
        return warped * mask + self.matting(features) * (1 - mask), mask
