"""SV3D's input image: read within the engine's limits, the object cut out, and framed, as the sv3d branch of
sample() in scripts/sampling/simple_video_sample.py@0ad7de9a5cb5 prepares it:

- a picture with transparency is used as it is; otherwise it is shrunk to fit 768 x 768 (PIL thumbnail, LANCZOS) and
  rembg (alpha matting) cuts the object out;
- the object's box (alpha > 0, cv2.boundingRect) is pasted centred into a transparent square whose side is the
  picture's height (image_frame_ratio None: `in_w` there is shape[0], the rows), resized (LANCZOS) to 576 and
  composited on white (float64, truncated to uint8).
Differences, both where the original fails: an object wider than the picture is tall widens the square to hold it
(the original raises a numpy broadcast error), and a picture without any object is refused (the original would give
the model a white square). A painted mask (white = object) may replace background removal.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from engine import media
from engine.pipelines.fourd.background import check_object_left
from engine.pipelines.fourd.framing import bounding_box, on_white

THUMBNAIL = 768  # image.thumbnail([768, 768]) before rembg


def read_object_image(path: str | Path, mask: str | Path | None) -> np.ndarray:
    """HxWx3 RGB or HxWx4 RGBA uint8 (the mask, when given, becomes the alpha)."""
    image = media.read_image(path, what="Image")
    if mask is None:
        return image
    painted = media.read_mask(mask, image.shape[:2], "Mask", "the image",
                              "Paint the object white on a black picture of the image's size.")
    return np.dstack([image[..., :3], painted])


def cut_out(image: np.ndarray, remove_bg: bool, remover: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """RGBA with the object's transparency: as given (it has alpha), from rembg on the thumbnail, or opaque."""
    if image.shape[-1] == 4:
        return image
    if not remove_bg:
        return np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    if remover is None:
        raise ValueError("background removal needs the U2-Net model")
    thumbnail = Image.fromarray(image)
    thumbnail.thumbnail([THUMBNAIL, THUMBNAIL], Image.Resampling.LANCZOS)
    return remover(np.asarray(thumbnail))


def frame_image(rgba: np.ndarray, size: int, removed: bool) -> np.ndarray:
    """The object centred in a square of the picture's height, at size x size on white: uint8 [size, size, 3]."""
    check_object_left([rgba], removed)
    x0, y0, x1, y1 = bounding_box(rgba[..., 3] > 0)
    w, h = x1 - x0, y1 - y0
    side = max(rgba.shape[0], w, h)
    canvas = np.zeros((side, side, 4), np.uint8)
    centre = side // 2
    canvas[centre - h // 2:centre - h // 2 + h, centre - w // 2:centre - w // 2 + w] = rgba[y0:y1, x0:x1]
    return on_white(canvas, size)
