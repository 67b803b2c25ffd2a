"""The run's outputs: view videos at 10 fps, the view x time grid, the orbit through the views, every frame as PNG."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import media
from engine.pipelines.fourd import outputs


def views(count: int = 5, frames: int = 21, size: int = 32) -> np.ndarray:
    """View v, time t: a flat colour that encodes both (red = 28 v, green = 10 t)."""
    data = np.zeros((count, frames, size, size, 3), np.uint8)
    for v in range(count):
        for t in range(frames):
            data[v, t] = (28 * v, 10 * t, 128)
    return data


def test_grid_shapes() -> None:
    assert [outputs.grid_shape(n) for n in (1, 5, 9, 10)] == [(1, 1), (1, 5), (3, 3), (3, 4)]


def test_orbit_goes_once_around_while_the_clip_plays() -> None:
    order = outputs.orbit_views(5, 21)
    assert order[0] == 0 and order[-1] == 4 and len(order) == 21
    assert order == sorted(order) and set(order) == set(range(5))
    assert outputs.orbit_views(9, 21).count(0) == 3


def test_view_videos_have_every_frame_at_10_fps(tmp_path: Path) -> None:
    paths = outputs.write_views(tmp_path, views(3), first=1)
    assert [p.name for p in paths] == ["view_01.mp4", "view_02.mp4", "view_03.mp4"]
    info = media.video_info(paths[0])
    assert (info.fps, info.width, info.height) == (10.0, 32, 32)
    decoded = list(media.iter_video(paths[1]))
    assert len(decoded) == 21
    assert abs(int(decoded[7][16, 16, 0]) - 28) <= 3 and abs(int(decoded[7][16, 16, 1]) - 70) <= 3  # H.264


def test_grid_video_tiles_every_view_per_time_step(tmp_path: Path) -> None:
    data = views(9)
    path = outputs.write_grid(tmp_path / "grid.mp4", data)
    decoded = list(media.iter_video(path))
    assert len(decoded) == 21 and decoded[0].shape == (96, 96, 3)
    frame = decoded[12]
    for v in range(9):
        row, column = divmod(v, 3)
        pixel = frame[row * 32 + 16, column * 32 + 16].astype(int)
        assert abs(pixel[0] - 28 * v) <= 4 and abs(pixel[1] - 120) <= 4


def test_orbit_video_steps_through_the_views(tmp_path: Path) -> None:
    path = outputs.write_orbit(tmp_path / "orbit.mp4", views(5))
    decoded = list(media.iter_video(path))
    shown = [round(int(f[16, 16, 0]) / 28) for f in decoded]
    assert shown == outputs.orbit_views(5, 21)
    assert [round(int(f[16, 16, 1]) / 10) for f in decoded] == list(range(21))


def test_the_zip_holds_every_frame_exactly_and_is_reproducible(tmp_path: Path) -> None:
    data = views(3, frames=4)
    first = outputs.write_frames_zip(tmp_path / "frames.zip", data).read_bytes()
    assert outputs.write_frames_zip(tmp_path / "again.zip", data).read_bytes() == first
    with zipfile.ZipFile(tmp_path / "frames.zip") as archive:
        assert len(archive.namelist()) == 12
        with archive.open("view_02/003.png") as member:
            assert np.array_equal(np.asarray(Image.open(member)), data[2, 3])


def test_cameras_and_azimuth_order(tmp_path: Path) -> None:
    path = outputs.write_cameras(tmp_path / "cameras.json", [0, 60, 120], [0, 10, 10])
    assert json.loads(path.read_text())[1] == {"view": "view_01", "azimuth_deg": 60.0, "elevation_deg": 10.0}
    data = views(3, frames=1)
    ordered = list(outputs.by_azimuth(data, [0.0, 300.0, -30.0 + 360.0 - 200.0], [0, 5, 5]))
    assert [a for _, a, _ in ordered] == pytest.approx([0.0, 130.0, 300.0])
    assert np.array_equal(ordered[1][0], data[2])
