"""Loads SVD's UNet, VAE and image encoder the way every SVD-based task does, and runs nothing heavy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from diffusers import AutoencoderKLTemporalDecoder

from engine.models.mofa.svd_unet import MofaSVDUNet
from engine.offload import ModelOffload
from engine.pipelines.base import Pipeline
from engine.weights import load_clip_vision, load_diffusers_model


class ProbePipeline(Pipeline):
    def __init__(self, nets: dict[str, torch.nn.Module], device: Any, dtype: Any) -> None:
        self.nets, self.device, self.dtype = nets, torch.device(device), dtype
        self.offload = ModelOffload(self.device)

    @classmethod
    def load(cls, paths: Mapping[str, Path], device: Any, dtype: Any, offload: str = "none",
             networks: Any = None) -> "ProbePipeline":
        svd = Path(paths["svd_xt_11"])
        nets = {"unet": load_diffusers_model(MofaSVDUNet, svd / "unet", device, dtype, networks=networks),
                "vae": load_diffusers_model(AutoencoderKLTemporalDecoder, svd / "vae", device, dtype,
                                            networks=networks),
                "image_encoder": load_clip_vision(svd / "image_encoder", device, dtype, networks=networks)}
        return cls(nets, device, dtype).with_offload(offload, networks)

    def networks(self) -> dict[str, torch.nn.Module]:
        return dict(self.nets)

    def __call__(self, inputs, options, progress=None, cancel=None) -> dict[str, torch.nn.Module]:
        return self.networks()


PIPELINE = ProbePipeline
