"""Loads SVD's UNet, VAE and image encoder the way every SVD-based task does, and runs nothing heavy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from engine.models.mofa.sampling import load_svd
from engine.offload import ModelOffload
from engine.pipelines.base import Pipeline


class ProbePipeline(Pipeline):
    def __init__(self, nets: dict[str, torch.nn.Module], device: Any, dtype: Any) -> None:
        self.nets, self.device, self.dtype = nets, torch.device(device), dtype
        self.offload = ModelOffload(self.device)

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: Any = None) -> "ProbePipeline":
        svd = load_svd(Path(paths["svd_xt_11"]), "svd_xt_11", device, dtype, networks)
        nets = {name: svd[name] for name in ("unet", "vae", "image_encoder")}
        return cls(nets, device, dtype).with_offload(offload, networks)

    def networks(self) -> dict[str, torch.nn.Module]:
        return dict(self.nets)

    def __call__(self, inputs, options, progress=None, cancel=None) -> dict[str, torch.nn.Module]:
        return self.networks()


PIPELINE = ProbePipeline
