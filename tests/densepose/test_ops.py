"""roi_align, NMS and box decoding against hand-computed cases (the semantics of torchvision's C++ kernels, which
detectron2 calls)."""
from __future__ import annotations

import math

import torch

from engine.pipelines.densepose import ops
from tests.tolerance import assert_relative_close


def ramp(height: int = 4, width: int = 5) -> torch.Tensor:
    """value = 10 * y + x, one channel."""
    return (10 * torch.arange(height)[:, None] + torch.arange(width)[None, :]).float()[None, None]


def test_roi_align_samples_bilinearly_at_bin_centres() -> None:
    # box (1, 1)-(3, 3), 2x2 bins of 1 pixel, one sample each at the bin centre: (1.5, 1.5), (2.5, 1.5)...
    out = ops.roi_align(ramp(), torch.tensor([[0.0, 1, 1, 3, 3]]), 2, 1.0, 1)
    expected = torch.tensor([[16.5, 17.5], [26.5, 27.5]])  # 10 * y + x at the centres
    assert_relative_close(out[0, 0], expected)


def test_roi_align_averages_the_sampling_grid_and_scales_boxes() -> None:
    # feature stride 2: the box (2, 2)-(6, 6) covers feature pixels 1..3; one bin, 2x2 samples at 1.5 and 2.5
    out = ops.roi_align(ramp(), torch.tensor([[0.0, 2, 2, 6, 6]]), 1, 0.5, 2)
    assert_relative_close(out[0, 0, 0, 0], torch.tensor(22.0))  # mean of 16.5, 17.5, 26.5, 27.5


def test_roi_align_boxes_are_at_least_one_pixel_and_not_half_pixel_aligned() -> None:
    # a zero-size box at (2, 1) becomes 1 x 1 (aligned=False): one sample at (2.5, 1.5)
    out = ops.roi_align(ramp(), torch.tensor([[0.0, 2, 1, 2, 1]]), 1, 1.0, 1)
    assert_relative_close(out[0, 0, 0, 0], torch.tensor(17.5))


def test_roi_align_samples_outside_the_map_count_as_zero_and_near_ones_clamp() -> None:
    features = torch.ones(1, 1, 4, 4)
    # one bin, 2x2 samples at x, y in {-2, 0}: the three with a coordinate below -1 add 0; the kernel divides by
    # all four samples
    out = ops.roi_align(features, torch.tensor([[0.0, -3, -3, 1, 1]]), 1, 1.0, 2)
    assert_relative_close(out[0, 0, 0, 0], torch.tensor(0.25))
    # samples within a pixel past the edge (-1 <= x <= 0, or width - 1 <= x <= width) take the edge value
    out = ops.roi_align(ramp(), torch.tensor([[0.0, -0.8, 3.0, 0.2, 4.0]]), 1, 1.0, 1)  # sample (-0.3, 3.5)
    assert_relative_close(out[0, 0, 0, 0], torch.tensor(30.0))  # row 3 (clamped), column 0


def test_roi_align_picks_each_boxs_image() -> None:
    features = torch.cat([ramp(), ramp() + 100])
    out = ops.roi_align(features, torch.tensor([[1.0, 1, 1, 3, 3], [0.0, 1, 1, 3, 3]]), 2, 1.0, 1)
    assert_relative_close(out[0] - out[1], torch.full((1, 2, 2), 100.0))


def test_nms_keeps_the_lower_index_on_equal_scores_and_suppresses_above_the_threshold() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    scores = torch.tensor([0.5, 0.5, 0.9, 0.5])
    # box 2 (IoU 0.5 with 0 and 1) first; 0 and 1 tie: 0 kept, 1 suppressed (IoU 1); 3 does not overlap
    assert ops.nms(boxes, scores, 0.5).tolist() == [2, 0, 3]
    assert ops.nms(boxes, scores, 0.4).tolist() == [2, 3]  # IoU 0.5 > 0.4 suppresses 0 and 1


def test_batched_nms_works_per_group_and_orders_by_score() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]])
    scores = torch.tensor([0.6, 0.7, 0.8])
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [2, 1]
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 1, 2]), 0.5).tolist() == [2, 1, 0]


def test_apply_deltas_decodes_centre_and_size_with_weights_and_clamp() -> None:
    boxes = torch.tensor([[10.0, 20, 30, 60]])  # centre (20, 40), size 20 x 40
    deltas = torch.tensor([[10.0 * 0.5, 10.0 * -0.25, 5.0 * math.log(2), 5.0 * 0.0]])
    out = ops.apply_deltas(deltas, boxes, (10.0, 10.0, 5.0, 5.0))
    # centre (20 + 0.5 * 20, 40 - 0.25 * 40) = (30, 30); size (40, 40)
    assert_relative_close(out, torch.tensor([[10.0, 10, 50, 50]]))
    huge = ops.apply_deltas(torch.tensor([[0.0, 0, 100, 0]]), torch.tensor([[0.0, 0, 1, 1]]), (1.0, 1, 1, 1))
    assert_relative_close(huge[0, 2] - huge[0, 0], torch.tensor(1000.0 / 16))  # dw clamped to log(1000 / 16)


def test_clip_and_nonempty() -> None:
    boxes = ops.clip_boxes(torch.tensor([[-5.0, 2, 50, 8], [3, 3, 3, 9]]), 10, 20)
    assert boxes.tolist() == [[0.0, 2, 20, 8], [3, 3, 3, 9]]
    assert ops.nonempty(boxes).tolist() == [True, False]
