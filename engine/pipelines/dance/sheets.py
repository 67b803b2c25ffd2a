"""Square crops around the character, as CoNR's loader makes them, and pasting results back.

Every image the networks see (sheet views and pose frames) is cropped the same way: the bounding box of
alpha > 0 is grown to a centred square (Python `round`, as the original), padded with zeros where the
square leaves the image, and resized to the working size (INTER_LINEAR when enlarging, INTER_AREA
otherwise). The `CropBox` kept per pose frame puts the result back where the character was.
Crop and resizes: data_loader.py@660c4f771390; pasting back with INTER_AREA: train.py@660c4f771390.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from engine.errors import InputError

MIN_ALPHA_AREA = 0.001  # below this fraction of visible pixels an image counts as empty
OPAQUE_MASK_MEAN = 0.95  # the original refuses sheets whose cropped mask is this opaque (conr.py@660c4f771390)
MAX_OUTPUT_SIDE = 4096
MIN_SHEET_SIDE = 16  # pixels: the character is scaled up to the working size (256); a smaller view shows nothing


@dataclass(frozen=True)
class CropBox:
    """Where a square crop of side `side` came from in a `frame_h` x `frame_w` image."""

    frame_h: int
    frame_w: int
    top: int
    bottom: int
    left: int
    right: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    side: int


def square_box(alpha: np.ndarray) -> CropBox | None:
    """The centred square around alpha > 0, or None when (almost) nothing is visible."""
    visible = (alpha > 0).astype(np.uint8)
    left, top, box_w, box_h = cv2.boundingRect(visible)
    if (box_h <= 1 and box_w <= 1) or visible.sum() / visible.size < MIN_ALPHA_AREA:
        return None
    side = int(round(box_h)) if box_h > box_w else int(round(box_w))
    square_top = int(round(top - (side - box_h) / 2))
    square_left = int(round(left - (side - box_w) / 2))
    frame_h, frame_w = alpha.shape[:2]
    return CropBox(
        frame_h=frame_h, frame_w=frame_w,
        top=max(square_top, 0), bottom=min(square_top + side, frame_h),
        left=max(square_left, 0), right=min(square_left + side, frame_w),
        pad_top=max(-square_top, 0), pad_bottom=max(square_top + side - frame_h, 0),
        pad_left=max(-square_left, 0), pad_right=max(square_left + side - frame_w, 0),
        side=side,
    )


def crop_square(image: np.ndarray, box: CropBox, size: int, nearest: bool = False) -> np.ndarray:
    """Cut `box` out of an HxWxC image, zero-pad it to a square and resize it to size x size.

    `nearest` resizes with INTER_NEAREST_EXACT (the original does so for UDP coordinates).
    """
    crop = image[box.top:box.bottom, box.left:box.right]
    crop = np.pad(crop, ((box.pad_top, box.pad_bottom), (box.pad_left, box.pad_right), (0, 0)))
    if box.side == size:
        return crop
    if nearest:
        interpolation = cv2.INTER_NEAREST_EXACT
    else:
        interpolation = cv2.INTER_LINEAR if size > box.side else cv2.INTER_AREA
    return cv2.resize(crop, (size, size), interpolation=interpolation).reshape(size, size, -1)


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA -> uint8 RGBA with RGB multiplied by alpha (truncated, as the original)."""
    rgb = (rgba[..., :3] * (rgba[..., 3:4] / 255.0)).clip(0, 255).astype(np.uint8)
    return np.concatenate([rgb, rgba[..., 3:4]], axis=-1)


def as_rgba(image: np.ndarray, what: str) -> np.ndarray:
    """Check an HxWx3/4 uint8 image; RGB gets an opaque alpha channel."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 2:
        shape = getattr(image, "shape", None)
        raise InputError(f"{what} must be an 8-bit RGB or RGBA image (got shape {shape}); "
                         "use a PNG, JPEG or WebP picture.")
    if image.shape[2] == 3:
        image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    return image


def check_sheet_size(sheet: np.ndarray, what: str) -> None:
    """Refuse a sheet smaller than MIN_SHEET_SIDE on a side (a 1x1 picture is no character view)."""
    shape = getattr(sheet, "shape", ())
    if len(shape) >= 2 and min(shape[:2]) < MIN_SHEET_SIDE:
        raise InputError(f"{what} is only {shape[1]}x{shape[0]} pixels, too small to show the character. Upload a "
                         f"picture at least {MIN_SHEET_SIDE}x{MIN_SHEET_SIDE} (CoNR scales the character to "
                         "256x256).")


def prepare_sheets(sheets: Sequence[np.ndarray], size: int,
                   names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Character sheets -> (premultiplied RGB [M,3,S,S], mask [M,1,S,S]) float32 in [0, 1].

    A sheet without transparency is refused: CoNR needs the character cut out from its background.
    Beyond the original's test (cropped mask >= 95% opaque) a sheet with no transparent pixel at all is
    refused too, since a wide opaque picture would otherwise slip through its square padding.
    Messages name a sheet by its file name when `names` are given, else by its position.
    """
    if len(sheets) == 0:
        raise InputError("No character sheet given: add at least one picture of the character "
                         "(CoNR's examples use 4 views).")
    rgbs, masks = [], []
    for index, sheet in enumerate(sheets, start=1):
        what = f"Character sheet '{names[index - 1]}'" if names else f"Character sheet {index}"
        check_sheet_size(sheet, what)
        rgba = as_rgba(sheet, what)
        box = square_box(rgba[..., 3])
        if box is None:
            raise InputError(f"{what} is almost fully transparent: nothing of the character is visible. "
                             "Remove it or upload a cut-out picture of the character.")
        square = crop_square(premultiply(rgba), box, size).astype(np.float32) / 255.0
        if rgba[..., 3].min() == 255 or square[..., 3].mean() >= OPAQUE_MASK_MEAN:
            raise InputError(f"{what} has no transparent background. Cut the character out of its "
                             "background first (use the automatic cut-out option) and upload RGBA PNGs.")
        rgbs.append(square[..., :3].transpose(2, 0, 1))
        masks.append(square[..., 3:].transpose(2, 0, 1))
    return np.stack(rgbs), np.stack(masks)


def paste_back(rgba: np.ndarray, box: CropBox | None, frame_hw: tuple[int, int]) -> np.ndarray:
    """Put a square SxSx4 result back where its pose frame's crop came from (INTER_AREA, as the original).

    With no crop (an empty pose frame) the canvas stays transparent.
    """
    canvas = np.zeros((frame_hw[0], frame_hw[1], rgba.shape[2]), dtype=rgba.dtype)
    if box is None:
        return canvas
    square = cv2.resize(rgba, (box.side, box.side), interpolation=cv2.INTER_AREA).reshape(box.side, box.side, -1)
    canvas[box.top:box.bottom, box.left:box.right] = \
        square[box.pad_top:box.side - box.pad_bottom, box.pad_left:box.side - box.pad_right]
    return canvas


def check_output_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_OUTPUT_SIDE:
            raise InputError(f"Output {name} must be a whole number from 1 to {MAX_OUTPUT_SIDE} (got {value!r}).")


def fit_frame(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale a frame to fit inside width x height keeping its aspect ratio, centred on transparency."""
    check_output_size(width, height)
    h, w = rgba.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    scaled = cv2.resize(rgba, (new_w, new_h), interpolation=interpolation).reshape(new_h, new_w, -1)
    canvas = np.zeros((height, width, rgba.shape[2]), dtype=rgba.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = scaled
    return canvas
