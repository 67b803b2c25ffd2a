"""SV3D image-to-orbit: one prepared image of an object -> 21 views around it (SV3D_u: the trained orbit; SV3D_p:
the given elevations and azimuths).

As scripts/sampling/simple_video_sample.py@0ad7de9a5cb5 (Stability-AI/generative-models) samples it (see sv3d.py
for the cameras and conditioning): 21 latents from one generator (after the cond_frames noise), the EDM Euler sampler
(sigma 700 -> 0.002, rho 7) with the v-scaling denoiser and the triangle guidance 1 -> 2.5 -> 1 over the views,
decoding (latents / 0.18215, float32 decoder, in chunks), the last view replaced by the input image (it is the
input's own camera), clamp((x + 1) / 2). The result stays float in [0, 1]: the original watermarks these float
frames before truncating them to uint8 (outputs.sv3d_frames).

The single `sv3d_u.safetensors` / `sv3d_p.safetensors` holds the VideoUNet, the OpenCLIP ViT-H tower (text tower
unused), one conditioning autoencoder (its decoding half unused) and the first-stage decoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from engine.errors import InputError
from engine.pipelines.base import CancelToken, Progress, no_progress
from engine.runtime import ModelCache
from engine.tasks import Options

from . import checkpoint as ck
from .clip import OpenCLIPImageEmbedder
from .pipeline import FourDPipeline, load_part
from .sampler import cfg_denoiser, guidance_scales, sample_reporting
from .sv3d import N_VIEWS, STEPS, camera_path, condition, parse_degrees, triangle_guidance
from .sv3d_config import SV3DConfig
from .vae import ConditionEncoder, Decoder
from .video_unet import VideoUNet


@dataclass(frozen=True)
class SV3DResult:
    samples: torch.Tensor  # float32 [21, 3, S, S] in [0, 1] on the CPU; the last view is the input image
    elevations_deg: tuple[float, ...]
    azimuths_deg: tuple[float, ...]  # as given (the network sees them relative to the last one)
    cameras_used: bool  # False for SV3D_u (the cameras are the trained orbit's, not conditioning)


@dataclass
class SV3DNetworks:
    unet: VideoUNet
    clip: OpenCLIPImageEmbedder
    encoder: ConditionEncoder
    decoder: Decoder

    def named(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "clip": self.clip, "cond_encoder": self.encoder, "decoder": self.decoder}


def load_sv3d_networks(file: Any, config: SV3DConfig, device: Any, dtype: torch.dtype,
                       networks: ModelCache | None = None) -> SV3DNetworks:
    """Every used part of the single SV3D checkpoint, strictly; the decoder in float32 (as the original's
    disable_first_stage_autocast)."""
    checkpoint = ck.SV4DCheckpoint(file, ck.SV3D_UNUSED, "SV3D")
    checkpoint.check_layout((ck.UNET, ck.CLIP_VISUAL, ck.DECODER,
                             *(ck.FRAMES_ENCODER + part for part in ck.ENCODING_PARTS)))

    def part(prefix: str, cls: type, build: Any, what: str, part_dtype: torch.dtype = dtype,
             only: tuple[str, ...] = ()) -> Any:
        return load_part(checkpoint, config, prefix, cls, build, what, device, part_dtype, networks, only)

    return SV3DNetworks(
        unet=part(ck.UNET, VideoUNet, lambda: VideoUNet(config.unet), "VideoUNet"),
        clip=part(ck.CLIP, OpenCLIPImageEmbedder, lambda: OpenCLIPImageEmbedder(config.clip), "CLIP image tower",
                  only=("visual.",)),
        encoder=part(ck.FRAMES_ENCODER, ConditionEncoder, lambda: ConditionEncoder(config.encoder),
                     "cond_frames encoder", only=ck.ENCODING_PARTS),
        decoder=part(ck.DECODER, Decoder, lambda: Decoder(config.decoder), "decoder", part_dtype=torch.float32))


class SV3DPipeline(FourDPipeline):
    """FourDPipeline's loading, config and offload handling over the SV3D networks."""

    def load_networks(self) -> SV3DNetworks:
        return load_sv3d_networks(self.file, self.config, self.device, self.dtype, self.cache)

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, Any], opts: Options, progress: Progress = no_progress,
                 cancel: CancelToken | None = None) -> SV3DResult:
        self.check_options(opts)
        cancel = cancel or CancelToken()
        if opts.model != self.model:
            raise InputError(f"This pipeline was loaded for {self.model}, but the options ask for {opts.model}.")
        image = self._image(inputs.get("image"), opts.size)
        elevations, azimuths, polars, azims = camera_path(opts.elevation, parse_degrees(opts.elevations, "elevations"),
                                                          parse_degrees(opts.azimuths, "azimuths"))
        self.use_config(inputs.get("model_config"))
        generator = torch.Generator().manual_seed(opts.seed)
        decoded = self.orbit(image, polars, azims, opts.steps or STEPS, generator, opts.decode_chunk, progress,
                             cancel)
        progress(1.0, "Done")
        return SV3DResult(torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0), tuple(float(e) for e in elevations),
                          tuple(float(a) for a in azimuths), self.config.cameras)

    def orbit(self, image: torch.Tensor, polars: np.ndarray, azims: np.ndarray, steps: int,
              generator: torch.Generator, decode_chunk: int, progress: Progress, cancel: CancelToken
              ) -> torch.Tensor:
        """image [1, 3, S, S] in [-1, 1] -> the 21 decoded views [21, 3, S, S] (unclamped), the last being the
        image itself. Draws the cond_frames noise, then the latents, from `generator`."""
        nets = self.built()
        config = self.config
        progress(0.02, "Conditioning on the image")
        cond, uncond = condition(config, nets.clip, nets.encoder, image, polars, azims, generator, self.device,
                                 self._stage, cancel.check)
        noise = torch.randn((N_VIEWS, 4, image.shape[-2] // 8, image.shape[-1] // 8), generator=generator)
        denoise = self.denoiser(nets.unet, cond, uncond, guidance_scales(triangle_guidance(config), N_VIEWS, 1))
        with self._stage(nets.unet):
            latents = sample_reporting(denoise, noise, steps, progress, cancel.check, "Denoising step")
        progress(0.9, "Decoding")
        # the last view is replaced by the input image: it is not decoded
        decoded = self._decode(nets.decoder, latents[:-1], decode_chunk, cancel, clamp=False)
        return torch.cat([decoded, image])

    def denoiser(self, unet: VideoUNet, cond: Any, uncond: Any, scales: torch.Tensor) -> Any:
        names = ("crossattn", "concat", "vector")

        def network(model_in: torch.Tensor, c_noise: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return unet(model_in, c_noise, batch["crossattn"], batch["vector"], N_VIEWS)

        return cfg_denoiser(network, {n: getattr(cond, n) for n in names}, {n: getattr(uncond, n) for n in names},
                            scales, self.device, self.dtype)

    @staticmethod
    def _image(image: Any, size: int) -> torch.Tensor:
        """uint8 [S, S, 3] -> [1, 3, S, S] in [-1, 1] (ToTensor, then * 2 - 1)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != (size, size, 3):
            got = getattr(image, "shape", type(image).__name__)
            raise InputError(f"SV3D needs one RGB image of {size}x{size} (uint8); got {got}.")
        return torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None] * 2.0 - 1.0
