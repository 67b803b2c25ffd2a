"""Face landmarks for the face task: detection behind a small interface, 478 -> 68 points, retargeting a driver's
motion onto the portrait, gap filling, and the default face mask for hybrid runs.

The detector is MediaPipe's FaceLandmarker (Tasks API, the .task file from the Hub through the engine), behind
`Landmarker`, so tests inject a fake and part 2 (audio -> landmarks) reads the same `FaceDetection`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from engine.errors import InputError

MEDIAPIPE_POINTS = 478  # 468 face-mesh points + 10 iris points
MAX_FILLED_GAP = 5  # driving frames without a face filled from their neighbours (0.2 s at 25 fps); longer gaps refused

# 478 -> 68: the mediapipe index of each of the 68 points (jaw 17, right brow 5, left brow 5, nose bridge 4, nostrils 5,
# right eye 6, left eye 6, outer lips 12, inner lips 8), in order: `convert_ldmk_to_68` of
# MOFA-Video-Hybrid/aniportrait/audio2ldmk.py@3ad3b546da4c.
MEDIAPIPE_TO_68: tuple[int, ...] = (
    234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323, 454,
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    168, 6, 195, 4,
    239, 241, 19, 461, 459,
    33, 160, 158, 133, 153, 144,
    362, 385, 387, 263, 373, 380,
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    78, 81, 13, 311, 308, 402, 14, 178,
)
JAW, BROWS = slice(0, 17), slice(17, 27)


@dataclass(frozen=True)
class FaceDetection:
    """One face found in one picture.

    points: [478, 2] float32 (x, y) in the picture's pixels. depth: [478] mediapipe's relative z (same scale as x,
    in pixels; smaller is nearer), or None. transform: [4, 4] the facial transformation matrix (canonical metric face
    -> camera space) when the detector gives one, else None. mesh: [468, 3] the pose-free metric face mesh when the
    detector gives one (mediapipe >= 1's Python API does not: part 2 derives it), else None."""

    points: np.ndarray
    depth: np.ndarray | None = None
    transform: np.ndarray | None = None
    mesh: np.ndarray | None = None


class Landmarker(Protocol):
    """Finds one face. `timestamp_ms`: None for an independent picture; increasing values for the frames of one
    video (a detector may then track the face from frame to frame)."""

    def detect(self, frame: np.ndarray, timestamp_ms: int | None = None) -> FaceDetection | None: ...

    def close(self) -> None: ...


class MediapipeLandmarker:
    """MediaPipe's FaceLandmarker on the CPU, created on first use (mediapipe imported then too).

    `task_file` gives the .task path when first needed (a checkpoint resolved through the engine). Pictures use the
    IMAGE running mode; video frames (with timestamps) the VIDEO mode, which tracks the face between frames."""

    def __init__(self, task_file: Callable[[], Path]) -> None:
        self._task_file = task_file
        self._detectors: dict[str, object] = {}

    def _detector(self, mode: str) -> object:
        if mode not in self._detectors:
            from mediapipe.tasks.python.core.base_options import BaseOptions
            from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

            options = FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self._task_file()), delegate=BaseOptions.Delegate.CPU),
                running_mode=getattr(RunningMode, mode), num_faces=1, output_facial_transformation_matrixes=True)
            self._detectors[mode] = FaceLandmarker.create_from_options(options)
        return self._detectors[mode]

    def detect(self, frame: np.ndarray, timestamp_ms: int | None = None) -> FaceDetection | None:
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame[..., :3]))
        if timestamp_ms is None:
            result = self._detector("IMAGE").detect(image)
        else:
            result = self._detector("VIDEO").detect_for_video(image, int(timestamp_ms))
        if not result.face_landmarks:
            return None
        height, width = frame.shape[:2]
        normalised = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float32)
        matrices = result.facial_transformation_matrixes
        return FaceDetection(points=normalised[:, :2] * np.float32([width, height]),
                             depth=normalised[:, 2] * np.float32(width),
                             transform=np.asarray(matrices[0], np.float32) if matrices else None)

    def close(self) -> None:
        for detector in self._detectors.values():
            detector.close()
        self._detectors.clear()


def open_landmarker(task_file: Callable[[], Path]) -> Landmarker:
    """The landmarker the face task uses (tests replace this function to inject a fake)."""
    return MediapipeLandmarker(task_file)


# ---------------------------------------------------------------------------------------------------- 478 -> 68

def to_68(points: np.ndarray) -> np.ndarray:
    """[..., 478 (or 468), C] mediapipe points -> [..., 68, C] in the 68-point layout the pose images use."""
    points = np.asarray(points)
    if points.shape[-2] < 468:
        raise ValueError(f"to_68 takes mediapipe's 468 or 478 points, got {points.shape[-2]}")
    return points[..., MEDIAPIPE_TO_68, :]


# ---------------------------------------------------------------------------------------------------- detection

def detect_portrait(landmarker: Landmarker, image: np.ndarray) -> FaceDetection:
    """The portrait's face, or an InputError when no face is found."""
    found = landmarker.detect(image)
    if found is None:
        raise InputError("No face was found in the portrait. Use a picture with one clearly visible face, facing "
                         "the camera (a head-and-shoulders photo works best).")
    return found


def portrait_landmarks(landmarker: Landmarker, image: np.ndarray) -> np.ndarray:
    """The portrait's 68 points [68, 2] float32, or an InputError when no face is found."""
    return to_68(detect_portrait(landmarker, image).points).astype(np.float32)


@dataclass(frozen=True)
class FilledLandmarks:
    """Points per frame after gap filling ([N, ...]), and which frames were filled (0-based)."""

    points: np.ndarray
    filled: tuple[int, ...]


def fill_gaps(found: Sequence[np.ndarray | None], fps: float, max_gap: int = MAX_FILLED_GAP) -> FilledLandmarks:
    """Frames without a face (None) filled by linear interpolation between their neighbours (copies of the nearest
    frame at the start or end). A run of more than `max_gap` missing frames is refused, naming it."""
    if not found or all(points is None for points in found):
        raise InputError("No face was found in any frame of the driving video. Use a video of one face, facing the "
                         "camera, well lit.")
    missing = [k for k, points in enumerate(found) if points is None]
    for first, last in _runs(missing):
        if last - first + 1 > max_gap:
            raise InputError(f"No face was found in driving frames {first + 1}-{last + 1} ({first / fps:.2f}-"
                             f"{(last + 1) / fps:.2f} s, {last - first + 1} frames in a row; at most {max_gap} are "
                             "filled from their neighbours). Trim that part of the video or use one where the face "
                             "stays visible.")
    known = [k for k, points in enumerate(found) if points is not None]
    stacked = np.stack([found[k] for k in known])
    filled = np.empty((len(found),) + stacked.shape[1:], np.float32)
    flat = stacked.reshape(len(known), -1)
    for column in range(flat.shape[1]):  # np.interp holds the end values beyond the known range
        filled.reshape(len(found), -1)[:, column] = np.interp(np.arange(len(found)), known, flat[:, column])
    return FilledLandmarks(filled, tuple(missing))


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs in sorted indices as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for k in indices:
        if runs and runs[-1][1] == k - 1:
            runs[-1] = (runs[-1][0], k)
        else:
            runs.append((k, k))
    return runs


# ---------------------------------------------------------------------------------------------------- retargeting

def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x2 scale-and-rotation (no reflection, no shear) that best maps `source` points onto `target` points
    after centring both (least squares, Umeyama's method)."""
    a, b = source - source.mean(axis=0), target - target.mean(axis=0)
    u, s, vt = np.linalg.svd(b.T @ a)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float((s * np.diag(sign)).sum() / max((a ** 2).sum(), 1e-12))
    return scale * rotation


def retarget(portrait: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """Relative motion: each driving frame's displacement from the driver's first frame (expression and head
    motion), turned into the portrait's scale and in-plane orientation, added to the portrait's own 68 points.

    portrait [68, 2], driver [N, 68, 2] -> [N, 68, 2] float32; entry 0 is the portrait's own points (the reference),
    so the portrait's face shape is kept and only the driver's movements are copied."""
    portrait = np.asarray(portrait, np.float64)
    driver = np.asarray(driver, np.float64)
    linear = similarity(driver[0], portrait)
    moved = portrait[None] + (driver - driver[:1]) @ linear.T
    return moved.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- face mask

FOREHEAD = 0.6  # forehead height above the brows, as a fraction of the brow-to-chin height
MASK_MARGIN = 0.08  # the region is grown by this fraction around its centre


def face_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """The default hybrid landmark mask: uint8 [height, width], 255 over the face region of every frame (the
    convex hull of the 68 points with the forehead added above the brows, grown by a margin), 0 elsewhere.
    Trajectories then move what lies outside it (hair, shoulders, background)."""
    import cv2

    mask = np.zeros((height, width), np.uint8)
    for points in np.asarray(landmarks, np.float64).reshape(-1, 68, 2):
        brows, chin = points[BROWS], points[JAW][8]
        up = brows.mean(axis=0) - chin
        forehead = brows + FOREHEAD * up
        region = np.concatenate([points, forehead])
        centre = region.mean(axis=0)
        grown = centre + (region - centre) * (1 + MASK_MARGIN)
        hull = cv2.convexHull(np.round(grown).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255)
    return mask
