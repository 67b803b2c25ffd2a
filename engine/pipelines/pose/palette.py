"""Is a motion video a DensePose rendering? A cheap colour test on its first frame.

MagicAnimate is driven by DensePose renderings: body parts coloured along the viridis colour map on a viridis(0)
background. An ordinary video given instead runs for minutes and yields garbage, so the first frame is checked: if
most of its pixels are far from every viridis colour, the run warns (a DensePose rendering made another way, over the
photo say, still runs).
"""
from __future__ import annotations

import numpy as np


# matplotlib's viridis (`_viridis_data` in lib/matplotlib/_cm_listed.py; by Stéfan van der Walt and Nathaniel Smith,
# CC0) at every 16th of its 256 entries and the last one, x 255. Interpolating between them stays within 6 levels of
# the full table, far below the test's tolerance.
_VIRIDIS_ANCHORS = np.array([
    (68, 1, 84), (71, 24, 106), (71, 44, 123), (66, 64, 133), (58, 82, 139), (50, 98, 141), (44, 114, 142),
    (38, 129, 142), (32, 144, 140), (30, 159, 136), (40, 174, 127), (62, 188, 115), (94, 201, 97), (131, 211, 75),
    (173, 220, 48), (215, 226, 25), (253, 231, 37)], dtype=np.float32)
_ANCHOR_LEVELS = np.array([*range(0, 256, 16), 255], dtype=np.float32)
VIRIDIS = np.stack([np.interp(np.arange(256), _ANCHOR_LEVELS, _VIRIDIS_ANCHORS[:, c]) for c in range(3)],
                   axis=1).round().astype(np.uint8)  # 256 x RGB

# The 25 DensePose part colours (part index k = 0..24 at grey level uint8(k * 255 / 24), the scaling of detectron2's
# DensePose visualiser, projects/DensePose/densepose/vis/densepose_results.py@02b5c4e295e9) through OpenCV's
# COLORMAP_VIRIDIS, which is matplotlib's viridis rounded to 8 bits; k = 0 is the background, viridis(0).
PART_LEVELS = (np.arange(25) * 255 / 24).astype(np.uint8)
PART_COLOURS = np.array([
    (68, 1, 84), (71, 16, 99), (72, 31, 112), (71, 44, 122), (68, 57, 131), (64, 70, 136), (59, 81, 139),
    (54, 93, 141), (49, 104, 142), (44, 113, 142), (40, 124, 142), (37, 133, 142), (33, 144, 141), (31, 154, 138),
    (32, 163, 134), (39, 173, 129), (53, 183, 121), (70, 192, 111), (92, 200, 99), (115, 208, 86), (142, 214, 69),
    (170, 220, 50), (197, 224, 33), (226, 228, 24), (253, 231, 37)], dtype=np.uint8)  # RGB

FAR = 40.0  # RGB distance from the nearest viridis colour beyond which a pixel is not DensePose (H.264 shifts ~5-10)
MOST = 0.5  # refuse when more than this fraction of the sampled pixels is far
SAMPLES = 64  # pixels per side of the sampling grid


def viridis(levels: np.ndarray) -> np.ndarray:
    """Grey levels (uint8, any shape) -> their viridis colours (shape + (3,)): how DensePose colours a body."""
    return VIRIDIS[np.asarray(levels, dtype=np.uint8)]


def far_from_viridis(frame: np.ndarray) -> float:
    """Fraction of a frame's pixels (on a SAMPLES x SAMPLES grid) farther than FAR from every viridis colour."""
    rows = np.linspace(0, frame.shape[0] - 1, min(SAMPLES, frame.shape[0])).astype(int)
    cols = np.linspace(0, frame.shape[1] - 1, min(SAMPLES, frame.shape[1])).astype(int)
    pixels = frame[np.ix_(rows, cols)][..., :3].reshape(-1, 1, 3).astype(np.float32)
    distance = np.linalg.norm(pixels - VIRIDIS.astype(np.float32)[None], axis=-1).min(axis=1)
    return float((distance > FAR).mean())


def looks_like_densepose(first_frame: np.ndarray) -> bool:
    """Whether a video's first frame is mostly DensePose colours (the pose task's motion_kind auto)."""
    return far_from_viridis(first_frame) <= MOST


def densepose_warning(first_frame: np.ndarray, name: str) -> str | None:
    """A warning when a motion video's first frame does not look like a DensePose rendering, else None."""
    far = far_from_viridis(first_frame)
    if far <= MOST:
        return None
    return (f"Motion video '{name}' looks like an ordinary video, not a DensePose rendering ({far:.0%} of its first "
            "frame is far from DensePose's viridis colours), so the result will not follow the movement. Use "
            "--motion-kind auto or video to extract its DensePose first.")
