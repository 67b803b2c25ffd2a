"""A clip's DensePose as it is extracted and then framed, with bounded memory.

Detection keeps, per output frame, only the chosen person's part labels inside their box, zlib-compressed (a few
kilobytes a frame); the square framing (which, for "follow", needs every box of the clip first), the filling of
frames where no one was found, the optional label smoothing and the colouring then stream frame by frame.
"""
from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from engine.errors import InputError
from engine.pipelines.densepose.render import colourise, majority, nearest_resize, paste


@dataclass(frozen=True)
class Patch:
    """The chosen people's part labels in one frame: an h x w uint8 map at (x, y), compressed."""

    x: int
    y: int
    width: int
    height: int
    data: bytes

    @classmethod
    def of(cls, labels: np.ndarray, x: int, y: int) -> "Patch":
        return cls(x, y, labels.shape[1], labels.shape[0], zlib.compress(np.ascontiguousarray(labels).tobytes(), 1))

    def labels(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), dtype=np.uint8).reshape(self.height, self.width)


@dataclass
class ClipLabels:
    """Phase one's result: one Patch (or None: no one found) per output frame, and the counts settings.json keeps."""

    frame_height: int
    frame_width: int
    fps: float
    patches: list[Patch | None] = field(default_factory=list)
    most_people: int = 0  # the most detections above the score threshold in one frame

    @property
    def frames(self) -> int:
        return len(self.patches)

    @property
    def frames_without_person(self) -> int:
        return sum(patch is None for patch in self.patches)

    def counts(self) -> dict[str, int]:
        return {"frames": self.frames, "frames_without_person": self.frames_without_person,
                "most_people_in_a_frame": self.most_people}


def filled(patches: list[Patch | None], name: str) -> list[Patch]:
    """Each frame without a person takes the nearest frame's patch that has one (the earlier on a tie)."""
    found = [i for i, patch in enumerate(patches) if patch is not None]
    if not found:
        raise InputError(f"No person was found in any frame of '{name}'. Use a video where one person is clearly "
                         "visible (whole body, not too small), or lower --min-score.")
    index = np.asarray(found)
    out = []
    for i, patch in enumerate(patches):
        if patch is None:
            j = int(np.searchsorted(index, i))
            before = index[j - 1] if j > 0 else None
            after = index[j] if j < len(index) else None
            patch = patches[before if after is None or (before is not None and i - before <= after - i) else after]
        out.append(patch)
    return out


def square_region(clip: ClipLabels, patches: list[Patch], framing: str, margin: float) -> tuple[int, int, int]:
    """(x, y, side) of the square every frame is cut to; it may reach past the frame (filled with background).

    follow: around the union of the person's boxes over the whole clip plus `margin` of its longer side on each
    side (one fixed crop, so the camera does not move); centre: the largest centred square; pad: the whole frame
    in a centred square."""
    h, w = clip.frame_height, clip.frame_width
    if framing == "centre":
        side = min(h, w)
        return (w - side) // 2, (h - side) // 2, side
    if framing == "pad":
        side = max(h, w)
        return (w - side) // 2, (h - side) // 2, side
    if framing != "follow":
        raise ValueError(f"unknown framing {framing!r}")
    x1 = min(p.x for p in patches)
    y1 = min(p.y for p in patches)
    x2 = max(p.x + p.width for p in patches)
    y2 = max(p.y + p.height for p in patches)
    side = max(1, round(max(x2 - x1, y2 - y1) * (1 + 2 * margin)))
    return round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2), side


def tracked_regions(patches: list[Patch], margin: float, radius: int) -> list[tuple[int, int, int]]:
    """track: per frame (x, y, side) of a square that moves with the person. Its side is fixed (the largest box
    side of the clip plus `margin` on each side, so the body keeps its scale); its centre is the mean of the box
    centres over the 2 * radius + 1 frames around (detections jitter; a camera should not)."""
    side = max(1, round(max(max(p.width, p.height) for p in patches) * (1 + 2 * margin)))
    centres = np.array([(p.x + p.width / 2, p.y + p.height / 2) for p in patches], dtype=np.float64)
    sums = np.concatenate([np.zeros((1, 2)), np.cumsum(centres, axis=0)])
    regions = []
    for i in range(len(patches)):
        low, high = max(0, i - radius), min(len(patches), i + radius + 1)
        cx, cy = (sums[high] - sums[low]) / (high - low)
        regions.append((round(cx - side / 2), round(cy - side / 2), side))
    return regions


def framed_labels(clip: ClipLabels, name: str, framing: str, size: int, margin: float) -> Iterator[np.ndarray]:
    """Each output frame's size x size label map: filled, cut to its square, resized (nearest)."""
    patches = filled(clip.patches, name)
    if framing == "track":
        regions = tracked_regions(patches, margin, radius=round(clip.fps / 2))  # one second of centres
    else:
        regions = [square_region(clip, patches, framing, margin)] * len(patches)
    for patch, (x0, y0, side) in zip(patches, regions):
        canvas = np.zeros((side, side), dtype=np.uint8)
        paste(canvas, patch.labels(), patch.x - x0, patch.y - y0)
        yield nearest_resize(canvas, size)


def smoothed(frames: Iterator[np.ndarray], radius: int) -> Iterator[np.ndarray]:
    """Per-pixel majority of the labels over the 2 * radius + 1 frames around each (fewer at the ends); radius 0
    passes the frames through. Holds 2 * radius + 1 frames."""
    if radius <= 0:
        yield from frames
        return
    held: deque[np.ndarray] = deque(maxlen=2 * radius + 1)
    count = 0

    def around(index: int) -> np.ndarray:
        start = count - len(held)
        low, high = max(index - radius, start), min(index + radius, count - 1)
        return majority([held[i - start] for i in range(low, high + 1)], index - low)

    for frame in frames:
        held.append(frame)
        count += 1
        if count - 1 - radius >= 0:
            yield around(count - 1 - radius)
    for index in range(max(0, count - radius), count):
        yield around(index)


def rendered(clip: ClipLabels, name: str, framing: str, size: int, margin: float, radius: int
             ) -> Iterator[np.ndarray]:
    """The DensePose video's frames (size x size RGB uint8), one at a time."""
    for labels in smoothed(framed_labels(clip, name, framing, size, margin), radius):
        yield colourise(labels)
