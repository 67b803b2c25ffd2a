"""DensePose R-CNN (`densepose_rcnn_R_50_FPN_s1x`) at test time, as detectron2's DefaultPredictor runs it: resize
(shortest edge 800, longest at most 1333, Pillow bilinear on uint8), BGR minus the pixel mean, zero padding to a
multiple of 32, backbone, RPN, box head, then the DensePose branch on the kept detections; boxes scaled back to the
frame, clipped, and empty ones dropped (detector_postprocess)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from engine.pipelines.densepose import ops
from engine.pipelines.densepose.backbone import BackboneConfig, FPNBackbone
from engine.pipelines.densepose.roi_heads import DensePoseROIHeads, HeadConfig
from engine.pipelines.densepose.rpn import RPN

# detectron2/config/defaults.py@02b5c4e295e9: PIXEL_MEAN (BGR), PIXEL_STD, INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST,
# backbone SIZE_DIVISIBILITY of FPN (32)
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
PIXEL_STD_BGR = (1.0, 1.0, 1.0)
SHORT_EDGE, MAX_EDGE = 800, 1333
SIZE_DIVISIBILITY = 32
# projects/DensePose/apply_net.py@02b5c4e295e9: --min_score default, set as ROI_HEADS.SCORE_THRESH_TEST
SCORE_THRESHOLD = 0.8


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = BackboneConfig()
    heads: HeadConfig = HeadConfig()


Chooser = Callable[[torch.Tensor], list[int]]
"""Picks people from a frame's detected boxes (D, 4, frame pixels, detection order): the indices to keep."""


def everyone(boxes: torch.Tensor) -> list[int]:
    return list(range(len(boxes)))


@dataclass
class Detections:
    """One frame's chosen people, in detection order (descending score): boxes (D, 4) xyxy in frame pixels,
    scores (D,), and the chart outputs per box (coarse (D, 2, 112, 112), fine (D, 25, 112, 112)). `found`: how many
    people passed the score threshold before choosing."""

    boxes: torch.Tensor
    scores: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    found: int

    def __len__(self) -> int:
        return len(self.boxes)


def network_size(height: int, width: int, short: int = SHORT_EDGE, longest: int = MAX_EDGE) -> tuple[int, int]:
    """ResizeShortestEdge.get_output_shape: (new height, new width)."""
    scale = short * 1.0 / min(height, width)
    new_h, new_w = (short * 1.0, scale * width) if height < width else (scale * height, short * 1.0)
    if max(new_h, new_w) > longest:
        scale = longest * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def longest_for(short: int) -> int:
    """The longest-side cap for a shortest side: 1333 at 800, in proportion otherwise."""
    return MAX_EDGE if short == SHORT_EDGE else round(short * MAX_EDGE / SHORT_EDGE)


def resize_for_network(frame_rgb: np.ndarray, short: int = SHORT_EDGE) -> np.ndarray:
    """HxWx3 uint8 RGB -> the network's input size, BGR uint8 (Pillow bilinear, as detectron2's ResizeTransform)."""
    height, width = frame_rgb.shape[:2]
    new_h, new_w = network_size(height, width, short, longest_for(short))
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(frame_rgb[..., :3])).resize((new_w, new_h),
                                                                                         Image.BILINEAR))
    return np.ascontiguousarray(resized[..., ::-1])


class DensePoseRCNN(nn.Module):
    """`backbone`, `proposal_generator`, `roi_heads` as in detectron2's GeneralizedRCNN state dict."""

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.backbone = FPNBackbone(config.backbone)
        self.proposal_generator = RPN(config.backbone.fpn)
        self.roi_heads = DensePoseROIHeads(config.heads)

    def batch(self, images_bgr: list[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """ImageList.from_tensors: normalised images zero-padded to a common size, a multiple of 32."""
        sizes = [image.shape[:2] for image in images_bgr]
        height = -(-max(h for h, _ in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        width = -(-max(w for _, w in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        device = next(self.parameters()).device
        mean = torch.tensor(PIXEL_MEAN_BGR, device=device).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD_BGR, device=device).view(3, 1, 1)
        batch = torch.zeros((len(images_bgr), 3, height, width), device=device)
        for i, image in enumerate(images_bgr):
            tensor = torch.from_numpy(image).to(device).permute(2, 0, 1).float()
            batch[i, :, :image.shape[0], :image.shape[1]] = (tensor - mean) / std
        return batch, sizes

    @torch.no_grad()
    def forward(self, images_bgr: list[np.ndarray], frame_sizes: list[tuple[int, int]],
                score_threshold: float = SCORE_THRESHOLD, choose: Chooser = everyone) -> list[Detections]:
        """Resized BGR uint8 images (see resize_for_network) and the frames' original (height, width). The DensePose
        branch runs on the people `choose` keeps only (one person: one box instead of up to a hundred)."""
        batch, sizes = self.batch(images_bgr)
        features = self.backbone(batch.to(next(self.parameters()).dtype))
        results = []
        for index, (proposals, _) in enumerate(self.proposal_generator(features, sizes)):
            one = [f[index:index + 1] for f in features]
            boxes, scores = self.roi_heads.detect(one, proposals.float(), sizes[index], score_threshold)
            results.append(self._densepose(one, boxes, scores, sizes[index], frame_sizes[index], choose))
        return results

    def _densepose(self, features: list[torch.Tensor], boxes: torch.Tensor, scores: torch.Tensor,
                   size: tuple[int, int], frame_size: tuple[int, int], choose: Chooser) -> Detections:
        # detector_postprocess: boxes to the frame's pixels, clipped, empty ones dropped
        scale = torch.tensor([frame_size[1] / size[1], frame_size[0] / size[0]] * 2, device=boxes.device)
        frame_boxes = ops.clip_boxes(boxes * scale, *frame_size)
        keep = ops.nonempty(frame_boxes)
        boxes, frame_boxes, scores = boxes[keep], frame_boxes[keep], scores[keep]
        chosen = torch.tensor(sorted(choose(frame_boxes)), dtype=torch.long, device=boxes.device)
        if len(chosen):
            charts = self.roi_heads.densepose(features, boxes[chosen])
            coarse, fine = charts["coarse_segm"].float(), charts["fine_segm"].float()
        else:
            coarse = boxes.new_zeros((0, 2, 112, 112))
            fine = boxes.new_zeros((0, 25, 112, 112))
        return Detections(frame_boxes[chosen], scores[chosen], coarse, fine, len(boxes))


def int_box(box: torch.Tensor) -> tuple[int, int, int, int]:
    """make_int_box of the xywh box: (x, y, w, h) truncated to integers (as detectron2's converters and visualiser)."""
    x1, y1, x2, y2 = box.tolist()
    xywh = torch.tensor([x1, y1, x2 - x1, y2 - y1], dtype=torch.float32)  # float32 like the original's tensors
    x, y, w, h = (int(v) for v in xywh.long().tolist())
    return x, y, w, h


def box_labels(coarse: torch.Tensor, fine: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """resample_fine_and_coarse_segm_tensors_to_bbox: part index (0..24) per pixel of a w x h box: argmax of the
    fine segmentation where the coarse one says foreground (both resized bilinearly to the box)."""
    size = (max(height, 1), max(width, 1))
    foreground = F.interpolate(coarse[None], size, mode="bilinear", align_corners=False).argmax(dim=1) > 0
    parts = F.interpolate(fine[None], size, mode="bilinear", align_corners=False).argmax(dim=1)
    return (parts * foreground.long())[0].to(torch.uint8)


def config_from_state(state: dict[str, torch.Tensor]) -> ModelConfig:
    """The widths and depths a state dict was saved with (the published file: ResNet-50, FPN 256, 8 convs of 512;
    the tests' tiny files: the same layout, narrower)."""
    def count(pattern: str) -> int:
        return len({key.split(".")[pattern.count(".")] for key in state if key.startswith(pattern)})

    blocks = tuple(count(f"backbone.bottom_up.res{stage}.") for stage in range(2, 6))
    backbone = BackboneConfig(stem=state["backbone.bottom_up.stem.conv1.weight"].shape[0],
                              bottleneck=state["backbone.bottom_up.res2.0.conv1.weight"].shape[0],
                              res2_out=state["backbone.bottom_up.res2.0.conv3.weight"].shape[0], blocks=blocks,
                              fpn=state["backbone.fpn_lateral2.weight"].shape[0])
    heads = HeadConfig(channels=backbone.fpn, fc=state["roi_heads.box_head.fc1.weight"].shape[0],
                       classes=state["roi_heads.box_predictor.cls_score.weight"].shape[0] - 1,
                       decoder=state["roi_heads.decoder.p2.0.weight"].shape[0],
                       dp_convs=sum(1 for key in state if key.startswith("roi_heads.densepose_head.body_conv_fcn")
                                    and key.endswith(".weight")),
                       dp_dim=state["roi_heads.densepose_head.body_conv_fcn1.weight"].shape[0],
                       coarse=state["roi_heads.densepose_predictor.ann_index_lowres.weight"].shape[1])
    return ModelConfig(backbone, heads)
