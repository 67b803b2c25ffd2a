"""Strict loading of diffusers/transformers model folders (config.json + safetensors)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file
from torch import nn

from engine.errors import CheckpointError

M = TypeVar("M", bound=nn.Module)


def weight_files(folder: Path, stem: str, dtype: torch.dtype) -> list[Path]:
    """The safetensors file(s) of a folder: the fp16 variant first for half dtypes, sharded indexes too."""
    variants = ("fp16.", "") if dtype in (torch.float16, torch.bfloat16) else ("", "fp16.")
    for variant in variants:
        single = folder / f"{stem}.{variant}safetensors"
        if single.is_file():
            return [single]
        index = folder / f"{stem}.safetensors.index.{variant}json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
    raise CheckpointError(f"No {stem}*.safetensors in {folder}. Download the checkpoint again.")


def read_state(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(str(file)))
        except Exception as exc:
            raise CheckpointError(f"Could not read {file}: {exc}. Delete it and download again.") from exc
    return state


def load_strict(model: M, state: dict[str, torch.Tensor], where: Path) -> M:
    """Load every key exactly (assigning into meta-initialised modules); fail loudly on any mismatch."""
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(f"Weights in {where} do not match the model: {exc}") from exc
    leftovers = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftovers:
        raise CheckpointError(f"Weights in {where} leave tensors uninitialised: {leftovers[:5]}")
    return model


def load_diffusers_model(cls: type[M], folder: Path, device: torch.device | str, dtype: torch.dtype,
                         stem: str = "diffusion_pytorch_model") -> M:
    """Build `cls` from `folder/config.json` without allocating, then load its safetensors strictly."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"Missing {config_file}. Download the checkpoint again.")
    with torch.device("meta"):
        model = cls.from_config(cls.load_config(folder))
    model = load_strict(model, read_state(weight_files(folder, stem, dtype)), folder)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_clip_vision(folder: Path, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """CLIPVisionModelWithProjection from a transformers folder, strictly (no missing/extra keys)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if not (folder / "config.json").is_file():
        raise CheckpointError(f"Missing {folder / 'config.json'}. Download the checkpoint again.")
    model = CLIPVisionModelWithProjection(CLIPVisionConfig.from_pretrained(folder))
    state = read_state(weight_files(folder, "model", dtype))
    # Older transformers saved this index buffer; current versions rebuild it and do not store it.
    if "vision_model.embeddings.position_ids" not in model.state_dict():
        state.pop("vision_model.embeddings.position_ids", None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"Weights in {folder} do not match CLIPVisionModelWithProjection: {exc}") from exc
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
