"""detectron2's DensePoseROIHeads at test time (`roi_heads.*` parameters): the box head and predictor on
multi-level ROIAlign, then on the kept detections the Panoptic-FPN decoder, the 8-conv DensePose head and the chart
predictor (coarse segmentation, fine segmentation, U, V)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from engine.pipelines.densepose import ops

# Base-DensePose-RCNN-FPN.yaml@02b5c4e295e9 (ROI_BOX_HEAD: 2 FC, pooler 7, sampling 2, "ROIAlign" = aligned False;
# NUM_CLASSES 1), detectron2/config/defaults.py@02b5c4e295e9 (FC_DIM 1024, BBOX_REG_WEIGHTS (10, 10, 5, 5),
# ROI_HEADS.NMS_THRESH_TEST 0.5, DETECTIONS_PER_IMAGE 100; ROIPooler canonical box 224 at level 4), and
# projects/DensePose/densepose/config.py@02b5c4e295e9 (8 convs of 512, kernel 3, deconv 4, up-scale 2, pooler 28,
# sampling 2, decoder on, 256 channels, common stride 4, 24 patches)
BOX_POOL, BOX_SAMPLING = 7, 2
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
NMS_THRESHOLD = 0.5
DETECTIONS_PER_IMAGE = 100
CANONICAL_SIZE, CANONICAL_LEVEL = 224, 4
LEVELS = (2, 3, 4, 5)  # p2..p5 for the box head
DP_POOL, DP_SAMPLING = 28, 2
DP_SCALE = 1.0 / 4  # the decoder's output stride
PARTS = 24


@dataclass(frozen=True)
class HeadConfig:
    channels: int = 256  # FPN output channels
    fc: int = 1024
    classes: int = 1
    decoder: int = 256  # DECODER_CONV_DIMS and DECODER_NUM_CLASSES
    dp_convs: int = 8
    dp_dim: int = 512
    coarse: int = 2


class BoxHead(nn.Module):
    """FastRCNNConvFCHead with two fully connected layers."""

    def __init__(self, cin: int, fc: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cin, fc)
        self.fc2 = nn.Linear(fc, fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class BoxPredictor(nn.Module):
    """FastRCNNOutputLayers: class scores (with background last) and class-specific box deltas."""

    def __init__(self, fc: int, classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(fc, classes + 1)
        self.bbox_pred = nn.Linear(fc, classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class ConvReLU(nn.Conv2d):
    """detectron2's Conv2d with its activation inside (so a Sequential's indices match the checkpoint's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class Decoder(nn.Module):
    """The Panoptic-FPN semantic branch that merges p2..p5 at stride 4: per level log2(stride / 4) (at least one)
    3x3 conv + ReLU blocks, each followed by x2 bilinear upsampling above stride 4; summed; a 1x1 predictor."""

    def __init__(self, cin: int, dims: int) -> None:
        super().__init__()
        for level in LEVELS:
            layers: list[nn.Module] = []
            for k in range(max(1, level - 2)):
                layers.append(ConvReLU(cin if k == 0 else dims, dims, 3, padding=1))
                if level != 2:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(f"p{level}", nn.Sequential(*layers))
        self.predictor = nn.Conv2d(dims, dims, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.p2(features[0])
        for level, feature in zip(LEVELS[1:], features[1:]):
            x = x + getattr(self, f"p{level}")(feature)
        return self.predictor(x)


class DensePoseHead(nn.Module):
    """DensePoseV1ConvXHead: `body_conv_fcn1..8`, 3x3 convs + ReLU."""

    def __init__(self, cin: int, dim: int, count: int) -> None:
        super().__init__()
        self.count = count
        for i in range(count):
            self.add_module(f"body_conv_fcn{i + 1}", nn.Conv2d(cin if i == 0 else dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.count):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class ChartPredictor(nn.Module):
    """DensePoseChartPredictor: four transposed convs (kernel 4, stride 2, padding 1), each then x2 bilinear."""

    def __init__(self, cin: int, coarse: int, parts: int = PARTS) -> None:
        super().__init__()
        self.ann_index_lowres = nn.ConvTranspose2d(cin, coarse, 4, stride=2, padding=1)
        self.index_uv_lowres = nn.ConvTranspose2d(cin, parts + 1, 4, stride=2, padding=1)
        self.u_lowres = nn.ConvTranspose2d(cin, parts + 1, 4, stride=2, padding=1)
        self.v_lowres = nn.ConvTranspose2d(cin, parts + 1, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The segmentations only (the label maps need no U, V: half the work and memory)."""
        return {"coarse_segm": _up(self.ann_index_lowres(x)), "fine_segm": _up(self.index_uv_lowres(x))}

    def charts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All four outputs, U and V included (as the original predictor returns them)."""
        return {**self(x), "u": _up(self.u_lowres(x)), "v": _up(self.v_lowres(x))}


def _up(t: torch.Tensor) -> torch.Tensor:
    """The predictor's x2 bilinear upsampling (UP_SCALE 2, align_corners False)."""
    return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)


def level_of(boxes: torch.Tensor) -> torch.Tensor:
    """assign_boxes_to_levels: floor(4 + log2(sqrt(area) / 224 + 1e-8)) clamped to p2..p5, as an index 0..3."""
    sizes = torch.sqrt(ops.box_area(boxes))
    levels = torch.floor(CANONICAL_LEVEL + torch.log2(sizes / CANONICAL_SIZE + 1e-8))
    return levels.clamp(min=LEVELS[0], max=LEVELS[-1]).long() - LEVELS[0]


def multilevel_roi_align(features: list[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
    """ROIPooler over p2..p5 for the boxes of one image (batch index 0)."""
    rois = torch.cat([boxes.new_zeros((len(boxes), 1)), boxes], dim=1)
    levels = level_of(boxes)
    out = features[0].new_zeros((len(boxes), features[0].shape[1], BOX_POOL, BOX_POOL))
    for index, feature in enumerate(features):
        chosen = torch.nonzero(levels == index).flatten()
        if len(chosen):
            out[chosen] = ops.roi_align(feature, rois[chosen], BOX_POOL, 1.0 / 2 ** LEVELS[index], BOX_SAMPLING)
    return out


class DensePoseROIHeads(nn.Module):
    """`roi_heads`: proposals -> detections (boxes, scores) -> DensePose chart outputs (112 x 112 per box)."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.box_head = BoxHead(config.channels * BOX_POOL * BOX_POOL, config.fc)
        self.box_predictor = BoxPredictor(config.fc, config.classes)
        self.decoder = Decoder(config.channels, config.decoder)
        self.densepose_head = DensePoseHead(config.decoder, config.dp_dim, config.dp_convs)
        self.densepose_predictor = ChartPredictor(config.dp_dim, config.coarse)

    def detect(self, features: list[torch.Tensor], proposals: torch.Tensor, image_size: tuple[int, int],
               score_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """fast_rcnn_inference_single_image for one image's proposals: (boxes (D, 4), scores (D,))."""
        pooled = multilevel_roi_align(features[:len(LEVELS)], proposals)
        logits, deltas = self.box_predictor(self.box_head(pooled))
        scores = F.softmax(logits.float(), dim=-1)
        classes = deltas.shape[1] // 4
        boxes = ops.apply_deltas(deltas.reshape(-1, 4), proposals.repeat_interleave(classes, dim=0), BOX_WEIGHTS)
        boxes = boxes.view(len(proposals), classes * 4)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
        boxes, scores = boxes[valid], scores[valid]
        boxes = ops.clip_boxes(boxes.view(-1, 4), *image_size).view(-1, classes, 4)
        scores = scores[:, :-1]
        chosen = torch.nonzero(scores > score_threshold)
        boxes = boxes[chosen[:, 0], chosen[:, 1] if classes > 1 else 0]
        scores = scores[chosen[:, 0], chosen[:, 1]]
        keep = ops.batched_nms(boxes, scores, chosen[:, 1], NMS_THRESHOLD)[:DETECTIONS_PER_IMAGE]
        return boxes[keep], scores[keep]

    def densepose(self, features: list[torch.Tensor], boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """Chart outputs for detections (boxes in the network's input pixels)."""
        merged = self.decoder(features[:len(LEVELS)])
        rois = torch.cat([boxes.new_zeros((len(boxes), 1)), boxes], dim=1)
        pooled = ops.roi_align(merged, rois, DP_POOL, DP_SCALE, DP_SAMPLING)
        return self.densepose_predictor(self.densepose_head(pooled))
