"""Strict, safe loading of MagicAnimate's checkpoints (safetensors, or torch.load with weights_only=True).

Networks are built on the meta device (no random init of billions of parameters) and receive the stored
tensors with `load_state_dict(strict=True, assign=True)`; any key mismatch is a CheckpointError naming keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError
from engine.pipelines.pose.motion_module import sinusoidal_table
from engine.pipelines.pose.unet3d import UNet3DConditionModel, UNet3DConfig
from engine.weights import (DIFFUSERS_WEIGHTS, assign_strict, build_on_meta, describe_keys, load_pickle_safely, read_json,
                            read_state)

def read_temporal_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The raw dict of temporal_attention.ckpt: unwraps {'state_dict': ...} and strips 'module.' prefixes."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; download the MagicAnimate checkpoint again.")
    raw = load_pickle_safely(path, "magicanimate", mmap=True)  # mapped: the 5 GB file is not copied into RAM
    state = raw["state_dict"] if isinstance(raw, dict) and "state_dict" in raw else raw
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict.")
    return {key.removeprefix("module."): value for key, value in state.items() if torch.is_tensor(value)}


def _select_unet_keys(ckpt: dict[str, torch.Tensor], expected: set[str], path: Path) -> dict[str, torch.Tensor]:
    """The original's two branches: the dict as it is when all its keys belong to the UNet; otherwise only
    its `motion_modules` keys with a leading 'unet.' removed."""
    if not set(ckpt) - expected:
        return ckpt
    motion = {key.removeprefix("unet."): value for key, value in ckpt.items() if "motion_modules" in key}
    unexpected = set(motion) - expected
    if not motion or unexpected:
        raise CheckpointError(f"{path} does not fit MagicAnimate's UNet: "
                              f"{describe_keys('unexpected', unexpected or set(ckpt) - expected)}.")
    return motion


def _read_spatial_weights(unet_folder: Path) -> dict[str, torch.Tensor]:
    path = unet_folder / DIFFUSERS_WEIGHTS
    if not path.is_file():
        raise CheckpointError(
            "temporal_attention.ckpt holds only the motion modules, so the Stable Diffusion 1.5 UNet weights are "
            f"needed too, but {path} is missing. Download `unet/{DIFFUSERS_WEIGHTS}` of stable-diffusion-v1-5.")
    return read_state([path])


def load_video_unet(unet_folder: Path, temporal_ckpt: Path, device: Any, dtype: torch.dtype) -> UNet3DConditionModel:
    """Build the UNet3D from SD1.5's unet/config.json and load temporal_attention.ckpt strictly.

    A full UNet3D dict needs nothing else. A motion-only dict takes its spatial weights from SD1.5's UNet
    (as the original's from_pretrained_2d does). `pos_encoder.pe` is a fixed sinusoid: when a checkpoint
    omits it the computed table is used (the original keeps its computed buffer then too). Anything else
    missing or unexpected raises CheckpointError.
    """
    try:
        cfg = UNet3DConfig.from_sd_config(read_json(unet_folder / "config.json"))
    except ValueError as err:
        raise CheckpointError(f"{unet_folder / 'config.json'}: {err}") from err
    unet = build_on_meta(lambda: UNet3DConditionModel(cfg))
    expected = {key: tuple(value.shape) for key, value in unet.state_dict().items()}
    state = _select_unet_keys(read_temporal_checkpoint(temporal_ckpt), set(expected), temporal_ckpt)
    missing = set(expected) - set(state)
    missing_motion = {key for key in missing if "motion_modules" in key and not key.endswith(".pe")}
    if missing_motion:
        raise CheckpointError(f"{temporal_ckpt} lacks motion-module weights: {describe_keys('missing', missing_motion)}.")
    if any("motion_modules" not in key for key in missing):
        state = {**_read_spatial_weights(unet_folder), **state}
    for key in set(expected) - set(state):
        if key.endswith("pos_encoder.pe"):
            state[key] = sinusoidal_table(expected[key][1], expected[key][2])
    return assign_strict(unet, state, f"{temporal_ckpt} (+ SD1.5 UNet)", device, dtype)
