"""What the user draws on the Trajectories tab, as plain values and pure functions (the tab only wires them up).

A `Drawing` is one session's picture, trajectories (lists of [x, y] clicks in the picture's pixels), motion-brush
mask and working size (the model sees the picture with its short side resized to it and centre-cropped to multiples
of 64: the border outside is shaded and takes no points). It lives in a gr.State, so every browser session has its
own; every function returns a new Drawing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

TRACK_COLOUR = (255, 40, 40)
BRUSH_COLOUR = np.array([40, 90, 255], np.float32)
BRUSH_OPACITY = 0.45
CROPPED_SHADE = 0.35  # brightness kept in the border the working size crops away
MULTIPLE = 64  # the working picture's sides are multiples of this (the SVD UNet halves the latents three times)


@dataclass(frozen=True)
class Drawing:
    image: np.ndarray | None = None
    tracks: tuple[tuple[tuple[int, int], ...], ...] = ()
    brush: np.ndarray | None = field(default=None, repr=False)  # uint8 HxW, 255 = painted
    short_side: int = 512  # the working size (the task's `size` option)

    @property
    def trajectories(self) -> list[list[list[int]]]:
        """Non-empty trajectories as JSON-ready lists."""
        return [[list(p) for p in track] for track in self.tracks if track]


def start(image: np.ndarray | None, short_side: int = 512) -> Drawing:
    """A new picture: nothing drawn yet."""
    return Drawing(image=image, short_side=short_side)


def with_size(drawing: Drawing, short_side: int) -> Drawing:
    return replace(drawing, short_side=int(short_side))


def kept_area(width: int, height: int, short_side: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in picture pixels of what the model sees: the short side resized to `short_side`, then the
    centre crop to multiples of 64 (the task's own check refuses points outside it; tests hold the two together)."""
    scale = short_side / min(width, height)
    new_w, new_h = round(width * scale), round(height * scale)
    crop_w, crop_h = new_w - new_w % MULTIPLE, new_h - new_h % MULTIPLE
    left, top = int(round((new_w - crop_w) / 2.0)), int(round((new_h - crop_h) / 2.0))
    return left / scale, top / scale, (left + crop_w) / scale, (top + crop_h) / scale


def inside_kept_area(drawing: Drawing, x: float, y: float) -> bool:
    if drawing.image is None:
        return False
    x0, y0, x1, y1 = kept_area(drawing.image.shape[1], drawing.image.shape[0], drawing.short_side)
    return x0 <= x < x1 and y0 <= y < y1


def add_point(drawing: Drawing, x: float, y: float) -> Drawing:
    """Append a click (clamped into the picture) to the current (last) trajectory, starting one if there is none; a
    click in the cropped-away border changes nothing."""
    if drawing.image is None:
        return drawing
    height, width = drawing.image.shape[:2]
    point = (int(min(max(x, 0), width - 1)), int(min(max(y, 0), height - 1)))
    if not inside_kept_area(drawing, *point):
        return drawing
    tracks = drawing.tracks or ((),)
    return replace(drawing, tracks=tracks[:-1] + (tracks[-1] + (point,),))


def new_trajectory(drawing: Drawing) -> Drawing:
    """Start a new trajectory (no-op while the current one is still empty)."""
    if not drawing.tracks or not drawing.tracks[-1]:
        return drawing
    return replace(drawing, tracks=drawing.tracks + ((),))


def _trim(tracks: tuple) -> tuple:
    while tracks and not tracks[-1]:
        tracks = tracks[:-1]
    return tracks


def undo(drawing: Drawing) -> Drawing:
    """Remove the most recent point (a trajectory left empty disappears)."""
    tracks = _trim(drawing.tracks)
    if not tracks:
        return replace(drawing, tracks=())
    return replace(drawing, tracks=_trim(tracks[:-1] + (tracks[-1][:-1],)))


def delete_last(drawing: Drawing) -> Drawing:
    """Remove the last trajectory with all its points."""
    return replace(drawing, tracks=_trim(_trim(drawing.tracks)[:-1]))


def clear(drawing: Drawing) -> Drawing:
    """Remove every trajectory and the motion brush; keep the picture."""
    return start(drawing.image, drawing.short_side)


def stamp_brush(drawing: Drawing, x: float, y: float, radius: int) -> Drawing:
    """Paint a filled circle into the motion brush (as the original demo's clicks do)."""
    if drawing.image is None:
        return drawing
    brush = (np.zeros(drawing.image.shape[:2], np.uint8) if drawing.brush is None else drawing.brush.copy())
    cv2.circle(brush, (int(x), int(y)), max(1, int(radius)), 255, -1)
    return replace(drawing, brush=brush)


def clear_brush(drawing: Drawing) -> Drawing:
    return replace(drawing, brush=None)


def load_trajectories(drawing: Drawing, trajectories: list[list[list[float]]]) -> Drawing:
    """Replace the trajectories (e.g. pasted from a traj.json); points are rounded to pixels."""
    tracks = tuple(tuple((int(round(x)), int(round(y))) for x, y in track) for track in trajectories)
    return replace(drawing, tracks=tracks)


def trajectories_json(drawing: Drawing) -> str:
    return json.dumps(drawing.trajectories)


def render_overlay(drawing: Drawing) -> np.ndarray | None:
    """The picture with the border the working size crops away shaded, the brush tinted blue and each trajectory as
    a red path through its clicks, ending in an arrow; a dot marks each start point (and a lone click)."""
    if drawing.image is None:
        return None
    canvas = drawing.image[..., :3].astype(np.float32)
    if drawing.brush is not None:
        painted = drawing.brush > 0
        canvas[painted] = canvas[painted] * (1 - BRUSH_OPACITY) + BRUSH_COLOUR * BRUSH_OPACITY
    x0, y0, x1, y1 = kept_area(canvas.shape[1], canvas.shape[0], drawing.short_side)
    outside = np.ones(canvas.shape[:2], bool)
    outside[math.ceil(y0):math.ceil(y1), math.ceil(x0):math.ceil(x1)] = False
    canvas[outside] *= CROPPED_SHADE
    canvas = np.ascontiguousarray(canvas.astype(np.uint8))
    thickness = max(2, round(max(canvas.shape[:2]) / 256))
    for track in drawing.tracks:
        if not track:
            continue
        points = np.asarray(track, np.int32)
        if len(points) > 1:
            cv2.polylines(canvas, [points[:-1]], False, TRACK_COLOUR, thickness, cv2.LINE_AA)
            length = max(float(np.hypot(*(points[-1] - points[-2]))), 1.0)
            cv2.arrowedLine(canvas, tuple(map(int, points[-2])), tuple(map(int, points[-1])), TRACK_COLOUR,
                            thickness, cv2.LINE_AA, tipLength=min(0.5, 4 * thickness / length))
        cv2.circle(canvas, tuple(map(int, points[0])), thickness + 2, TRACK_COLOUR, -1, cv2.LINE_AA)
    return canvas
