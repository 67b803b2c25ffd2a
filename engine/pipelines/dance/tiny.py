"""Tiny CoNR files in the Space layout (random weights, synthetic poses and sheets) for tests and demos."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import torch
from PIL import Image

from engine.pipelines.dance.cutout import MODEL_FILE
from engine.pipelines.dance.networks import DanceNetConfig, build_networks
from engine.testing.onnx import write_tiny_cutout
from engine.testing.weights import randomise

TINY_POSE_FRAMES = 12
TINY_POSE_SIZE = (128, 96)  # height, width: not square, so height/width mix-ups show
TINY_SHEETS = 4


def write_tiny_checkpoints(folders: Mapping[str, Path], seed: int = 0) -> None:
    """Tiny CoNR files in the nev/CoNR Space layout, and a tiny cut-out model in the anime-seg layout."""
    write_conr(folders["conr"], seed=seed)
    write_tiny_cutout(Path(folders["anime_seg"]) / MODEL_FILE)


def write_conr(folder: Path, seed: int = 0) -> None:
    """Write weights/*.pth (tiny config), poses_template.zip and character_sheet_ponytail_example/*.png."""
    folder = Path(folder)
    (folder / "weights").mkdir(parents=True, exist_ok=True)
    for name, net in random_networks(DanceNetConfig.tiny(), seed).items():
        torch.save(net.state_dict(), folder / "weights" / f"{name}.pth")
    write_pose_zip(folder / "poses_template.zip", synthetic_udp_frames(TINY_POSE_FRAMES, TINY_POSE_SIZE))
    sheet_dir = folder / "character_sheet_ponytail_example"
    sheet_dir.mkdir(exist_ok=True)
    for view in range(TINY_SHEETS):
        Image.fromarray(synthetic_sheet(view), "RGBA").save(sheet_dir / f"{view}.png")


def random_networks(config: DanceNetConfig, seed: int) -> dict[str, torch.nn.Module]:
    """The four networks with seeded random weights (constant-initialised norm scales and PReLU slopes too, so that
    a wrong use of them changes the output)."""
    generator = torch.Generator().manual_seed(seed)
    return {name: randomise(net, generator) for name, net in build_networks(config).items()}


def synthetic_udp_frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """A figure (head and body ellipses) drifting right by 2 px per frame; XYZ vary smoothly over it."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for index in range(count):
        cx = 0.3 * w + 2 * index
        alpha = np.zeros((h, w), np.uint8)
        cv2.ellipse(alpha, (int(cx), int(0.62 * h)), (int(0.14 * w), int(0.25 * h)), 0, 0, 360, 1, -1)
        cv2.circle(alpha, (int(cx), int(0.25 * h)), int(0.1 * h), 1, -1)
        a = alpha.astype(np.float32)
        xyz = np.stack([(xs - cx) / w + 0.5, ys / h, np.full_like(xs, 0.25 + 0.02 * index)], axis=-1)
        udp = np.concatenate([np.round(xyz * 64) / 64 * a[..., None], a[..., None]], axis=-1)
        frames.append(udp.astype(np.float32))
    return frames


def write_pose_zip(path: Path, frames: list[np.ndarray]) -> None:
    """Frames as 0.npz, 1.npz, ... (key 'i') in a zip, stored in a scrambled order."""
    order = sorted(range(len(frames)), key=str)  # lexicographic, so the archive order is not the frame order
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in order:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, i=frames[index])
            archive.writestr(f"{index}.npz", buffer.getvalue())


def synthetic_sheet(view: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """One view of a drawn character with a ponytail on a transparent background (uint8 RGBA)."""
    h, w = size
    image = np.zeros((h, w, 4), np.uint8)
    shift = (view - 1.5) * 6
    cx = int(w / 2 + shift)
    hair, skin, dress = (60, 40, 30 + 40 * view, 255), (250, 220, 200, 255), (200, 60 + 30 * view, 90, 255)
    cv2.ellipse(image, (cx, int(0.65 * h)), (int(0.2 * w), int(0.3 * h)), 0, 0, 360, dress, -1)
    cv2.circle(image, (cx, int(0.25 * h)), int(0.15 * h), skin, -1)
    cv2.ellipse(image, (cx - int(shift * 3) + int(0.18 * w), int(0.3 * h)), (6, int(0.18 * h)), 15, 0, 360, hair, -1)
    cv2.ellipse(image, (cx, int(0.17 * h)), (int(0.16 * h), int(0.08 * h)), 0, 180, 360, hair, -1)
    image[..., 3] = cv2.GaussianBlur(image[..., 3], (3, 3), 0)  # soft, partly transparent edges
    return image


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """Small inputs and options for a quick run on the tiny models (the contract test): two drawn sheets, three
    frames of the example motion."""
    sheets = []
    for view in range(2):
        sheets.append(folder / f"sheet{view}.png")
        Image.fromarray(synthetic_sheet(view), "RGBA").save(sheets[-1])
    return {"sheets": sheets}, {"working_size": 128, "frame_end": 3}
