"""What a Video to 4D run writes: one mp4 per view, a view x time grid video, an orbit video, every frame as PNG in
one zip, and the views' cameras; for SV3D, the orbit's frames as the original script makes them."""
from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from engine import media

# fps 10: save_video in scripts/demo/sv4d_helpers.py@0ad7de9a5cb5 (the original's view videos)
FPS = 10
MAX_GRID_COLUMNS = 5
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold


def view_name(view: int) -> str:
    """view_00 is the input's own view; view_01 ... the generated ones."""
    return f"view_{view:02d}"


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) for `count` tiles: one row up to 5 views, else a near-square grid (9 views: 3 x 3)."""
    columns = count if count <= MAX_GRID_COLUMNS else math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def grid_frame(tiles: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tiles (all one size) in reading order on a white grid (`columns` per row; default: see grid_shape)."""
    rows, columns = grid_shape(len(tiles)) if columns is None else (math.ceil(len(tiles) / columns), columns)
    height, width = tiles[0].shape[:2]
    grid = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = tile[..., :3]
    return grid


def orbit_views(views: int, frames: int) -> list[int]:
    """The view shown at each frame of the orbit video: the camera goes once around the object (through the views in
    azimuth order) while the clip plays once."""
    return [min(views - 1, (t * views) // frames) for t in range(frames)]


def write_views(folder: Path, views: np.ndarray, first: int = 0, fps: int = FPS) -> list[Path]:
    """views uint8 [V, T, S, S, 3] -> folder/view_XX.mp4, one per view, numbered from `first`."""
    paths = []
    for index, frames in enumerate(views, start=first):
        paths.append(folder / f"{view_name(index)}.mp4")
        media.write_mp4(paths[-1], iter(frames), fps)
    return paths


def write_grid(path: Path, views: np.ndarray, fps: int = FPS) -> Path:
    """Every view side by side (a grid for many views), one video frame per time step."""
    media.write_mp4(path, (grid_frame(views[:, t]) for t in range(views.shape[1])), fps)
    return path


def write_orbit(path: Path, views: np.ndarray, fps: int = FPS) -> Path:
    """The camera stepping through the views (in azimuth order) over time."""
    order = orbit_views(views.shape[0], views.shape[1])
    media.write_mp4(path, (views[view, t] for t, view in enumerate(order)), fps)
    return path


def _png_bytes(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_frames_zip(path: Path, views: np.ndarray) -> Path:
    """view_XX/000.png ... for every view and time step, in one zip (PNGs are already compressed: stored). Members
    carry a fixed date, so the same frames always make the same file."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for view, frames in enumerate(views):
            for t, frame in enumerate(frames):
                member = zipfile.ZipInfo(f"{view_name(view)}/{t:03d}.png", date_time=ZIP_DATE)
                archive.writestr(member, _png_bytes(frame))
    return path


def write_cameras(path: Path, azimuths: Sequence[float], elevations: Sequence[float]) -> Path:
    """cameras.json: each view's file name, azimuth and elevation in degrees (view_00 is the input's view)."""
    cameras = [{"view": view_name(i), "azimuth_deg": float(a), "elevation_deg": float(e)}
               for i, (a, e) in enumerate(zip(azimuths, elevations))]
    path.write_text(json.dumps(cameras, indent=2))
    return path


def by_azimuth(views: np.ndarray, azimuths: Sequence[float], elevations: Sequence[float]
               ) -> Iterator[tuple[np.ndarray, float, float]]:
    """Views with their cameras, sorted by azimuth in [0, 360) (the input view, azimuth 0, first)."""
    order = sorted(range(len(azimuths)), key=lambda i: float(azimuths[i]) % 360.0)
    for i in order:
        yield views[i], float(azimuths[i]) % 360.0, float(elevations[i])


def sv3d_frames(samples: torch.Tensor, watermark: bool) -> np.ndarray:
    """float [N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3] as simple_video_sample.py@0ad7de9a5cb5 writes them:
    the invisible watermark embedded into the float frames (when on), then (x * 255).astype(uint8), truncating."""
    if watermark:
        from engine.watermark import embed_watermark

        samples = embed_watermark(samples)
    return (samples.permute(0, 2, 3, 1) * 255).numpy().astype(np.uint8)
