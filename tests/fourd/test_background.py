"""Background removal through rembg's U2-Net session on a model file from the checkpoint cache, the original's mask
rule, and 'no object left' as an InputError."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.pipelines.fourd.background import BackgroundRemover, check_object_left, object_mask
from tests.fourd.conftest import object_frames


def test_the_mask_rule_is_alpha_or_not_white() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 1, 3] = 1
    assert object_mask(rgba).tolist() == [[False, True, False], [False, False, False]]
    rgb = np.array([[[250, 250, 250], [251, 251, 250], [255, 255, 244]]], np.uint8)  # means 250, 250.67, 251.33
    assert object_mask(rgb).tolist() == [[True, False, False]]


def test_removal_is_rembgs_remove_with_alpha_matting_on_the_given_model(tiny_u2net: Path) -> None:
    from rembg import remove

    remover = BackgroundRemover(tiny_u2net)
    frame = object_frames(1, background=20)[0]  # the tiny model takes bright pixels as the object
    cut = remover(frame)
    expected = np.asarray(remove(Image.fromarray(frame).convert("RGBA"), session=remover.session, alpha_matting=True))
    assert cut.shape == (72, 96, 4) and np.array_equal(cut, expected)
    assert cut[46, 32, 3] > 128 and cut[2, 2, 3] < 50  # the ellipse stays, the dark corner goes


def test_frames_with_transparency_are_kept_as_they_are(tiny_u2net: Path) -> None:
    frame = np.dstack([object_frames(1)[0], np.full((72, 96), 7, np.uint8)])
    assert BackgroundRemover(tiny_u2net)(frame) is frame


def test_no_object_left_is_an_input_error() -> None:
    empty = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(InputError, match="Background removal left no object"):
        check_object_left([empty, empty], removed=True)
    with pytest.raises(InputError, match="every frame is white"):
        check_object_left([np.full((8, 8, 3), 255, np.uint8)], removed=False)
    check_object_left([empty, np.dstack([empty[..., :3], np.eye(8, dtype=np.uint8)])], removed=True)
