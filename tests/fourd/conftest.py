"""Synthetic clips of one object (video, GIF, zip of frames) and a tiny U2-Net-shaped ONNX for the fourd tests."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from engine import media


def object_frames(count: int, height: int = 72, width: int = 96, background: int = 255) -> list[np.ndarray]:
    """An orange ellipse with a blue stripe drifting right by 1 px a frame, on a plain background. RGB uint8."""
    frames = []
    for t in range(count):
        frame = np.full((height, width, 3), background, np.uint8)
        centre = (width // 3 + t, height // 2)
        cv2.ellipse(frame, centre, (width // 6, height // 4), 0, 0, 360, (240, 140, 20), -1)
        cv2.line(frame, (centre[0] - 5, centre[1]), (centre[0] + 5, centre[1]), (20, 40, 200), 3)
        frames.append(frame)
    return frames


def write_zip(path: Path, frames: list[np.ndarray], names: list[str] | None = None) -> Path:
    """Frames as PNG members, stored in scrambled order (natural sort must restore it)."""
    names = names or [f"{i}.png" for i in range(len(frames))]
    with zipfile.ZipFile(path, "w") as archive:
        for index in sorted(range(len(frames)), key=str):
            buffer = io.BytesIO()
            Image.fromarray(frames[index]).save(buffer, format="PNG")
            archive.writestr(names[index], buffer.getvalue())
    return path


def write_gif(path: Path, frames: list[np.ndarray], transparency: int | None = None) -> Path:
    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=64) for f in frames]
    extra = {} if transparency is None else {"transparency": transparency, "disposal": 2}
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, **extra)
    return path


@pytest.fixture
def clip_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "object.mp4"
    media.write_mp4(path, iter(object_frames(30)), 10)
    return path


@pytest.fixture
def tiny_u2net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ONNX graph with U2-Net's interface (see write_tiny_cutout: bright pixels are foreground)."""
    from engine.testing.onnx import write_tiny_cutout

    path = tmp_path_factory.mktemp("u2net") / "u2net.onnx"
    write_tiny_cutout(path)
    return path
