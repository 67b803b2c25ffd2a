"""Reading the object's clip: 21 frames chosen evenly or from a start frame, from a video, a GIF or a zip, within the
engine's limits; bad clips are clear InputErrors."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import limits, media
from engine.errors import InputError
from engine.pipelines.fourd.frames import CLIP_FRAMES, choose_indices, mask_sequence, read_clip, read_masks
from tests.fourd.conftest import object_frames, write_gif, write_zip


def test_frames_are_spread_evenly_over_the_clip_by_default() -> None:
    assert choose_indices(41) == list(range(0, 41, 2))
    assert choose_indices(21) == list(range(21))
    spread = choose_indices(100)
    assert spread[0] == 0 and spread[-1] == 99 and len(spread) == CLIP_FRAMES
    assert all(b > a for a, b in zip(spread, spread[1:]))


def test_a_start_frame_takes_consecutive_frames_as_the_original() -> None:
    assert choose_indices(100, 0) == list(range(21))
    assert choose_indices(100, 30) == list(range(30, 51))


def test_short_clips_repeat_frames_and_too_short_ones_fail() -> None:
    assert choose_indices(2) == [0] * 11 + [1] * 10  # linspace(0, 1, 21) rounds half to even
    assert choose_indices(30, 20) == [20 + i for i in np.linspace(0, 9, 21).round().astype(int)]
    with pytest.raises(InputError, match="at least 2 frames"):
        choose_indices(30, 29)
    with pytest.raises(InputError, match="start_frame is 30 but the clip has only 30"):
        choose_indices(30, 30)


def test_video_frames_are_the_chosen_ones(clip_mp4: Path) -> None:
    clip = read_clip(clip_mp4)
    assert clip.total == 30 and clip.indices == choose_indices(30) and not clip.repeats
    decoded = list(media.iter_video(clip_mp4))
    assert len(clip.frames) == CLIP_FRAMES
    for index, frame in zip(clip.indices, clip.frames):
        assert frame.shape == (72, 96, 3) and np.array_equal(frame, decoded[index])


def test_zip_frames_sort_naturally_and_keep_transparency(tmp_path: Path) -> None:
    frames = object_frames(12)
    rgba = [np.dstack([f, np.where(f.mean(-1) < 250, 255, 0).astype(np.uint8)]) for f in frames]
    clip = read_clip(write_zip(tmp_path / "frames.zip", rgba), start_frame=0)
    assert clip.total == 12 and clip.repeats
    for index, frame in zip(clip.indices, clip.frames):
        assert frame.shape == (72, 96, 4) and np.array_equal(frame, rgba[index])


def test_opaque_alpha_counts_as_no_transparency(tmp_path: Path) -> None:
    frames = [np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]) for f in object_frames(3)]
    assert read_clip(write_zip(tmp_path / "frames.zip", frames)).frames[0].shape == (72, 96, 3)


def test_a_gif_is_read_through_pillow_and_its_transparency_refused(tmp_path: Path) -> None:
    frames = object_frames(5)
    clip = read_clip(write_gif(tmp_path / "object.gif", frames))
    assert clip.total == 5 and clip.frames[0].shape == (72, 96, 3)
    with Image.open(tmp_path / "object.gif") as gif:
        expected = np.asarray(gif.convert("RGB"))
    assert np.array_equal(clip.frames[0], expected)
    with pytest.raises(InputError, match="transparent pixels"):
        read_clip(write_gif(tmp_path / "alpha.gif", frames, transparency=0))


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_frames_fail(tmp_path: Path, count: int) -> None:
    path = write_zip(tmp_path / "one.zip", object_frames(count)) if count else tmp_path / "empty.zip"
    if not count:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "no frames")
    with pytest.raises(InputError, match="at least 2 frames|holds no video frames"):
        read_clip(path)


def test_a_single_picture_is_not_a_clip(tmp_path: Path) -> None:
    media.write_png(tmp_path / "still.png", object_frames(1)[0])
    with pytest.raises(InputError, match="single picture"):
        read_clip(tmp_path / "still.png")


@pytest.mark.parametrize("name, data", [("broken.mp4", b"\x00\x00\x00\x18ftypmp42 not really"),
                                        ("broken.gif", b"GIF89a\x10\x00garbage"),
                                        ("broken.zip", b"PK\x03\x04 truncated"),
                                        ("notes.txt", b"hello")])
def test_unreadable_media_fail_clearly(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError):
        read_clip(tmp_path / name)


def test_frames_of_different_sizes_fail(tmp_path: Path) -> None:
    frames = object_frames(3) + object_frames(1, height=60)
    with pytest.raises(InputError, match="all frames must have one size"):
        read_clip(write_zip(tmp_path / "mixed.zip", frames))


def test_limits_are_checked_before_decoding(tmp_path: Path, clip_mp4: Path) -> None:
    with limits.applied(limits.Limits(max_video_frames=20)):
        with pytest.raises(InputError, match="too long"):
            read_clip(clip_mp4)
    with limits.applied(limits.Limits(max_image_pixels=72 * 96 - 1)):
        with pytest.raises(InputError, match="megapixels"):
            read_clip(clip_mp4)
        with pytest.raises(InputError, match="megapixels"):
            read_clip(write_zip(tmp_path / "frames.zip", object_frames(3)))
    with limits.applied(limits.Limits(max_archive_members=2)):
        with pytest.raises(InputError, match="holds 3 files"):
            read_clip(tmp_path / "frames.zip")


def test_masks_one_picture_or_one_per_frame(tmp_path: Path, clip_mp4: Path) -> None:
    clip = read_clip(clip_mp4, start_frame=5)
    picture = np.zeros((72, 96, 3), np.uint8)
    picture[10:40, 20:60] = 255
    media.write_png(tmp_path / "mask.png", picture)
    masks = read_masks(tmp_path / "mask.png", clip)
    assert len(masks) == CLIP_FRAMES and all(np.array_equal(m, picture[..., 0]) for m in masks)
    media.write_png(tmp_path / "faint.png", picture // 2)  # painted at 127: not bright enough
    with pytest.raises(InputError, match="is empty"):
        read_masks(tmp_path / "faint.png", clip)
    per_frame = [np.full((72, 96, 3), 8 * i, np.uint8) for i in range(30)]  # 128 and brighter from frame 16 on
    masks = read_masks(write_zip(tmp_path / "masks.zip", per_frame), clip)
    assert [int(m[0, 0]) for m in masks] == [255 * (i >= 16) for i in range(5, 26)]
    rgba = mask_sequence(clip.frames, masks)
    assert rgba[0].shape == (72, 96, 4) and np.array_equal(rgba[3][..., 3], masks[3])
    with pytest.raises(InputError, match="has 4 frames but the video has 30"):
        read_masks(write_zip(tmp_path / "few.zip", per_frame[:4]), clip)
    media.write_png(tmp_path / "small.png", picture[:50])
    with pytest.raises(InputError, match="is 96x50 but the video is 96x72"):
        read_masks(tmp_path / "small.png", clip)


def test_a_folder_of_frames_is_a_clip(tmp_path: Path) -> None:
    frames = object_frames(3)
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(frames):
        media.write_png(tmp_path / "frames" / f"f{i}.png", frame)
    clip = read_clip(tmp_path / "frames")
    assert clip.total == 3 and np.array_equal(clip.frames[-1], frames[2])
