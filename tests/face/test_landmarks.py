"""Face landmarks: 478 -> 68 as the original, retargeting keeps the portrait's face, gaps filled or refused, mask."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InputError
from engine.pipelines.face import landmarks
from engine.pipelines.face.landmarks import MediapipeLandmarker, fill_gaps, face_mask, retarget, similarity, to_68
from tests.face.conftest import FakeLandmarker, face68
from tests.tolerance import assert_relative_close


def rotation(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def test_478_to_68_picks_the_originals_points_in_order() -> None:
    points = np.stack([np.arange(478), -np.arange(478)], axis=1).astype(np.float32)
    picked = to_68(points)
    assert picked.shape == (68, 2)
    # convert_ldmk_to_68 of aniportrait/audio2ldmk.py@3ad3b546da4c: jaw from 234 via the chin (152, 9th) to 454,
    # brows 70..107 and 336..300, nose 168/6/195/4, nostrils 239..459, eyes 33.. and 362.., lips 61..91, 78..178.
    assert picked[:, 0].tolist()[:9] == [234, 93, 132, 58, 172, 136, 150, 176, 152]
    assert picked[16, 0] == 454 and picked[17, 0] == 70 and picked[26, 0] == 300
    assert picked[27:31, 0].tolist() == [168, 6, 195, 4]
    assert picked[36, 0] == 33 and picked[42, 0] == 362
    assert picked[48:60, 0].tolist() == [61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91]
    assert picked[60:, 0].tolist() == [78, 81, 13, 311, 308, 402, 14, 178]
    np.testing.assert_array_equal(picked[:, 1], -picked[:, 0])
    assert to_68(np.zeros((5, 468, 3))).shape == (5, 68, 3)  # batches, the 468-point mesh and 3-D points too


def test_68_point_layout_of_the_synthetic_faces_uses_distinct_points() -> None:
    assert len(set(landmarks.MEDIAPIPE_TO_68)) == 68


def test_retarget_keeps_the_portraits_neutral_face_when_the_driver_holds_still() -> None:
    portrait = face68(200, 240, 60)
    driver = np.repeat(face68(50, 60, 20, mouth=0.1)[None], 5, axis=0)  # another face, another shape
    out = retarget(portrait, driver)
    assert out.shape == (5, 68, 2) and out.dtype == np.float32
    for frame in out:
        assert_relative_close(frame, portrait)


def test_retarget_applies_the_drivers_motion_in_the_portraits_scale_and_orientation() -> None:
    portrait = face68(200, 240, 60)
    rng = np.random.default_rng(1)
    motion = np.concatenate([np.zeros((1, 68, 2)), rng.normal(0, 3, size=(3, 68, 2))])  # frame 0: no motion
    # The driver is the portrait moving, seen at half the size, rotated by 30 degrees and shifted.
    linear = 0.5 * rotation(30)
    driver = (portrait[None] + motion) @ linear.T + [17, -4]
    out = retarget(portrait, driver)
    np.testing.assert_array_equal(out[0], portrait)
    assert_relative_close(out, portrait[None] + motion)


def test_similarity_finds_scale_and_rotation_without_reflection() -> None:
    points = face68(0, 0, 10).astype(np.float64)
    assert_relative_close(similarity(points, points @ (2 * rotation(-40)).T + 5), 2 * rotation(-40))
    mirrored = points * [-1, 1]
    assert np.linalg.det(similarity(points, mirrored)) > 0  # a mirror image is never matched by a reflection


def test_short_gaps_are_filled_from_their_neighbours_and_counted() -> None:
    a, b = np.zeros((68, 2), np.float32), np.full((68, 2), 30, np.float32)
    filled = fill_gaps([None, a, None, None, b, None], fps=25, max_gap=2)
    assert filled.filled == (0, 2, 3, 5)
    expected = [a, a, np.full((68, 2), 10), np.full((68, 2), 20), b, b]  # linear between, nearest at the ends
    for got, want in zip(filled.points, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_long_gaps_are_refused_naming_the_frames() -> None:
    a = np.zeros((68, 2), np.float32)
    with pytest.raises(InputError, match=r"driving frames 3-8 \(0\.08-0\.32 s, 6 frames in a row"):
        fill_gaps([a, a] + [None] * 6 + [a], fps=25, max_gap=5)
    with pytest.raises(InputError, match="No face was found in any frame"):
        fill_gaps([None, None], fps=25)


def test_no_face_in_the_portrait_is_an_input_error() -> None:
    with pytest.raises(InputError, match="No face was found in the portrait"):
        landmarks.portrait_landmarks(FakeLandmarker(), np.zeros((64, 64, 3), np.uint8))
    found = landmarks.portrait_landmarks(FakeLandmarker(), np.full((64, 64, 3), 128, np.uint8))
    assert found.shape == (68, 2) and found.dtype == np.float32


def test_default_face_mask_covers_every_frames_face_and_the_forehead_only() -> None:
    frames = np.stack([face68(100, 120, 30), face68(110, 120, 30)])
    mask = face_mask(frames, 240, 200)
    assert mask.shape == (240, 200) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    for points in frames:
        for x, y in np.round(points).astype(int):
            assert mask[y, x] == 255
    brows_top = frames[:, 17:27, 1].min()
    assert mask[int(brows_top) - 10, 105] == 255  # forehead above the brows
    assert mask[5, 5] == 0 and mask[235, 195] == 0 and 0.05 < (mask > 0).mean() < 0.6


def test_mediapipe_landmarker_resolves_its_model_only_when_first_used() -> None:
    asked: list[int] = []

    def task_file():
        asked.append(1)
        raise RuntimeError("not downloaded in tests")

    detector = MediapipeLandmarker(task_file)
    detector.close()
    assert asked == []
