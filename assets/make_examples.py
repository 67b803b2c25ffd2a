"""Draw the project's own example inputs (every tab gets a one-click example that works offline).

Run from the repository root: `python assets/make_examples.py`. Everything is drawn here with numpy and OpenCV from
fixed numbers, so the files are reproducible and the project's own work (see NOTICE.md). The outputs are committed.
"""
from __future__ import annotations

import json
import math
import sys
import wave
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from engine import media  # noqa: E402

SKIN, HAIR, SHIRT, TROUSERS = (236, 200, 170), (60, 40, 30), (40, 110, 200), (50, 50, 70)


# ---------------------------------------------------------------------------------------------------- a person

def draw_person(size: int = 256) -> np.ndarray:
    """A standing cartoon person, facing the viewer, on a pale wall (the pose tab's reference)."""
    image = np.full((size, size, 3), (225, 230, 238), np.uint8)
    image[int(size * 0.9):] = (180, 170, 160)  # floor
    s = size / 256
    p = lambda x, y: (int(x * s), int(y * s))  # noqa: E731
    cv2.rectangle(image, p(100, 150), p(124, 232), TROUSERS, -1)
    cv2.rectangle(image, p(132, 150), p(156, 232), TROUSERS, -1)
    cv2.rectangle(image, p(96, 78), p(160, 158), SHIRT, -1, cv2.LINE_AA)
    cv2.rectangle(image, p(78, 82), p(96, 150), SHIRT, -1)
    cv2.rectangle(image, p(160, 82), p(178, 150), SHIRT, -1)
    cv2.circle(image, p(87, 158), int(9 * s), SKIN, -1, cv2.LINE_AA)
    cv2.circle(image, p(169, 158), int(9 * s), SKIN, -1, cv2.LINE_AA)
    cv2.ellipse(image, p(128, 50), (int(24 * s), int(29 * s)), 0, 0, 360, SKIN, -1, cv2.LINE_AA)
    cv2.ellipse(image, p(128, 36), (int(26 * s), int(18 * s)), 0, 180, 360, HAIR, -1, cv2.LINE_AA)
    for x in (118, 138):
        cv2.circle(image, p(x, 50), max(1, int(3 * s)), (40, 40, 40), -1, cv2.LINE_AA)
    cv2.ellipse(image, p(128, 64), (int(8 * s), int(4 * s)), 0, 0, 180, (150, 60, 60), 2, cv2.LINE_AA)
    return image


# ---------------------------------------------------------------------------------------------------- DensePose dance

def viridis(t: float) -> tuple[int, int, int]:
    """A colour on matplotlib's viridis scale (DensePose renderings colour body parts with it), from five stops."""
    stops = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float32)
    x = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    return tuple(int(c) for c in stops[i] + (stops[i + 1] - stops[i]) * (x - i))


def limb(image: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float, part: float) -> None:
    """A body part as a thick segment whose colour runs along it, like DensePose's U coordinate."""
    steps = 12
    for k in range(steps):
        t0, t1 = k / steps, (k + 1) / steps
        p0 = (int(a[0] + (b[0] - a[0]) * t0), int(a[1] + (b[1] - a[1]) * t0))
        p1 = (int(a[0] + (b[0] - a[0]) * t1), int(a[1] + (b[1] - a[1]) * t1))
        cv2.line(image, p0, p1, viridis(part + 0.08 * t0), int(width), cv2.LINE_AA)


def densepose_frame(t: float, size: int = 256) -> np.ndarray:
    """One frame of a dancer rendered as DensePose's body-surface colouring on its viridis(0) background: arms wave,
    hips sway."""
    image = np.full((size, size, 3), viridis(0.0), np.uint8)
    s = size / 256
    sway = 10 * math.sin(2 * math.pi * t)
    hip = (128 + sway, 150)
    neck = (128 + sway * 0.5, 80)
    limb(image, neck, hip, 40 * s, 0.45)  # torso
    cv2.circle(image, (int(neck[0]), int(50 * s)), int(20 * s), viridis(0.9), -1, cv2.LINE_AA)  # head
    for side, phase in ((-1, 0.0), (1, 0.5)):
        shoulder = (neck[0] + side * 22, neck[1] + 6)
        angle = math.radians(200 if side < 0 else -20) + side * 0.9 * math.sin(2 * math.pi * (t + phase))
        elbow = (shoulder[0] + 34 * math.cos(angle), shoulder[1] - 34 * math.sin(angle))
        hand = (elbow[0] + 30 * math.cos(angle + side * 0.6), elbow[1] - 30 * math.sin(angle + side * 0.6))
        limb(image, shoulder, elbow, 14 * s, 0.2 + 0.05 * side)
        limb(image, elbow, hand, 11 * s, 0.3 + 0.05 * side)
        knee = (hip[0] + side * 14 + 6 * math.sin(2 * math.pi * (t + phase)), 195)
        foot = (hip[0] + side * 16, 240)
        limb(image, (hip[0] + side * 12, hip[1]), knee, 18 * s, 0.6 + 0.05 * side)
        limb(image, knee, foot, 14 * s, 0.75 + 0.05 * side)
    return image


# ---------------------------------------------------------------------------------------------------- a landscape

def draw_landscape(width: int = 384, height: int = 256) -> np.ndarray:
    """Sky, a sun, clouds, hills and a lake: things a trajectory can move."""
    rows = np.linspace(0, 1, height)[:, None, None]
    image = ((1 - rows) * np.array([110, 170, 235]) + rows * np.array([200, 225, 250])).repeat(width, 1)
    image = np.ascontiguousarray(image.astype(np.uint8))
    cv2.circle(image, (300, 60), 26, (255, 215, 90), -1, cv2.LINE_AA)
    for cx, cy in ((80, 50), (170, 80)):
        for dx, r in ((-18, 14), (0, 20), (20, 15)):
            cv2.circle(image, (cx + dx, cy), r, (250, 250, 250), -1, cv2.LINE_AA)
    hills = np.array([[0, 170], [90, 120], [180, 165], [270, 130], [384, 175], [384, 256], [0, 256]], np.int32)
    cv2.fillPoly(image, [hills], (70, 140, 70), cv2.LINE_AA)
    cv2.ellipse(image, (190, 215), (120, 22), 0, 0, 360, (70, 120, 200), -1, cv2.LINE_AA)
    return image


# the sun sets, a cloud drifts right, the lake ripples: [[x, y], ...] in the picture's pixels
TRAJECTORIES = [
    [[300, 60], [305, 85], [310, 110]],
    [[80, 50], [120, 52], [160, 55]],
    [[170, 215], [185, 212], [200, 215]],
]


# ---------------------------------------------------------------------------------------------------- character sheets

def draw_character(turn: float, size: int = 256) -> np.ndarray:
    """An anime-style character (big eyes, twin tails) on a transparent background; turn -1..1 rotates the head."""
    image = np.zeros((size, size, 4), np.uint8)
    s = size / 256
    p = lambda x, y: (int(x * s), int(y * s))  # noqa: E731
    rgba = lambda c: (*c, 255)  # noqa: E731
    hair, skin, dress = (240, 150, 60), (250, 220, 200), (200, 60, 90)
    dx = 10 * turn
    cv2.ellipse(image, p(128, 175), (int(42 * s), int(60 * s)), 0, 0, 360, rgba(dress), -1, cv2.LINE_AA)
    cv2.rectangle(image, p(108, 225), p(122, 250), rgba(skin), -1)
    cv2.rectangle(image, p(134, 225), p(148, 250), rgba(skin), -1)
    for side in (-1, 1):
        cv2.ellipse(image, p(128 + side * 46 + dx, 100), (int(14 * s), int(40 * s)), side * 10, 0, 360,
                    rgba(hair), -1, cv2.LINE_AA)
    cv2.circle(image, p(128 + dx * 0.5, 80), int(40 * s), rgba(skin), -1, cv2.LINE_AA)
    cv2.ellipse(image, p(128 + dx * 0.5, 62), (int(44 * s), int(30 * s)), 0, 180, 360, rgba(hair), -1, cv2.LINE_AA)
    for side in (-1, 1):
        if turn * side > 0.6:
            continue  # the far eye is hidden in a side view
        centre = p(128 + side * 15 + dx, 84)
        cv2.ellipse(image, centre, (int(7 * s), int(10 * s)), 0, 0, 360, (*(60, 90, 170), 255), -1, cv2.LINE_AA)
        cv2.circle(image, (centre[0] - 2, centre[1] - 3), max(1, int(2 * s)), (255, 255, 255, 255), -1)
    cv2.ellipse(image, p(128 + dx * 1.2, 104), (int(6 * s), int(3 * s)), 0, 0, 180, (180, 70, 80, 255), 2,
                cv2.LINE_AA)
    return image


# ---------------------------------------------------------------------------------------------------- a face

def face_landmarks(open_mouth: float, nod: float, centre=(128.0, 120.0), scale: float = 1.0) -> np.ndarray:
    """68 face landmarks (the iBUG layout MOFA-Video-Keypoint reads) of the drawn face: jaw 0-16, brows 17-26,
    nose 27-35, eyes 36-47, mouth 48-67."""
    cx, cy = centre[0], centre[1] + nod
    # jaw, ear to ear under the chin
    pts = [(cx - 58 * math.cos(math.pi * k / 16), cy + 10 + 70 * math.sin(math.pi * k / 16)) for k in range(17)]
    for side in (-1, 1):  # brows, left to right
        xs = [cx + side * d for d in ((46, 38, 28, 18, 8) if side < 0 else (8, 18, 28, 38, 46))]
        pts += [(x, cy - 38 - 4 * math.sin(math.pi * i / 4)) for i, x in enumerate(xs)]
    pts += [(cx, cy - 28 + 9 * i) for i in range(4)]  # nose bridge
    pts += [(cx + d, cy + 10 - abs(d) * 0.2) for d in (-10, -5, 0, 5, 10)]  # nostrils
    for side in (-1, 1):  # eyes: outer corner, top, top, inner corner, bottom, bottom (iBUG order)
        ex = cx + side * 26
        ring = [(-12, 0), (-5, -6), (5, -6), (12, 0), (5, 5), (-5, 5)]
        pts += [(ex + x, cy - 18 + y) for x, y in ring]
    mouth_y = cy + 34
    gap = 10 * open_mouth
    outer_top = [(-22, 0), (-14, -5), (-6, -7), (0, -6), (6, -7), (14, -5), (22, 0)]
    outer_bottom = [(14, 6 + gap), (6, 9 + gap), (0, 10 + gap), (-6, 9 + gap), (-14, 6 + gap)]
    inner = [(-16, 0), (-6, -2), (0, -2), (6, -2), (16, 0), (6, 2 + gap), (0, 2 + gap), (-6, 2 + gap)]
    pts += [(cx + x, mouth_y + y) for x, y in outer_top + outer_bottom + inner]
    points = np.asarray(pts, np.float32)
    return (points - np.float32(centre)) * scale + np.float32(centre)


def draw_face(size: int = 256) -> np.ndarray:
    """A drawn portrait whose features sit where face_landmarks(0, 0) puts them."""
    image = np.full((size, size, 3), (200, 215, 225), np.uint8)
    points = face_landmarks(0.0, 0.0).astype(np.int32)
    cv2.ellipse(image, (128, 100), (70, 80), 0, 180, 360, HAIR, -1, cv2.LINE_AA)
    cv2.fillPoly(image, [np.concatenate([points[:17], [[186, 70], [128, 55], [70, 70]]]).astype(np.int32)], SKIN,
                 cv2.LINE_AA)
    cv2.polylines(image, [points[17:22], points[22:27]], False, HAIR, 3, cv2.LINE_AA)
    cv2.polylines(image, [points[27:31], points[31:36]], False, (190, 140, 120), 2, cv2.LINE_AA)
    for eye in (points[36:42], points[42:48]):
        cv2.fillPoly(image, [eye], (255, 255, 255), cv2.LINE_AA)
        cv2.circle(image, tuple(eye.mean(0).astype(int)), 4, (60, 50, 40), -1, cv2.LINE_AA)
    cv2.fillPoly(image, [points[48:60]], (170, 70, 70), cv2.LINE_AA)
    return image


def speech(seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    """A synthetic voice: a 140 Hz buzz through two formants, in syllables four times a second (int16 mono)."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    buzz = sum(np.sin(k * phase) / k for k in range(1, 30))
    formants = np.sin(2 * np.pi * 700 * t) * 0.5 + np.sin(2 * np.pi * 1200 * t) * 0.3
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    signal = buzz * (1 + formants) * envelope
    return (signal / np.abs(signal).max() * 0.6 * 32767).astype(np.int16)


# ---------------------------------------------------------------------------------------------------- an object

def cube_frame(angle: float, size: int = 192) -> np.ndarray:
    """A shaded cube turning about its vertical axis on white (the 4D tab's object video)."""
    image = np.full((size, size, 3), 255, np.uint8)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)
    tilt = math.radians(25)
    rot_y = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    world = corners @ rot_y.T @ rot_x.T
    faces = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]
    colours = [(220, 80, 60), (60, 160, 220), (240, 200, 60), (90, 190, 90), (170, 90, 200), (240, 140, 40)]
    light = np.array([0.3, -0.6, -0.75])
    order = sorted(range(6), key=lambda f: world[list(faces[f]), 2].mean(), reverse=True)
    for f in order:
        quad = world[list(faces[f])]
        normal = np.cross(quad[1] - quad[0], quad[2] - quad[0])
        normal /= np.linalg.norm(normal)
        if normal @ quad.mean(0) > 0:
            normal = -normal
        shade = 0.45 + 0.55 * max(0.0, float(-(normal @ light)))
        pixels = (quad[:, :2] * size * 0.22 + size / 2).astype(np.int32)
        cv2.fillConvexPoly(image, pixels, tuple(int(c * shade) for c in colours[f]), cv2.LINE_AA)
    return image


# ---------------------------------------------------------------------------------------------------- write

def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def main() -> None:
    for folder in ("pose", "motion", "dance", "face", "fourd"):
        (ROOT / folder).mkdir(exist_ok=True)
    media.write_png(ROOT / "pose" / "person.png", draw_person())
    media.write_mp4(ROOT / "pose" / "densepose_dance.mp4", (densepose_frame(i / 32) for i in range(32)), 25, crf=28)
    media.write_png(ROOT / "motion" / "landscape.png", draw_landscape())
    (ROOT / "motion" / "landscape_trajectories.json").write_text(json.dumps(TRAJECTORIES))
    media.write_png(ROOT / "dance" / "character_front.png", draw_character(0.0))
    media.write_png(ROOT / "dance" / "character_side.png", draw_character(0.9))
    media.write_png(ROOT / "face" / "portrait.png", draw_face())
    talking = [face_landmarks(0.5 + 0.5 * math.sin(2 * math.pi * 4 * i / 25), 3 * math.sin(2 * math.pi * i / 25))
               for i in range(25)]
    np.save(ROOT / "face" / "talking_landmarks.npy", np.stack([face_landmarks(0.0, 0.0), *talking]))
    write_wav(ROOT / "face" / "speech.wav", speech(), 16000)
    media.write_png(ROOT / "fourd" / "cube.png", cube_frame(0.6, size=320))
    media.write_mp4(ROOT / "fourd" / "turning_cube.mp4", (cube_frame(2 * math.pi * i / 24) for i in range(24)), 12,
                    crf=28)


if __name__ == "__main__":
    main()
