"""Framing the object for SV4D 2.0: one square around the image centre that holds the object in every frame, pasted
into a canvas of box/0.9, resized with LANCZOS to the working size and composited on white.

This follows preprocess_video in scripts/demo/sv4d_helpers.py@0ad7de9a5cb5 step by step, including its arithmetic
(float64 compositing, values truncated to uint8) and its two quirks, which change results and are kept:
- the half-size of the square compares the image centre's row with the box's columns and vice versa (harmless for
  square frames; for others the square is larger than needed);
- a frame with no object counts as a box at the top-left corner (cv2.boundingRect of an empty mask is (0, 0, 0, 0)),
  which widens the square to the whole frame.
The original then wrote the frames to an mp4 and read them back, so its model saw compressed frames; here the exact
frames go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from engine.pipelines.fourd.background import object_mask

# image_frame_ratio 0.9: sample() in scripts/sampling/simple_video_sample_4d2.py@0ad7de9a5cb5
FRAME_RATIO = 0.9


@dataclass(frozen=True)
class Square:
    """The crop: rows top:top+height, columns left:left+width of the frame; `side` = twice the half-size."""

    top: int
    left: int
    height: int
    width: int
    side: int


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the True pixels, as cv2.boundingRect gives it (x = column); (0, 0, 0, 0) when empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def union_square(masks: Sequence[np.ndarray]) -> Square:
    """The square around the frame centre that holds every frame's object box (the original's arithmetic)."""
    x0 = y0 = np.inf
    x1 = y1 = 0
    for mask in masks:
        bx0, by0, bx1, by1 = bounding_box(mask)
        x0, y0, x1, y1 = min(x0, bx0), min(y0, by0), max(x1, bx1), max(y1, by1)
    rows, cols = masks[0].shape[:2]
    centre_row, centre_col = rows // 2, cols // 2
    half = int(max(centre_row - x0, centre_col - y0, x1 - centre_row, y1 - centre_col))
    return Square(top=max(0, centre_row - half), left=max(0, centre_col - half),
                  height=min(rows, 2 * half), width=min(cols, 2 * half), side=2 * half)


def frame_square(frame: np.ndarray, square: Square, size: int, ratio: float = FRAME_RATIO) -> np.ndarray:
    """One frame cut to `square`, centred in a transparent canvas of side/ratio, resized (LANCZOS) to size x size and
    composited on white. uint8 HxWx3."""
    rgba = frame if frame.shape[-1] == 4 else np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    canvas_side = int(square.side / ratio)
    canvas = np.zeros((canvas_side, canvas_side, 4), np.uint8)
    centre = canvas_side // 2
    rows, cols = min(square.height, square.side), min(square.width, square.side)
    top, left = centre - rows // 2, centre - cols // 2
    canvas[top:top + rows, left:left + cols] = rgba[square.top:square.top + square.height,
                                                    square.left:square.left + square.width]
    return on_white(canvas, size)


def on_white(canvas: np.ndarray, size: int) -> np.ndarray:
    """An RGBA canvas resized (LANCZOS) to size x size and composited on white in float64, truncated to uint8, as
    the originals do. uint8 HxWx3."""
    resized = np.asarray(Image.fromarray(canvas).resize((size, size), Image.LANCZOS)) / 255.0
    alpha = resized[..., 3:]
    return ((resized[..., :3] * alpha + (1 - alpha)) * 255).astype(np.uint8)


def frame_object(frames: Sequence[np.ndarray], size: int, ratio: float = FRAME_RATIO) -> np.ndarray:
    """All frames framed by one union square: uint8 [N, size, size, 3] on white."""
    square = union_square([object_mask(frame) for frame in frames])
    return np.stack([frame_square(frame, square, size, ratio) for frame in frames])
