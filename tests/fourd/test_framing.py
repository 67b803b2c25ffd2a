"""Framing as the original's preprocess_video: union box, square about the centre (with its row/column mix-up and
its empty-frame box at the origin), box/0.9 canvas, LANCZOS, white composite truncated to uint8."""
from __future__ import annotations

import numpy as np
from PIL import Image

from engine.pipelines.fourd.framing import Square, bounding_box, frame_object, frame_square, union_square


def mask_with(box: tuple[int, int, int, int], shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    """True inside rows y0:y1, columns x0:x1 (box = x0, y0, x1, y1)."""
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def test_bounding_box_is_opencvs() -> None:
    assert bounding_box(mask_with((10, 20, 30, 50))) == (10, 20, 30, 50)
    assert bounding_box(np.zeros((5, 5), bool)) == (0, 0, 0, 0)


def test_the_square_holds_every_frames_box_about_the_centre() -> None:
    square = union_square([mask_with((40, 45, 55, 60)), mask_with((45, 30, 70, 50))])  # union x 40..70, y 30..60
    assert square == Square(top=30, left=30, height=40, width=40, side=40)  # half = max(50-40, 50-30, 70-50, 60-50)


def test_rows_and_columns_are_mixed_as_in_the_original() -> None:
    # 60 rows x 100 columns, centre (row 30, column 50); object columns 70..90, rows 20..40.
    square = union_square([mask_with((70, 20, 90, 40), (60, 100))])
    # half = max(30 - 70, 50 - 20, 90 - 30, 40 - 50) = 60: the column extent is measured from the centre ROW.
    assert square == Square(top=0, left=0, height=60, width=100, side=120)


def test_an_empty_frame_widens_the_square_to_the_origin() -> None:
    object_only = union_square([mask_with((40, 40, 60, 60))])
    with_empty = union_square([mask_with((40, 40, 60, 60)), np.zeros((100, 100), bool)])
    assert object_only.side == 20 and with_empty == Square(top=0, left=0, height=100, width=100, side=100)


def test_a_frame_is_centred_in_a_canvas_of_side_over_0_9_and_composited_on_white() -> None:
    frame = np.zeros((100, 100, 4), np.uint8)
    frame[30:70, 30:70] = (200, 100, 50, 255)
    square = union_square([frame[..., 3] > 0])
    assert square.side == 40
    out = frame_square(frame, square, 44)  # canvas int(40 / 0.9) = 44: no resampling at this size
    expected = np.full((44, 44, 3), 255, np.uint8)
    expected[2:42, 2:42] = (200, 100, 50)  # canvas centre 22, box 40 -> rows and columns 2:42
    assert np.array_equal(out, expected)


def test_resizing_is_pillows_lanczos_on_rgba_and_the_composite_truncates() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (50, 50, 4)).astype(np.uint8)
    square = Square(top=0, left=0, height=50, width=50, side=50)
    canvas = np.zeros((55, 55, 4), np.uint8)  # int(50 / 0.9) = 55, centre 27: rows/columns 2:52
    canvas[2:52, 2:52] = frame
    rgba = np.asarray(Image.fromarray(canvas).resize((32, 32), Image.LANCZOS)) / 255.0
    expected = ((rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])) * 255).astype(np.uint8)  # the original's order
    assert np.array_equal(frame_square(frame, square, 32), expected)


def test_rgb_frames_use_the_white_threshold_and_keep_their_background() -> None:
    frame = np.full((100, 100, 3), 255, np.uint8)
    frame[30:70, 30:70] = 0
    frame[0:3, 0:100] = 251  # just above the threshold: background, so outside the square
    out = frame_object([frame, frame], 64)
    assert out.shape == (2, 64, 64, 3) and out[0].min() == 0
    corners = out[0][[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()
