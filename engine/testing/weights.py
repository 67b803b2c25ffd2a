"""Random weights and diffusers model folders, shared by the tiny checkpoint writers and the benchmarks.

Every learned tensor gets seeded random values, layers the real models initialise to zero (ControlNet zero convs,
norm biases) and to constants (PReLU slopes, norm scales) included, so every path contributes and a wrong use of
any tensor changes the output.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import save_file
from torch import nn

from engine.weights import DIFFUSERS_WEIGHTS

M = TypeVar("M", bound=nn.Module)
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)  # _NormBase: batch/instance norm


@torch.no_grad()
def randomise(module: M, generator: torch.Generator) -> M:
    """Fill every floating-point parameter, and the running statistics of norm layers, with random values drawn
    from `generator` (on its device): norm scales near 1, running variances positive, other tensors noise scaled
    by 1/sqrt(3 fan-in) (vectors: 0.1). Computed buffers (position tables) keep their values."""
    for layer in module.modules():
        is_norm = isinstance(layer, NORMS)
        tensors = {**layer._parameters, **(layer._buffers if is_norm else {})}
        for name, tensor in tensors.items():
            if tensor is not None and tensor.is_floating_point():
                tensor.copy_(_noise(name, tensor, is_norm, generator))
    return module


def _noise(name: str, tensor: torch.Tensor, is_norm: bool, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(tensor.shape, generator=generator, device=generator.device)
    if name == "running_var":
        return noise.abs() * 0.5 + 0.5
    if is_norm and name == "weight":
        return 1 + 0.1 * noise
    if tensor.ndim > 1:  # the spread of torch's default init (kaiming_uniform, a=sqrt(5)): std 1/sqrt(3 fan-in)
        return noise / (3 * max(tensor[0].numel(), 1)) ** 0.5
    return 0.1 * noise


def save_diffusers_folder(model: nn.Module, folder: Path, fp16_variant: bool = False,
                          class_name: str | None = None) -> None:
    """config.json (diffusers' save_config) and diffusion_pytorch_model[.fp16].safetensors, as the Hub stores them.

    class_name: the `_class_name` the published config records when the checkpoint's own class differs from the
    one that loads it (MagicAnimate's "AppearanceEncoderModel" is a UNet2DConditionModel)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    if class_name:
        config_file = folder / "config.json"
        config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"_class_name": class_name}, indent=2))
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / DIFFUSERS_WEIGHTS))
    if fp16_variant:
        save_file({name: tensor.half() for name, tensor in state.items()},
                  str(folder / DIFFUSERS_WEIGHTS.replace(".safetensors", ".fp16.safetensors")))
