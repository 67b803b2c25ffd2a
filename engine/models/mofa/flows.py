"""User drawings -> the motion field MOFA's trajectory ControlNet expects, plus its visualisation.

Follows the Traj demo: clicks are mapped to the CMP square (384) with int(), each trajectory is
resampled with PCHIP to one point per frame, and frame t's sparse hint is a single pixel at the start
point holding int64(p_t - p_0) (truncated toward zero). The motion brush is resized BILINEARLY (the
original passed INTER_NEAREST in cv2.resize's `dst` slot) and trajectories starting on a 255 pixel of
it form the "in" set.
Sources: MOFA-Video-Traj/run_gradio.py@3ad3b546da4c (384, 512/64 in preprocess_image, PCHIP interpolate_trajectory);
flow_to_rgb: flow_to_image and make_color_wheel in MOFA-Video-Traj/utils/flow_viz.py@3ad3b546da4c
(1e7, 0.75, 15/6/4/11/13/6).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.interpolate import PchipInterpolator

from engine.errors import InputError

Trajectories = Sequence[Sequence[Sequence[float]]]


def prepare_image(image: np.ndarray, short_side: int = 512, multiple: int = 64) -> tuple[np.ndarray, tuple[float, int, int]]:
    """Resize so the short side is `short_side` (PIL bilinear), centre-crop to multiples of `multiple`.

    Returns the image and (scale, left, top) so drawings in input pixels can follow the same transform.
    """
    h, w = image.shape[:2]
    scale = short_side / min(w, h)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    crop_w, crop_h = new_w - new_w % multiple, new_h - new_h % multiple
    if crop_w == 0 or crop_h == 0:
        raise InputError(f"The image is too narrow ({w}x{h}); use an aspect ratio below {short_side // multiple}:1.")
    top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
    return np.array(resized[top:top + crop_h, left:left + crop_w]), (scale, left, top)


def transform_points(trajectories: Trajectories, transform: tuple[float, int, int]) -> list[list[list[float]]]:
    """Apply prepare_image's (scale, left, top) to trajectory points given in input-image pixels."""
    scale, left, top = transform
    return [[[x * scale - left, y * scale - top] for x, y in track] for track in trajectories]


def transform_mask(mask: np.ndarray, transform: tuple[float, int, int], size: tuple[int, int]) -> np.ndarray:
    """Apply prepare_image's transform to a brush mask (nearest, stays binary); size is (w, h) of the result."""
    scale, left, top = transform
    h, w = mask.shape
    resized = cv2.resize(mask, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
    return resized[top:top + size[1], left:left + size[0]]


def validate_trajectories(trajectories: Trajectories, width: int, height: int) -> list[np.ndarray]:
    """Each trajectory needs >= 2 points inside the image; returns float arrays [K_i, 2]."""
    if not trajectories:
        raise InputError("No trajectory given. Click at least two points on the image to draw one.")
    tracks = []
    for i, track in enumerate(trajectories):
        points = np.asarray(track, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise InputError(f"Trajectory {i + 1} must be a list of [x, y] points.")
        if len(points) < 2:
            raise InputError(f"Trajectory {i + 1} has a single point; click a second point to give it a direction, "
                             "or delete it.")
        inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
        if not np.all(np.isfinite(points)) or not inside.all():
            raise InputError(f"Trajectory {i + 1} has points outside the {width}x{height} image; redraw it inside.")
        tracks.append(points)
    return tracks


def resample_track(points: np.ndarray, count: int) -> np.ndarray:
    """PCHIP through the points at uniform t in [0,1], sampled at `count` uniform t -> [count, 2]."""
    t = np.linspace(0, 1, len(points))
    new_t = np.linspace(0, 1, count)
    return np.stack([PchipInterpolator(t, points[:, 0])(new_t), PchipInterpolator(t, points[:, 1])(new_t)], axis=1)


def tracks_in_square(tracks: list[np.ndarray], width: int, height: int, size: int, count: int) -> np.ndarray:
    """Map points to the CMP square with int() truncation, then resample each to `count` points -> [K, count, 2]."""
    mapped = [np.array([[int(x * size / width), int(y * size / height)] for x, y in track], dtype=np.float64)
              for track in tracks]
    return np.stack([resample_track(track, count) for track in mapped])


def sparse_hints(tracks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """[K, N, 2] tracks -> flow [N-1, S, S, 2] (int64-truncated displacement at each start pixel) and
    mask [N-1, S, S]; trajectories sharing a start pixel add up, as in the original."""
    steps = tracks.shape[1] - 1
    flow = np.zeros((steps, size, size, 2))
    mask = np.zeros((steps, size, size))
    for track in tracks:
        start = track[0]
        row, col = int(start[1]), int(start[0])
        flow[:, row, col] += (track[1:] - start).astype(np.int64)
        mask[:, row, col] += 1
    return flow, mask


def brush_in_square(brush: np.ndarray, size: int) -> np.ndarray:
    """Brush mask (non-zero = painted) -> float64 [S, S] in 0..255, bilinearly resized (quirk of the original)."""
    painted = (np.asarray(brush) > 0).astype(np.float64) * 255.0
    return cv2.resize(painted, (size, size), interpolation=cv2.INTER_LINEAR)


def split_by_brush(tracks: np.ndarray, brush_square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tracks whose start pixel in the resized brush is exactly 255 go "in", the others "out"."""
    inside = np.array([brush_square[int(t[0, 1]), int(t[0, 0])] == 255 for t in tracks], dtype=bool)
    return tracks[inside], tracks[~inside]


def merge_brush_flows(flow_in: torch.Tensor, flow_out: torch.Tensor) -> torch.Tensor:
    """Use the in-brush flow where both of its components are non-zero, else the other flow ([...,2,H,W])."""
    keep = (flow_in != 0).all(dim=-3, keepdim=True)
    return torch.where(keep, flow_in, flow_out)


def upscale_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[T, 2, S, S] flow in square pixels -> [T, 2, H, W] (nearest) in image pixels."""
    size_y, size_x = flow.shape[-2:]
    if (height, width) == (size_y, size_x):
        return flow
    flow = F.interpolate(flow, (height, width), mode="nearest")
    scale = torch.tensor([width / size_x, height / size_y], dtype=flow.dtype, device=flow.device)
    return flow * scale.view(1, 2, 1, 1)


def flow_to_rgb(flow: np.ndarray | torch.Tensor) -> np.ndarray:
    """[H, W, 2] flow -> uint8 RGB with the Middlebury colour wheel, normalised by the largest motion."""
    flow = torch.as_tensor(flow).detach().float().cpu().numpy()
    u, v = flow[..., 0].copy(), flow[..., 1].copy()
    unknown = (np.abs(u) > 1e7) | (np.abs(v) > 1e7)
    nan = np.isnan(u) | np.isnan(v)
    u[unknown | nan] = 0
    v[unknown | nan] = 0
    max_radius = max(-1.0, float(np.sqrt(u ** 2 + v ** 2).max()))
    u /= max_radius + np.finfo(float).eps
    v /= max_radius + np.finfo(float).eps
    wheel = _colour_wheel()
    radius = np.sqrt(u ** 2 + v ** 2)
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1) + 1
    k0 = np.floor(position).astype(int)
    k1 = k0 + 1
    k1[k1 == len(wheel) + 1] = 1
    frac = (position - k0)[..., None]
    colour = (1 - frac) * wheel[k0 - 1] / 255 + frac * wheel[k1 - 1] / 255
    small = (radius <= 1)[..., None]
    colour = np.where(small, 1 - radius[..., None] * (1 - colour), colour * 0.75)
    image = np.floor(255 * colour * (1 - nan[..., None])).astype(np.uint8)
    image[unknown] = 0
    return image


def _colour_wheel() -> np.ndarray:
    """Middlebury colour wheel: 55 hues in six ramps R->Y->G->C->B->M->R, shape [55, 3]."""
    # (length, channel held at 255, channel that ramps, ramping up?)
    segments = ((15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True),
                (11, 2, 1, False), (13, 2, 0, True), (6, 0, 2, False))
    rows = []
    for count, full, ramping, rising in segments:
        ramp = np.floor(255 * np.arange(count) / count)
        block = np.zeros((count, 3))
        block[:, full] = 255
        block[:, ramping] = ramp if rising else 255 - ramp
        rows.append(block)
    return np.concatenate(rows)


def landmark_hints(landmarks: torch.Tensor, width: int, height: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Face landmarks [N, K, 2] (x, y) in image pixels -> MOFA-Keypoint's sparse hints for frames 1..N-1 in the CMP
    square: flow [N-1, 2, S, S] holding the float displacement (p_t - p_0) at frame 0's point, and mask [N-1, 2, S, S].

    As get_sparse_flow / sample_optical_flow in MOFA-Video-Keypoint/utils/utils.py@3ad3b546da4c: points scaled to the
    square per axis (x / width * S), positions truncated toward zero and clipped to [0, S-1] (points outside stay at the
    border), displacements not truncated. Where points share a pixel the later one wins (the original's scatter leaves
    this to the device)."""
    square = landmarks.float().clone()
    square[..., 0] = landmarks[..., 0] / width * size
    square[..., 1] = landmarks[..., 1] / height * size
    moves = square[1:] - square[:1]
    cols = square[0, :, 0].long().clamp(0, size - 1)
    rows = square[0, :, 1].long().clamp(0, size - 1)
    steps = len(square) - 1
    flow = torch.zeros(steps, 2, size, size)
    mask = torch.zeros(steps, 2, size, size)
    for k in range(square.shape[1]):
        flow[:, :, rows[k], cols[k]] = moves[:, k]
        mask[:, :, rows[k], cols[k]] = 1
    return flow, mask
