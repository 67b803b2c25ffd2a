import numpy as np
import pytest
import torch

from engine.errors import InputError
from engine.models.mofa import flows


def test_sparse_hints_hold_truncated_displacements_at_the_start_pixel():
    # 128x128 image -> 384 square: x,y * 3 truncated; a straight drag right by 40 px (120 in the square)
    tracks = flows.tracks_in_square([np.array([[10.4, 20.9], [50.0, 20.0]])], 128, 128, 384, 25)
    assert tuple(tracks[0, 0]) == (31.0, 62.0)  # int(31.2), int(62.7)
    flow, mask = flows.sparse_hints(tracks, 384)
    assert flow.shape == (24, 384, 384, 2) and mask.shape == (24, 384, 384)
    expected_dx = [int(119.0 * (i + 1) / 24) for i in range(24)]  # 150 - 31 = 119 px over 24 steps, truncated
    assert flow[:, 62, 31, 0].tolist() == expected_dx
    assert np.all(flow[:, 62, 31, 1] == -np.trunc(2 * np.arange(1, 25) / 24))  # 62 -> 60, toward zero
    assert mask[:, 62, 31].tolist() == [1.0] * 24
    assert mask.sum() == 24 and np.count_nonzero(flow) == np.count_nonzero(flow[:, 62, 31])


def test_negative_displacements_truncate_toward_zero_and_shared_starts_add():
    tracks = np.array([[[10.0, 10.0], [7.5, 10.0], [4.0, 10.0]],
                       [[10.0, 10.0], [10.0, 12.7], [10.0, 15.0]]])
    flow, mask = flows.sparse_hints(tracks, 32)
    assert flow[:, 10, 10].tolist() == [[-2.0, 2.0], [-6.0, 5.0]]
    assert mask[:, 10, 10].tolist() == [2.0, 2.0]


def test_pchip_resampling_keeps_endpoints_and_is_monotone():
    points = flows.resample_track(np.array([[0.0, 0.0], [10.0, 5.0], [12.0, 30.0]]), 25)
    assert points.shape == (25, 2)
    assert np.allclose(points[0], [0, 0]) and np.allclose(points[-1], [12, 30]) and np.allclose(points[12], [10, 5])
    assert np.all(np.diff(points[:, 0]) >= 0) and np.all(np.diff(points[:, 1]) >= 0)


def test_brush_is_resized_bilinearly_and_splits_on_exact_255():
    brush = np.zeros((8, 8), np.uint8)
    brush[:, :4] = 1  # left half painted (any non-zero value counts)
    square = flows.brush_in_square(brush, 16)
    assert square.dtype == np.float64
    assert square[0, 0] == 255 and square[0, 15] == 0
    assert 0 < square[0, 7] < 255 or 0 < square[0, 8] < 255  # soft bilinear edge, not nearest
    edge_col = int(np.argmax(square[0] < 255))
    tracks = np.array([[[0, 0], [3, 3]], [[edge_col, 5], [1, 1]], [[15, 5], [9, 9]]], dtype=np.float64)
    inside, outside = flows.split_by_brush(tracks, square)
    assert inside.shape[0] == 1 and inside[0, 0].tolist() == [0, 0]
    assert outside.shape[0] == 2  # the soft edge pixel is < 255, so that track counts as outside


def test_merge_prefers_in_brush_flow_only_where_both_components_are_non_zero():
    flow_in = torch.tensor([[[[1.0, 0.0, 2.0]], [[1.0, 3.0, 0.5]]]])  # [1,2,1,3]
    flow_out = torch.full_like(flow_in, 9.0)
    merged = flows.merge_brush_flows(flow_in, flow_out)
    assert merged[0, :, 0].T.tolist() == [[1.0, 1.0], [9.0, 9.0], [2.0, 0.5]]


def test_upscale_flow_is_nearest_and_scaled_per_axis():
    flow = torch.zeros(1, 2, 4, 4)
    flow[0, 0, 1, 2] = 2.0
    flow[0, 1, 1, 2] = 1.0
    big = flows.upscale_flow(flow, 8, 16)  # H=8, W=16: x *4, y *2
    assert big.shape == (1, 2, 8, 16)
    assert big[0, 0, 2:4, 8:12].eq(8.0).all() and big[0, 1, 2:4, 8:12].eq(2.0).all()
    assert big.count_nonzero() == 16


def test_prepare_image_resizes_short_side_and_centre_crops_to_64():
    image = np.zeros((700, 1000, 3), np.uint8)
    out, (scale, left, top) = flows.prepare_image(image)
    assert out.shape == (512, 704, 3)
    assert abs(scale - 512 / 700) < 1e-9 and top == 0 and left == 14  # torchvision: int(round(27 / 2))


def test_flow_visualisation_colours_direction_and_whites_zero():
    flow = np.zeros((2, 2, 2), np.float32)
    flow[0, 0] = [5, 0]
    flow[1, 1] = [-5, 0]
    rgb = flows.flow_to_rgb(flow)
    assert rgb.dtype == np.uint8 and rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 0].tolist() != rgb[1, 1].tolist()


@pytest.mark.parametrize("tracks, message", [
    ([], "No trajectory"),
    ([[[5, 5]]], "single point"),
    ([[[5, 5], [70, 5]]], "outside"),
    ([[5, 5, 5]], "list of"),
])
def test_bad_trajectories_raise_input_errors(tracks, message):
    with pytest.raises(InputError, match=message):
        flows.validate_trajectories(tracks, 64, 64)
