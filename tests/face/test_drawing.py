"""The landmark pose image: the original's 15 coloured polylines at 320x320, thickness 2, float64, int() points."""
from __future__ import annotations

import numpy as np
import pytest

from engine.pipelines.face.drawing import PARTS, draw_over, draw_pose_image

OFF_CANVAS = -100.0
# Colours and 1-based point chains as MOFA-Video-Keypoint/utils/utils.py@3ad3b546da4c lists them, written out again
# here (not imported) so a change to the module's table fails this test.
ORIGINAL = [
    ((10, 200, 10), list(range(1, 18))), ((180, 200, 10), [43, 44, 45, 46, 47, 48, 43]),
    ((180, 220, 10), [23, 24, 25, 26, 27]), ((10, 200, 180), [37, 38, 39, 40, 41, 42, 37]),
    ((10, 220, 180), [18, 19, 20, 21, 22]), ((10, 200, 250), [28, 29, 30, 31]),
    ((250, 200, 10), [32, 33, 34, 35, 36]), ((10, 180, 20), [55, 56, 57, 58]),
    ((20, 10, 180), [49, 60, 59, 58]), ((100, 100, 30), [65, 66, 67]), ((100, 150, 50), [61, 68, 67]),
    ((20, 80, 100), [52, 53, 54, 55]), ((80, 100, 20), [52, 51, 50, 49]), ((120, 100, 200), [63, 64, 65]),
    ((150, 120, 100), [63, 62, 61]),
]


def test_parts_are_the_originals_in_drawing_order() -> None:
    assert [(colour, list(indices)) for _, indices, colour in PARTS] == ORIGINAL


def test_all_points_at_one_spot_leave_the_last_parts_round_dot() -> None:
    image = draw_pose_image(np.full((68, 2), 160.0))
    assert image.shape == (320, 320, 3) and image.dtype == np.float64
    # A zero-length cv2.line of thickness 2 is a 5-pixel plus; the last part drawn (inner top right lip) wins.
    expected = np.zeros((320, 320, 3))
    for y, x in [(159, 160), (160, 159), (160, 160), (160, 161), (161, 160)]:
        expected[y, x] = (150, 120, 100)
    np.testing.assert_array_equal(image, expected)


def test_coordinates_are_truncated_like_int() -> None:
    points = np.random.default_rng(0).uniform(20, 300, size=(68, 2))
    np.testing.assert_array_equal(draw_pose_image(points), draw_pose_image(np.trunc(points)))
    assert not np.array_equal(draw_pose_image(points), draw_pose_image(np.round(points)))


@pytest.mark.parametrize("part", range(len(ORIGINAL)))
def test_each_part_is_a_polyline_of_its_colour(part: int) -> None:
    colour, chain = ORIGINAL[part]
    points = np.full((68, 2), OFF_CANVAS)
    row = 200
    for j, index in enumerate(dict.fromkeys(chain)):  # a closed eye repeats its first point: one position each
        points[index - 1] = (20 + 16 * j, row)
    image = draw_pose_image(points)
    distinct = list(dict.fromkeys(chain))
    for a, b in zip(chain[:-1], chain[1:]):
        if {a, b} == {distinct[0], distinct[-1]} and len(distinct) > 2:
            continue  # an eye's closing segment runs back along the row over the others
        x = (points[a - 1, 0] + points[b - 1, 0]) / 2
        assert tuple(image[row, int(x)]) == colour
        for off in (-1, 1):  # thickness 2: three rows
            assert tuple(image[row + off, int(x)]) == colour
        for off in (-3, 3):
            assert tuple(image[row + off, int(x)]) == (0, 0, 0)


def test_points_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="68"):
        draw_pose_image(np.zeros((478, 2)))


def test_preview_overlay_keeps_the_picture_and_draws_in_the_part_colours() -> None:
    picture = np.full((100, 120, 3), 7, np.uint8)
    points = np.full((68, 2), np.nan)
    points[:17] = np.stack([np.linspace(10, 110, 17), np.full(17, 50)], axis=1)  # the jaw only
    drawn = draw_over(picture, points)
    assert drawn.shape == picture.shape and drawn.dtype == np.uint8
    assert tuple(drawn[50, 60]) == (10, 200, 10)
    assert tuple(drawn[10, 60]) == (7, 7, 7)
    assert (picture == 7).all()  # the input is not drawn on
