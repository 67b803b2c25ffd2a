"""Label maps to pictures, as MagicAnimate's driving videos: part index k (0..24) in the viridis colour of grey level
k * 255 / 24 on an opaque viridis(0) background."""
from __future__ import annotations

import numpy as np

from engine.pipelines.pose.palette import PART_COLOURS


def colourise(labels: np.ndarray) -> np.ndarray:
    """(H, W) part indices (uint8, 0..24) -> (H, W, 3) uint8 RGB."""
    return PART_COLOURS[labels]


def paste(canvas: np.ndarray, labels: np.ndarray, x: int, y: int) -> None:
    """Paint `labels` (h x w) into `canvas` with its top-left at (x, y): only the pixels with a part (> 0), as
    detectron2's visualiser masks each detection; later detections paint over earlier ones. Parts falling outside
    the canvas are cut off."""
    h, w = labels.shape
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + h, canvas.shape[0]), min(x + w, canvas.shape[1])
    if bottom <= top or right <= left:
        return
    patch = labels[top - y:bottom - y, left - x:right - x]
    region = canvas[top:bottom, left:right]
    np.copyto(region, patch, where=patch > 0)


def nearest_resize(labels: np.ndarray, size: int) -> np.ndarray:
    """A square label map to size x size by nearest neighbour at pixel centres (labels must not blend)."""
    side = labels.shape[0]
    index = np.minimum(((np.arange(size) + 0.5) * side / size).astype(np.int64), side - 1)
    return labels[np.ix_(index, index)]


def majority(window: list[np.ndarray], centre: int) -> np.ndarray:
    """Per pixel, the most frequent label over a window of label maps; ties go to the centre frame's label."""
    stack = np.stack(window)
    best = np.zeros(stack.shape[1:], dtype=np.uint8)
    best_count = np.full(stack.shape[1:], -1.0, dtype=np.float32)
    for label in np.unique(stack):
        count = (stack == label).sum(axis=0) + 0.5 * (window[centre] == label)
        better = count > best_count
        best[better], best_count[better] = label, count[better]
    return best
