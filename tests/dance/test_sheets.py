"""Square crops, sheet preparation and paste-back on hand-made geometry."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InputError
from engine.pipelines.dance.sheets import crop_square, fit_frame, paste_back, prepare_sheets, square_box


def _alpha(h: int, w: int, top: int, left: int, box_h: int, box_w: int) -> np.ndarray:
    alpha = np.zeros((h, w), np.uint8)
    alpha[top:top + box_h, left:left + box_w] = 255
    return alpha


def test_square_box_centres_the_longer_side():
    box = square_box(_alpha(40, 60, top=5, left=20, box_h=10, box_w=4))
    assert box.side == 10
    assert (box.top, box.bottom, box.left, box.right) == (5, 15, 17, 27)  # 20 - (10 - 4) / 2
    assert (box.pad_top, box.pad_bottom, box.pad_left, box.pad_right) == (0, 0, 0, 0)


def test_square_box_rounds_half_to_even_like_the_original():
    box = square_box(_alpha(40, 60, top=5, left=20, box_h=10, box_w=5))  # 20 - 2.5 -> round() gives 18
    assert box.left == 18 and box.right == 28


def test_square_box_pads_past_the_edges():
    box = square_box(_alpha(30, 20, top=0, left=0, box_h=30, box_w=6))
    assert box.side == 30 and (box.left, box.pad_left) == (0, 12)
    assert box.right == 18 and box.pad_right == 0
    assert box.top == 0 and box.bottom == 30


def test_square_box_guards_near_empty_alpha():
    assert square_box(np.zeros((50, 50), np.uint8)) is None
    assert square_box(_alpha(100, 100, 3, 3, 1, 1)) is None  # one visible pixel


def test_crop_square_pads_with_zeros_and_resizes():
    image = np.full((30, 20, 4), 200, np.uint8)
    box = square_box(_alpha(30, 20, top=0, left=0, box_h=30, box_w=6))
    square = crop_square(image, box, 30)
    assert square.shape == (30, 30, 4)
    assert (square[:, :12] == 0).all() and (square[:, 12:] == 200).all()
    assert crop_square(image, box, 60).shape == (60, 60, 4)


def test_crop_square_nearest_keeps_values():
    values = np.random.default_rng(0).random((16, 16, 4)).astype(np.float32)
    box = square_box(np.full((16, 16), 255, np.uint8))
    out = crop_square(values, box, 64, nearest=True)
    assert set(np.unique(out)) <= set(np.unique(values))


def _sheet() -> np.ndarray:
    sheet = np.zeros((20, 20, 4), np.uint8)
    sheet[4:16, 6:14] = (200, 100, 50, 128)
    return sheet


def test_prepare_sheets_premultiplies_and_crops():
    rgb, mask = prepare_sheets([_sheet(), _sheet()], 12)
    assert rgb.shape == (2, 3, 12, 12) and mask.shape == (2, 1, 12, 12)
    # the 12x8 box becomes a 12x12 square with 2 empty columns each side
    assert (mask[0, 0, :, :2] == 0).all() and np.allclose(mask[0, 0, :, 2:10], 128 / 255)
    assert np.allclose(rgb[0, :, 0, 5], np.array([100, 50, 25]) / 255)  # int(200 * 128 / 255) = 100


@pytest.mark.parametrize("sheets, match", [
    ([], "at least one"),
    ([np.full((20, 20, 4), 255, np.uint8)], "transparent background"),
    ([np.full((20, 40, 3), 90, np.uint8)], "transparent background"),  # opaque even after square padding
    ([np.zeros((20, 20, 4), np.uint8)], "almost fully transparent"),
    ([np.zeros((20, 20, 4), np.float32)], "8-bit"),
])
def test_prepare_sheets_refuses_bad_sheets(sheets, match):
    with pytest.raises(InputError, match=match):
        prepare_sheets(sheets, 16)


def test_paste_back_puts_the_square_where_the_crop_came_from():
    alpha = _alpha(30, 20, top=0, left=0, box_h=30, box_w=6)
    box = square_box(alpha)
    square = np.zeros((30, 30, 4), np.float32)
    square[:, 12:18] = 1.0  # what the crop holds where the character is
    frame = paste_back(square, box, (30, 20))
    assert frame.shape == (30, 20, 4)
    assert (frame[:, :6] == 1).all() and (frame[:, 6:] == 0).all()


def test_paste_back_resizes_and_round_trips():
    image = np.zeros((60, 80, 4), np.float32)
    image[10:50, 30:50] = 0.5
    box = square_box((image[..., 3] * 255).astype(np.uint8))
    square = crop_square(image, box, 20)  # down by 2
    frame = paste_back(square, box, (60, 80))
    assert frame.shape == (60, 80, 4)
    assert np.allclose(frame[12:48, 32:48], 0.5) and (frame[:, :20] == 0).all()


def test_paste_back_without_box_is_transparent():
    assert not paste_back(np.ones((8, 8, 4), np.float32), None, (5, 7)).any()


def test_fit_frame_keeps_aspect_and_centres():
    frame = np.ones((50, 100, 4), np.float32)
    out = fit_frame(frame, 64, 64)
    assert out.shape == (64, 64, 4)
    assert (out[:16] == 0).all() and (out[48:] == 0).all() and np.allclose(out[16:48], 1)
    with pytest.raises(InputError, match="width"):
        fit_frame(frame, 0, 64)
