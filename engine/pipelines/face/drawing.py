"""The landmark pose image the landmark ControlNet was trained on: 68 face points drawn as 15 coloured polylines.

Facts from MOFA-Video-Keypoint/utils/utils.py@3ad3b546da4c (`PARTS`, `draw_landmarks`; the same table in
MOFA-Video-Hybrid/run_gradio_video_driven.py and aniportrait/audio2ldmk.py): points drawn in 320x320 space (the
training resolution, so line widths match training whatever the working size) on a float64 black canvas, each part a
chain of cv2.line segments of thickness 2 (OpenCV's default 8-connected lines) between int()-truncated points; the
colour triples go to the canvas channels in the order written, and the canvas is used as RGB without conversion.
"""
from __future__ import annotations

import numpy as np

POSE_SIZE = 320  # the original draws every pose image at 320x320 and then resizes it to the working size
LINE_THICKNESS = 2

# (name, 1-based indices into the 68 points, colour): each part is one open polyline (eyes repeat their first point).
PARTS: tuple[tuple[str, tuple[int, ...], tuple[int, int, int]], ...] = (
    ("FACE", tuple(range(1, 18)), (10, 200, 10)),
    ("LEFT_EYE", (43, 44, 45, 46, 47, 48, 43), (180, 200, 10)),
    ("LEFT_EYEBROW", (23, 24, 25, 26, 27), (180, 220, 10)),
    ("RIGHT_EYE", (37, 38, 39, 40, 41, 42, 37), (10, 200, 180)),
    ("RIGHT_EYEBROW", (18, 19, 20, 21, 22), (10, 220, 180)),
    ("NOSE_UP", (28, 29, 30, 31), (10, 200, 250)),
    ("NOSE_DOWN", (32, 33, 34, 35, 36), (250, 200, 10)),
    ("LIPS_OUTER_BOTTOM_LEFT", (55, 56, 57, 58), (10, 180, 20)),
    ("LIPS_OUTER_BOTTOM_RIGHT", (49, 60, 59, 58), (20, 10, 180)),
    ("LIPS_INNER_BOTTOM_LEFT", (65, 66, 67), (100, 100, 30)),
    ("LIPS_INNER_BOTTOM_RIGHT", (61, 68, 67), (100, 150, 50)),
    ("LIPS_OUTER_TOP_LEFT", (52, 53, 54, 55), (20, 80, 100)),
    ("LIPS_OUTER_TOP_RIGHT", (52, 51, 50, 49), (80, 100, 20)),
    ("LIPS_INNER_TOP_LEFT", (63, 64, 65), (120, 100, 200)),
    ("LIPS_INNER_TOP_RIGHT", (63, 62, 61), (150, 120, 100)),
)


def draw_pose_image(points: np.ndarray, size: int = POSE_SIZE) -> np.ndarray:
    """points [68, 2] (x, y) already scaled to `size` x `size` -> the pose image, float64 [size, size, 3] in 0..255.

    The pipeline resizes it (bilinearly, as the original does) to the working size and divides by 255."""
    import cv2

    points = np.asarray(points)
    if points.shape != (68, 2):
        raise ValueError(f"draw_pose_image takes 68 (x, y) points, got an array of shape {points.shape}")
    canvas = np.zeros((size, size, 3))
    for _, indices, colour in PARTS:
        chain = [(int(points[i - 1, 0]), int(points[i - 1, 1])) for i in indices]
        for start, end in zip(chain[:-1], chain[1:]):
            cv2.line(canvas, start, end, colour, thickness=LINE_THICKNESS)
    return canvas


def draw_over(picture: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 68 points' polylines drawn over an RGB uint8 picture at its own size (for the landmark preview video):
    the same parts and colours, with a line width that grows with the picture."""
    import cv2

    canvas = np.ascontiguousarray(picture[..., :3]).copy()
    thickness = max(2, round(max(canvas.shape[:2]) / 256))
    for _, indices, colour in PARTS:
        chain = np.asarray([points[i - 1] for i in indices], dtype=np.float64)
        if not np.isfinite(chain).all():
            continue
        cv2.polylines(canvas, [np.round(chain).astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
    return canvas
