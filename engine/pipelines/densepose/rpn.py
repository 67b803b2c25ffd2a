"""detectron2's region proposal network at test time: StandardRPNHead, DefaultAnchorGenerator and
find_top_rpn_proposals (`proposal_generator.rpn_head.*` parameters)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from engine.pipelines.densepose import ops

# Base-DensePose-RCNN-FPN.yaml@02b5c4e295e9 (ANCHOR_GENERATOR.SIZES, PRE/POST_NMS_TOPK_TEST) and detectron2's
# config defaults, detectron2/config/defaults.py@02b5c4e295e9 (ASPECT_RATIOS, OFFSET 0.0, RPN.NMS_THRESH 0.7,
# MIN_SIZE 0, BBOX_REG_WEIGHTS (1, 1, 1, 1))
ANCHOR_SIZES = (32, 64, 128, 256, 512)  # one per level p2..p6
ASPECT_RATIOS = (0.5, 1.0, 2.0)
STRIDES = (4, 8, 16, 32, 64)
PRE_NMS_TOPK = 1000  # per level
POST_NMS_TOPK = 1000  # per image
NMS_THRESHOLD = 0.7
MIN_BOX_SIZE = 0.0
BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def cell_anchors(size: float, ratios: tuple[float, ...] = ASPECT_RATIOS) -> torch.Tensor:
    """Anchors centred on (0, 0) for one size: area size^2, height / width = ratio (generate_cell_anchors)."""
    anchors = []
    for ratio in ratios:
        w = math.sqrt(size ** 2.0 / ratio)
        h = ratio * w
        anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors)


def grid_anchors(height: int, width: int, stride: int, size: float, device: torch.device) -> torch.Tensor:
    """(H * W * A, 4) anchors, location-major (offset 0: the first cell's anchors are centred on (0, 0))."""
    shifts_x = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + cell_anchors(size).to(device).view(1, -1, 4)).reshape(-1, 4)


class RPNHead(nn.Module):
    """A shared 3x3 conv + ReLU, then objectness logits and box deltas per anchor, on every level."""

    def __init__(self, channels: int, anchors: int = len(ASPECT_RATIOS)) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, anchors * 4, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


class RPN(nn.Module):
    """`proposal_generator`: (N, C, H, W) levels -> per image (boxes (R, 4), objectness logits (R,))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rpn_head = RPNHead(channels)

    def forward(self, features: list[torch.Tensor], image_sizes: list[tuple[int, int]]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        logits, deltas = self.rpn_head(features)
        n = features[0].shape[0]
        boxes, scores, levels = [], [], []
        for level, (logit, delta, stride, size) in enumerate(zip(logits, deltas, STRIDES, ANCHOR_SIZES)):
            _, a, h, w = logit.shape
            anchors = grid_anchors(h, w, stride, size, logit.device)
            logit = logit.permute(0, 2, 3, 1).reshape(n, -1)  # (N, H*W*A), location-major like the anchors
            delta = delta.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
            proposals = ops.apply_deltas(delta.reshape(-1, 4), anchors.repeat(n, 1), BOX_WEIGHTS).view(n, -1, 4)
            top = min(logit.shape[1], PRE_NMS_TOPK)
            top_scores, top_index = logit.topk(top, dim=1)
            boxes.append(torch.gather(proposals, 1, top_index[..., None].expand(-1, -1, 4)))
            scores.append(top_scores)
            levels.append(torch.full((top,), level, dtype=torch.long, device=logit.device))
        boxes, scores, levels = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels)
        return [self._select(boxes[i], scores[i], levels, image_sizes[i]) for i in range(n)]

    @staticmethod
    def _select(boxes: torch.Tensor, scores: torch.Tensor, levels: torch.Tensor,
                image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        boxes = ops.clip_boxes(boxes, *image_size)
        keep = ops.nonempty(boxes, MIN_BOX_SIZE)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = ops.batched_nms(boxes, scores, levels, NMS_THRESHOLD)[:POST_NMS_TOPK]
        return boxes[keep], scores[keep]
