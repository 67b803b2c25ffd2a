"""The detection operators DensePose R-CNN needs, in plain torch (torchvision's compiled ops do not load with the CPU
torch wheel, and its Python fallback for roi_align differs from its kernel).

Semantics follow torchvision's C++ CPU kernels, which detectron2 calls:
- `roi_align` with aligned=False (detectron2's "ROIAlign" pooler): box corners scaled by the feature's scale, box
  sides at least 1, `sampling_ratio` x `sampling_ratio` bilinear samples per bin averaged; a sample more than one
  pixel outside the feature map contributes 0, one within that pixel is clamped to the edge.
- `nms`: boxes visited by descending score (a stable sort: on equal scores the lower index first), a box suppressed
  when its IoU with a kept one is strictly above the threshold; areas (x2 - x1) * (y2 - y1).
- `apply_deltas`: detectron2's Box2BoxTransform decoding.
"""
from __future__ import annotations

import math

import torch

# log(1000 / 16): Box2BoxTransform's default scale_clamp, detectron2/modeling/box_regression.py@02b5c4e295e9
SCALE_CLAMP = math.log(1000.0 / 16)
GATHER_BUDGET = 2**24  # gathered values per chunk of boxes (64 MB in fp32): boxes x samples x 4 corners x channels


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float,
              sampling_ratio: int) -> torch.Tensor:
    """features (N, C, H, W), rois (K, 5) as (batch index, x1, y1, x2, y2) in image pixels -> (K, C, S, S)."""
    if sampling_ratio <= 0:
        raise ValueError("adaptive sampling (sampling_ratio <= 0) is not used by DensePose R-CNN")
    n, c, h, w = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(n * h * w, c)
    chunk = max(1, GATHER_BUDGET // ((output_size * sampling_ratio) ** 2 * 4 * c))
    outputs = [_roi_align_chunk(flat, rois[i:i + chunk], (h, w), output_size, spatial_scale, sampling_ratio)
               for i in range(0, len(rois), chunk)]
    if not outputs:
        return features.new_zeros((0, c, output_size, output_size))
    return torch.cat(outputs)


def _roi_align_chunk(flat: torch.Tensor, rois: torch.Tensor, size: tuple[int, int], pooled: int, scale: float,
                     grid: int) -> torch.Tensor:
    h, w = size
    rois = rois.float()  # coordinates in float32 even for half-precision features
    batch = rois[:, 0].long()
    x1, y1 = rois[:, 1] * scale, rois[:, 2] * scale
    roi_w = (rois[:, 3] * scale - x1).clamp(min=1.0)
    roi_h = (rois[:, 4] * scale - y1).clamp(min=1.0)
    # sample positions along one axis: start + bin * bin_size + (i + 0.5) * bin_size / grid
    steps = torch.arange(pooled * grid, device=flat.device, dtype=torch.float32)
    bins, within = steps // grid, steps % grid
    ys = y1[:, None] + bins * (roi_h / pooled)[:, None] + (within + 0.5) * (roi_h / pooled / grid)[:, None]
    xs = x1[:, None] + bins * (roi_w / pooled)[:, None] + (within + 0.5) * (roi_w / pooled / grid)[:, None]
    y_low, y_high, ly, y_out = _axis(ys, h)
    x_low, x_high, lx, x_out = _axis(xs, w)
    inside = ~(y_out[:, :, None] | x_out[:, None, :])  # (K, P, P)
    hy, hx = 1 - ly, 1 - lx
    base = (batch * h * w)[:, None, None]
    corners = torch.stack([base + y_low[:, :, None] * w + x_low[:, None, :],
                           base + y_low[:, :, None] * w + x_high[:, None, :],
                           base + y_high[:, :, None] * w + x_low[:, None, :],
                           base + y_high[:, :, None] * w + x_high[:, None, :]], dim=-1)  # (K, P, P, 4)
    weights = torch.stack([hy[:, :, None] * hx[:, None, :], hy[:, :, None] * lx[:, None, :],
                           ly[:, :, None] * hx[:, None, :], ly[:, :, None] * lx[:, None, :]], dim=-1)
    weights = weights * inside[..., None]
    values = flat[corners]  # (K, P, P, 4, C)
    samples = (values * weights[..., None].to(values.dtype)).sum(dim=3)  # (K, P, P, C)
    k, c = len(rois), flat.shape[1]
    samples = samples.view(k, pooled, grid, pooled, grid, c).sum(dim=(2, 4)) / (grid * grid)
    return samples.permute(0, 3, 1, 2).contiguous()


def _axis(coords: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One axis of the kernel's bilinear_interpolate: (low index, high index, fraction towards high, outside)."""
    outside = (coords < -1.0) | (coords > length)
    coords = coords.clamp(min=0)
    low = coords.floor().long()
    at_end = low >= length - 1
    low = low.clamp(max=length - 1)
    high = torch.where(at_end, low, low + 1)
    coords = torch.where(at_end, low.to(coords.dtype), coords)
    return low, high, coords - low, outside


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the kept boxes, by descending score."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order]
    areas = box_area(boxes)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    sides = (bottom_right - top_left).clamp(min=0)
    inter = sides[..., 0] * sides[..., 1]
    overlapping = (inter / (areas[:, None] + areas[None, :] - inter) > threshold).cpu()
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    kept = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= overlapping[i]
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """NMS within each group (FPN level, class) separately; kept indices by descending score (stable)."""
    kept = [torch.nonzero(groups == g).flatten() for g in torch.unique(groups)]
    kept = [members[nms(boxes[members], scores[members], threshold)] for members in kept]
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    kept = torch.cat(kept).sort().values
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, float, float, float]) -> torch.Tensor:
    """Box2BoxTransform.apply_deltas: (R, 4) deltas (dx, dy, dw, dh) applied to (R, 4) boxes -> (R, 4) boxes."""
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = (deltas[:, 2] / ww).clamp(max=SCALE_CLAMP), (deltas[:, 3] / wh).clamp(max=SCALE_CLAMP)
    pred_ctr_x, pred_ctr_y = dx * widths + ctr_x, dy * heights + ctr_y
    pred_w, pred_h = torch.exp(dw) * widths, torch.exp(dh) * heights
    return torch.stack((pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h,
                        pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h), dim=-1)


def clip_boxes(boxes: torch.Tensor, height: float, width: float) -> torch.Tensor:
    """Boxes.clip: x into [0, width], y into [0, height]."""
    return torch.stack((boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                        boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Boxes.nonempty: both sides strictly larger than the threshold."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)
