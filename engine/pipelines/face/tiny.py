"""Tiny random checkpoints in the published layouts for the face task (tests only): SVD-XT-1.1 and, when asked, the
trajectory adapter exactly as the Trajectories task writes them (same seed, same bytes, so the two tasks share one
tiny SVD), and MOFA-Video-Hybrid's landmark ControlNet folder (config.json recording `_class_name: FlowControlNet` as
the original saved it) with the Hybrid repo's CMP training checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.models.mofa.cmp import CMP_CHECKPOINT, CMP_CONFIG
from engine.models.mofa.landmark_controlnet import LandmarkControlNet
from engine.pipelines.motion import tiny as motion_tiny
from engine.testing.weights import randomise, save_diffusers_folder
from .pipeline import LDMK_DIR, LDMK_KEY, SVD_KEY

TRAJ_KEY = "mofa_traj"
TINY_MATTING = dict(matting_expansion=8, matting_max_features=32)


def tiny_landmark_controlnet(generator: torch.Generator) -> LandmarkControlNet:
    config = {k: v for k, v in motion_tiny.TINY_UNET.items() if k != "num_frames"}
    return randomise(LandmarkControlNet(**config, **TINY_MATTING), generator)


def write_tiny_checkpoints(folders: dict[str, Path], seed: int = 0) -> None:
    """Write tiny 'svd_xt_11' and 'mofa_ldmk' folders, and 'mofa_traj' when given (hybrid runs)."""
    with torch.no_grad():
        if TRAJ_KEY in folders:
            motion_tiny.write_tiny_checkpoints({SVD_KEY: folders[SVD_KEY], TRAJ_KEY: folders[TRAJ_KEY]}, seed)
        else:
            motion_tiny.write_svd(Path(folders[SVD_KEY]), torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed + 1)
        ldmk = Path(folders[LDMK_KEY])
        save_diffusers_folder(tiny_landmark_controlnet(generator), ldmk / LDMK_DIR, class_name="FlowControlNet")
        motion_tiny.write_cmp(ldmk / CMP_CHECKPOINT, ldmk / CMP_CONFIG, motion_tiny.TINY_CMP, generator)


def synthetic_landmarks(frames: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """[frames, 68, 2] float32: a face-like layout in the middle of a width x height picture (frame 0) and small
    random motions of it (tests only)."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0.15 * np.pi, 0.85 * np.pi, 17)
    jaw = np.stack([0.5 - 0.3 * np.cos(angles), 0.45 + 0.3 * np.sin(angles)], 1)
    inner = np.stack([np.linspace(0.3, 0.7, 51), 0.35 + 0.25 * rng.random(51)], 1)
    base = np.concatenate([jaw, inner]) * np.array([width, height])
    moves = np.cumsum(rng.normal(0, 0.6, (frames, 68, 2)), axis=0)
    moves[0] = 0
    return (base[None] + moves).astype(np.float32)


def tiny_inputs(folder: Path) -> tuple[dict[str, object], dict[str, object]]:
    """A 64x64 portrait and 3 frames of landmarks, with options making the run tiny (the contract test)."""
    from PIL import Image

    portrait = folder / "portrait.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(portrait)
    landmarks = folder / "landmarks.npy"
    np.save(landmarks, synthetic_landmarks(3, 64, 64))
    return {"image": portrait, "landmarks": landmarks}, {"steps": 2, "size": 64, "seed": 3}
